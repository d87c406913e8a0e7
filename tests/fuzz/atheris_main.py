"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers at the edge: the same targets
and contracts as the hypothesis properties (``targets.py``). `make fuzz` runs each target for
``FUZZ_SECONDS``; by hand, from the repository:

    .venv/bin/python tests/fuzz/atheris_main.py --list
    .venv/bin/python tests/fuzz/atheris_main.py cap -max_total_time=300 var/fuzz/corpus/cap

A crash (any exception but the parser's own error, or an assertion of the contract) stops the
run and leaves the input in ``var/fuzz/crash-*``; make it an ``@example`` of the property in
``test_parsers_fuzz.py`` (a failing test first), then fix the parser.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: `fuzz` is a package

import atheris  # after the path, and only where installed (Linux x86-64)

with atheris.instrument_imports(include=["prevent", "notifiers", "fuzz"]):
    from fuzz import targets
    from prevent.contracts import FeedKind


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _feed(data: bytes) -> None:
    kinds = targets.FEED_KINDS
    if data:
        targets.feed(data[1:], kinds[data[0] % len(kinds)])


TARGETS: dict[str, Callable[[bytes], None]] = {
    "feed": _feed,
    "rss": lambda d: targets.feed(d, FeedKind.RSS),
    "cap": targets.cap,
    "geojson": lambda d: targets.feed(d, FeedKind.GEOJSON),
    "threat-level": targets.threat_level,
    "playbook": lambda d: targets.playbook(_text(d)),
    "diaspora": lambda d: targets.diaspora(_text(d)),
    "lexicon": lambda d: targets.lexicon(_text(d)),
    "feed-registry": lambda d: targets.feed_registry(_text(d)),
    "partner-csv": lambda d: targets.partner_file(d, ".csv"),
    "partner-yaml": lambda d: targets.partner_file(d, ".yaml"),
    "webhook-url": lambda d: targets.webhook_url(_text(d)),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        if len(sys.argv) >= 2 and sys.argv[1] == "--list":
            print("\n".join(TARGETS))
            return
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options] [corpus dir]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
