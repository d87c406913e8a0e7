"""The fuzz tests (issue 23, point 4): schemathesis against ``/api`` and property tests of the
parsers at the edge. Every test here is marked ``fuzz`` and runs in ``make test`` as a bounded,
derandomized run (the same inputs every time, a few seconds a test); ``make fuzz`` sets
``PREVENT_FUZZ_SCALE`` for a longer, randomized run of the same properties (and atheris on
the same targets where it is installed).

A crash a longer run finds becomes a failing test first: add its input as an ``@example`` of
the property that found it (or a regression test beside it), then fix it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

HERE = Path(__file__).parent

# 1 in `make test`; `make fuzz` raises it (examples per property = its base x the scale).
SCALE = max(1, int(os.environ.get("PREVENT_FUZZ_SCALE", "1") or 1))
LONG = SCALE > 1


def fuzz_settings(examples: int, **overrides: object) -> settings:
    """Hypothesis settings for a property at the edge: ``examples`` in the bounded run (the same
    inputs on every run: derandomized, no example database), ``examples x SCALE`` random ones in
    ``make fuzz`` (which keeps its failures in .hypothesis/ to replay them)."""
    base: dict[str, object] = {
        "max_examples": examples * SCALE,
        "deadline": None,
        "derandomize": not LONG,
        "database": None if not LONG else settings.default.database,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much,
                                  HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
                                  HealthCheck.large_base_example],
        "print_blob": True,
    }
    base.update(overrides)
    return settings(**base)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: bounded property and schema fuzzing (issue 23); "
                            "`make fuzz` runs it longer")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.fuzz)


# The console on a migrated database with one user per role (tests/console/conftest.py).
from console.conftest import console  # noqa: E402, F401 - re-exported fixture
