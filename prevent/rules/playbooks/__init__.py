"""The playbook engine: schema, loading (atomic, versioned) and evaluation."""
