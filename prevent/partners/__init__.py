"""Partners: the registry of partner sites, their contacts and patrol zones, and what a
contact can do with a notice.

In: registry files and edits by engagement officers, acknowledgements by signed link or SMS
reply. Out: stored sites and contacts (``registry`` is the contract), acknowledgements with
their audit entries. Contact details leave this package only for the roles that need them.
"""
