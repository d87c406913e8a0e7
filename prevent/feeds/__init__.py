"""Feed stages: registry (which feeds), parse (bytes -> entries), normalize (entries -> incidents).

No network, no Kafka, no database here: the watcher fetches and publishes.
"""
