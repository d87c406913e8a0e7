"""Rules stage: incidents in, proposed (or auto-confirmed) alerts out.

In: ``prevent.incidents.v1`` (:class:`prevent.contracts.GlobalIncident`), consumed by
``consumers/rules.py``. Out: stored incidents and clusters, and alert events on
``prevent.alerts.v1`` staged in the outbox. ``stage`` is the contract (``process_batch``);
``prepare`` and ``pool`` classify in worker processes, ``grouping`` joins reports of one
event, ``playbooks`` decide what to propose, ``suppression`` records silences and inhibition.
"""
