"""Web: the console for duty inspectors and engagement officers, the JSON API, and sign-in.

In: HTTP requests. Out: calls into the domain (alerts, partners, rules, feeds) and pages. The
domain never imports this package (an import-linter contract in ``pyproject.toml``).
"""
