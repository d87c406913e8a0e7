"""Platform: what every stage runs on, and the only place named for a technology.

Configuration (``config``), Kafka messaging and the embedded broker (``messaging``,
``broker``, ``deadletters``, ``asyncapi``), storage and migrations (``storage``,
``migrations``), assembling and running service processes (``runtime``, ``services``), the
SSRF guard for outbound HTTP (``netguard``), retries (``retrying``), and small helpers. It
knows nothing of incidents, alerts or partners beyond the tables it stores them in.
"""
