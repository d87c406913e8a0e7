"""Alerts: the state machine and everything that moves an alert through it.

In: proposals from the rules stage, decisions from duty inspectors (the console and the
API), due times. Out: state changes with their audit entries, and alert events on
``prevent.alerts.v1`` that the notifiers act on. ``states`` is the contract (every transition
is decided there); ``lifecycle`` adds role checks, ``escalation`` the timers, ``audience`` who
receives which notice and which sites get patrols.
"""
