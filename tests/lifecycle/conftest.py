"""Fixtures for lifecycle tests (helpers live in ``support``)."""

from lifecycle.support import seeded  # noqa: F401 - re-exported fixture
