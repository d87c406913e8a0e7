"""Notices: what a notice is and how it reads, whoever sends or previews it.

In: an alert, its audience and the playbook's templates. Out: :class:`OutgoingNotice` values
and the ``prevent.notices.v1`` events of their states. ``channel`` is the contract every
delivery channel implements (``notifiers/channels/`` hold the channels, the notifiers send);
``templates`` renders a notice in the contact's language, ``sms_text`` fits it into SMS
segments, ``wording`` holds the severity labels and SMS reply codes.
"""
