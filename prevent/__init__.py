"""prevent: global event, local response."""

__version__ = "0.1.0"
