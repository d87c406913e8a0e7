"""The web console (FastAPI + Jinja2, server-rendered)."""
