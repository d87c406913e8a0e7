"""Channel adapters. Each sends one notice and says whether a failure is worth retrying.

A channel raises :class:`prevent.platform.messaging.TransientError` when our own server (the SMTP
relay, the SMS gateway) is unreachable, and returns a :class:`SendResult` for what the
server answered. The centre notifier turns either into that notice's outcome
(``notifiers.centre.classify``): a retry at a due time, bounded, or a failure; nothing
a channel raises reaches the Kafka handler or another notice.
"""
