"""The ``prevent`` command line (``main``) and its command groups.

In: arguments and files. Out: calls into the domain and the platform. The domain never
imports this package (an import-linter contract in ``pyproject.toml``).
"""
