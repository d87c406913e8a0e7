"""Severity from the source's own assessment, for the official alert feeds.

A hazard agency has already judged its event: USGS with its PAGER colour, GDACS with its
alert level and episode, a CAP sender with ``severity``, ``urgency``, ``certainty`` and
``msgType``. Where it has, its judgement decides a natural disaster's severity; the words
of the bulletin ("magnitude 6.1", "drought") never do.

| source | assessment | severity |
|---|---|---|
| USGS (GeoJSON/Atom) | PAGER green / yellow / orange / red | 1 / 2 / 3 / 4 |
| USGS | no PAGER colour | 1 (2 when ``sig`` >= 600: felt widely) |
| GDACS, sudden onset (EQ, TC, FL, VO, TS, WF) | Green / Orange / Red | 1 / 3 / 4 |
| GDACS, slow onset (DR) | Orange or Red on a current episode at that level | 3 / 4, else 1 |
| CAP | severity Minor / Moderate / Severe / Extreme | 1 / 2 / 3 / 4 |
| CAP | msgType Cancel, urgency Past, certainty Unlikely | at most 1 |
| CAP | certainty Possible (a watch: conditions allow it) | at most 2 |
| CAP | a routine weather warning (below), Moderate or Severe | at most 1 (Extreme stays 4) |

A routine weather warning: CAP category ``Met``, or an event of wind, thunderstorm, rain,
snow, ice, fog, heat or cold. Weather services issue yellow and orange warnings for them every
day somewhere in Europe and North America: that is no disaster in a diaspora's homeland
calling for welfare outreach, and no alarm; their Extreme (red) warnings are. Tropical
cyclones, floods, tornadoes and tsunamis are never routine.

Pure: it reads the incident's CAP block and the categories the feed parsers attach
(``pager:<colour>``, ``usgs:sig:<n>``, ``gdacs:<field>:<value>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

_PAGER = {"green": 1, "yellow": 2, "orange": 3, "red": 4}
_GDACS = {"green": 1, "orange": 3, "red": 4}
_CAP = {"minor": 1, "moderate": 2, "severe": 3, "extreme": 4}
SLOW_ONSET = frozenset({"DR"})
SIG_FELT_WIDELY = 600
POSSIBLE_CEILING = 2
ROUTINE_WEATHER_CEILING = 1
_WEATHER_EVENT = re.compile(r"\b(?:wind|gust|thunder|lightning|rain|snow|ice|icing|freez|fog|heat|"
                            r"high.temperature|low.temperature|cold|frost|hail|dust)", re.IGNORECASE)
_NEVER_ROUTINE = re.compile(r"hurricane|typhoon|cyclone|tropical|tsunami|flood|avalanche|"
                            r"tornado|fire|volcan", re.IGNORECASE)


class Assessment(NamedTuple):
    severity: int
    source: str  # evidence rule: "source:usgs-pager", "source:gdacs", "source:cap"
    reason: str  # what the inspector reads: "PAGER green", "GDACS drought Orange, episode not current"


def _fields(categories: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in categories:
        head, _, value = c.partition(":")
        if head == "pager" and value:
            out["pager"] = value.lower()
        elif head in ("usgs", "gdacs") and value:
            key, _, v = value.partition(":")
            out[f"{head}:{key.lower()}"] = v
    return out


def _routine_weather(categories: list[str], event: str | None) -> bool:
    """A CAP weather warning of the everyday kind (wind, thunderstorms, heat), not a
    tropical cyclone, flood or tsunami."""
    named = " ".join(filter(None, (event, *categories)))
    if _NEVER_ROUTINE.search(named):
        return False
    return any(c.strip().lower() == "met" for c in categories) or bool(event and _WEATHER_EVENT.search(event))


def assess(categories: Iterable[str], cap_severity: str | None = None, cap_msg_type: str | None = None,
           cap_urgency: str | None = None, cap_certainty: str | None = None,
           cap_event: str | None = None) -> Assessment | None:
    """The source's own assessment of an incident's severity, or None when it gives none."""
    categories = list(categories)
    f = _fields(categories)
    if "pager" in f or "usgs:sig" in f:
        colour = f.get("pager")
        if colour in _PAGER:
            return Assessment(_PAGER[colour], "source:usgs-pager", f"USGS PAGER {colour}")
        try:
            sig = int(f.get("usgs:sig", "0"))
        except ValueError:
            sig = 0
        level = 2 if sig >= SIG_FELT_WIDELY else 1
        return Assessment(level, "source:usgs-pager", f"USGS: no PAGER alert (significance {sig})")
    if "gdacs:alertlevel" in f:
        level_name = f["gdacs:alertlevel"].lower()
        event = f.get("gdacs:eventtype", "").upper()
        level = _GDACS.get(level_name, 1)
        if event in SLOW_ONSET:
            episode = f.get("gdacs:episodealertlevel", "").lower()
            current = f.get("gdacs:iscurrent", "true").lower() == "true"
            if not current or _GDACS.get(episode, 1) < level:
                return Assessment(1, "source:gdacs",
                                  f"GDACS {event} {level_name}: episode "
                                  f"{'not current' if not current else episode or 'unknown'}")
        return Assessment(level, "source:gdacs", f"GDACS {event or 'event'} {level_name}")
    if cap_severity or cap_msg_type:
        cap_level = _CAP.get((cap_severity or "").strip().lower())
        reasons = [f"CAP severity {cap_severity}"] if cap_level else []
        ceiling = 4
        if (cap_msg_type or "").strip().lower() == "cancel":
            ceiling, reasons = 1, [*reasons, "msgType Cancel"]
        if (cap_urgency or "").strip().lower() == "past":
            ceiling, reasons = 1, [*reasons, "urgency Past"]
        certainty = (cap_certainty or "").strip().lower()
        if certainty == "unlikely":
            ceiling, reasons = 1, [*reasons, "certainty Unlikely"]
        elif certainty == "possible" and ceiling > POSSIBLE_CEILING:
            # An NWS "Tornado Watch" is Extreme but only Possible: not the Warning (Observed).
            ceiling, reasons = POSSIBLE_CEILING, [*reasons, "certainty Possible"]
        if cap_level in (_CAP["moderate"], _CAP["severe"]) and ceiling > ROUTINE_WEATHER_CEILING \
                and _routine_weather(categories, cap_event):
            ceiling, reasons = ROUTINE_WEATHER_CEILING, [*reasons, "a routine weather warning"]
        if cap_level is None and ceiling > 1:  # no severity, nothing that ends the alert
            return None
        return Assessment(min(cap_level or ceiling, ceiling), "source:cap", ", ".join(reasons))
    return None
