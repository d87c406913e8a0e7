"""The suppression decision alone (``suppression.decide``): plain data in, a verdict out, no
database. Matchers (playbook, community, cluster, keyword; every given one must match; no
regular expressions), a silence's time window, inhibition by a confirmed alert, and which
suppression wins."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from prevent.contracts import Alert, AlertStatus
from prevent.platform.storage.tables import SilenceRow
from prevent.rules import suppression
from prevent.rules.suppression import INHIBITED, PASS, SILENCED, Candidate, Matchers, Silence, Verdict

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
HIGH, LOW = "place-of-worship-attack", "faith-community-watch"
PRIORITY = {HIGH: 50, LOW: 20, "other-high": 50}
TEXT = "Arson HOAX at the Kano mosque"


def _candidate(*, playbook: str = LOW, cluster: str = "clu-1",
               communities: tuple[str, ...] = ("muslim",), exercise: bool = False) -> Candidate:
    return Candidate(f"alt-{cluster}-{playbook}", cluster, playbook, communities, exercise)


def _silence(sid: str = "sil-1", *, starts: timedelta = -HOUR, ends: timedelta = HOUR,
             **matchers: str) -> Silence:
    return Silence(sid, Matchers(**matchers), NOW + starts, NOW + ends, "insp.ada",
                   "known hoax; reviewed")


def _alert(*, playbook: str = HIGH, cluster: str = "clu-1", communities: tuple[str, ...] = ("muslim",),
           status: AlertStatus = AlertStatus.CONFIRMED, exercise: bool = False) -> Alert:
    return Alert(alert_id=f"alt-{cluster}-{playbook}", cluster_id=cluster, incident_ids=("inc-1",),
                 playbook_id=playbook, playbook_version=1, status=status, revision=2, severity=3,
                 communities=communities, incident_type="arson", title="Arson attack on mosque",
                 exercise=exercise, created_at=NOW - HOUR, updated_at=NOW - HOUR)


def _silenced(sid: str = "sil-1") -> Verdict:
    return Verdict(SILENCED, sid, "silence by insp.ada: known hoax; reviewed")


def _inhibited(playbook: str = HIGH, cluster: str = "clu-1") -> Verdict:
    alert_id = f"alt-{cluster}-{playbook}"
    return Verdict(INHIBITED, alert_id, f"confirmed alert {alert_id} (playbook {playbook}) covers it")


CASES = [
    # (id, candidate, silences, confirmed, expected verdict)
    ("nothing", _candidate(), [], [], PASS),
    # each matcher kind, matching and not
    ("playbook", _candidate(), [_silence(playbook=LOW)], [], _silenced()),
    ("playbook-other", _candidate(), [_silence(playbook=HIGH)], [], PASS),
    ("community-one-of", _candidate(communities=("jewish", "muslim")), [_silence(community="muslim")],
     [], _silenced()),
    ("community-other", _candidate(), [_silence(community="jewish")], [], PASS),
    ("cluster", _candidate(), [_silence(cluster="clu-1")], [], _silenced()),
    ("cluster-other", _candidate(), [_silence(cluster="clu-2")], [], PASS),
    ("keyword-any-case", _candidate(), [_silence(keyword="hoax")], [], _silenced()),
    ("keyword-absent", _candidate(), [_silence(keyword="flood")], [], PASS),
    ("keyword-no-regex", _candidate(), [_silence(keyword="Arson.*mosque")], [], PASS),
    ("all-matchers", _candidate(), [_silence(playbook=LOW, community="muslim", cluster="clu-1",
                                             keyword="kano")], [], _silenced()),
    ("one-matcher-fails", _candidate(), [_silence(playbook=LOW, community="muslim", cluster="clu-1",
                                                  keyword="lagos")], [], PASS),
    # the silence's window: starts_at <= now < ends_at
    ("expired", _candidate(), [_silence(starts=-2 * HOUR, ends=-HOUR, playbook=LOW)], [], PASS),
    ("ends-now", _candidate(), [_silence(ends=timedelta(0), playbook=LOW)], [], PASS),
    ("future", _candidate(), [_silence(starts=HOUR, ends=2 * HOUR, playbook=LOW)], [], PASS),
    ("starts-now", _candidate(), [_silence(starts=timedelta(0), playbook=LOW)], [], _silenced()),
    ("first-active-wins", _candidate(), [_silence("sil-old", ends=-HOUR, starts=-2 * HOUR, playbook=LOW),
                                         _silence("sil-a", community="muslim"),
                                         _silence("sil-b", playbook=LOW)], [], _silenced("sil-a")),
    # inhibition: a confirmed, higher-priority alert of the same cluster covering the communities
    ("inhibited", _candidate(), [], [_alert()], _inhibited()),
    ("inhibited-wider", _candidate(), [], [_alert(communities=("jewish", "muslim"))], _inhibited()),
    ("not-covered", _candidate(communities=("muslim", "jewish")), [], [_alert()], PASS),
    ("only-proposed", _candidate(), [], [_alert(status=AlertStatus.PROPOSED)], PASS),
    ("other-cluster", _candidate(), [], [_alert(cluster="clu-2")], PASS),
    ("same-playbook", _candidate(playbook=HIGH), [], [_alert()], PASS),
    ("equal-priority", _candidate(playbook=HIGH), [], [_alert(playbook="other-high")], PASS),
    ("lower-priority", _candidate(playbook=HIGH), [], [_alert(playbook=LOW)], PASS),
    ("first-inhibitor-wins", _candidate(), [], [_alert(status=AlertStatus.PROPOSED),
                                                _alert(playbook="other-high"), _alert()],
     _inhibited("other-high")),
    # exercises are judged like real alerts, either way round
    ("exercise-silenced", _candidate(exercise=True), [_silence(playbook=LOW)], [], _silenced()),
    ("exercise-inhibited", _candidate(exercise=True), [], [_alert()], _inhibited()),
    ("inhibited-by-exercise", _candidate(), [], [_alert(exercise=True)], _inhibited()),
    # both apply: the silence wins; an inactive silence leaves the inhibition
    ("silence-over-inhibition", _candidate(), [_silence(cluster="clu-1")], [_alert()], _silenced()),
    ("expired-silence-inhibition", _candidate(), [_silence(starts=-2 * HOUR, ends=-HOUR, cluster="clu-1")],
     [_alert()], _inhibited()),
]


@pytest.mark.parametrize(("candidate", "silences", "confirmed", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_decide(candidate: Candidate, silences: list[Silence], confirmed: list[Alert],
                expected: Verdict) -> None:
    verdict = suppression.decide(candidate, text=TEXT, silences=silences, confirmed=confirmed,
                                 priority_of=PRIORITY.__getitem__, now=NOW)
    assert verdict == expected
    assert verdict.passes is (expected.reason is None)


def test_confirmed_alerts_are_read_only_when_no_silence_applies() -> None:
    def unreadable() -> Iterator[Alert]:
        raise AssertionError("the confirmed alerts were read although a silence applies")
        yield  # a generator: nothing runs until it is read

    verdict = suppression.decide(_candidate(), text=TEXT, silences=[_silence(playbook=LOW)],
                                 confirmed=unreadable(), priority_of=PRIORITY.__getitem__, now=NOW)
    assert verdict == _silenced()


def test_a_verdict_is_frozen_and_pass_raises_the_alert() -> None:
    assert PASS.reason is None and PASS.passes and (PASS.by, PASS.why) == ("", "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        PASS.reason = SILENCED  # type: ignore[misc]


def test_a_stored_silence_is_read_as_it_is_kept() -> None:
    row = SilenceRow(silence_id="sil-9", matchers={"community": "jewish", "keyword": "hoax"},
                     starts_at=NOW - HOUR, ends_at=NOW + HOUR, comment="reviewed hoax",
                     created_by="insp.bo", created_at=NOW - HOUR)
    silence = Silence.of(row)
    assert silence == Silence("sil-9", Matchers(community="jewish", keyword="hoax"), NOW - HOUR,
                              NOW + HOUR, "insp.bo", "reviewed hoax")
    assert silence.active(NOW) and not silence.active(NOW + HOUR)
    verdict = suppression.decide(_candidate(communities=("jewish",)), text=TEXT, silences=[silence],
                                 confirmed=[], priority_of=PRIORITY.__getitem__, now=NOW)
    assert verdict == Verdict(SILENCED, "sil-9", "silence by insp.bo: reviewed hoax")
