"""Channel adapters. Each sends one notice and says whether a failure is worth retrying.

A channel raises :class:`prevent.messaging.TransientError` when its server is
unreachable (the dependency is down: the notifier waits, commits nothing) and
returns a :class:`SendResult` for what the server answered.
"""
