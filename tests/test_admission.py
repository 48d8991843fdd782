"""Admission control arithmetic (genrec.admission) on hand-computed cases, with a hand-driven clock."""

from __future__ import annotations

import pytest

from genrec.admission import AdmissionController, AdmissionSettings
from genrec.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def controller(clock: Clock, **kw) -> AdmissionController:
    settings = AdmissionSettings(**{"headroom": 0.8, "smoothing": 0.3, "max_in_flight": 10, **kw})
    return AdmissionController(settings, clock=clock)


def test_admits_while_the_predicted_time_fits_the_headroom_then_sheds():
    ctl = controller(Clock())
    ctl.seed(2.0)  # one request alone took 2 s -> rate 0.5/s
    assert ctl.rate == 0.5
    # 9 s left, headroom 0.8 -> 7.2 s: k=0 -> max(2, 1/0.5) = 2; k=1 -> 4; k=2 -> 6; k=3 -> 8 > 7.2
    got = [ctl.decide(9.0) for _ in range(4)]
    assert [d.admit for d in got] == [True, True, True, False]
    assert [d.predicted_s for d in got] == [2.0, 4.0, 6.0, 8.0]
    assert [d.in_flight for d in got] == [0, 1, 2, 3]
    assert got[3].reason == ("shed: generation would take ~8000 ms (3 in flight, 0.50 answers/s measured), "
                             "over 0.8 x the 9000 ms left of the latency budget")
    assert got[0].reason is None and got[3].ticket is None
    assert (ctl.in_flight, ctl.admitted, ctl.shed) == (3, 3, 1)
    # a longer budget takes the fourth: 8 <= 0.8 * 10
    assert ctl.decide(10.0).admit


def test_solo_time_bounds_the_prediction_from_below():
    ctl = AdmissionController(AdmissionSettings(headroom=1.0), solo_s=3.0, rate=2.0, clock=Clock())
    d = ctl.decide(3.5)  # (0 + 1) / 2 = 0.5 s, but nothing finishes faster than solo = 3 s
    assert d.admit and d.predicted_s == 3.0
    assert not ctl.decide(2.9).admit  # 3 > 2.9


def test_rate_is_learnt_by_littles_law_from_overlapping_requests():
    clock = Clock()
    ctl = controller(clock)
    ctl.seed(2.0)
    a = ctl.decide(100).ticket  # t=0
    clock.t = 1.0
    b = ctl.decide(100).ticket  # t=1
    clock.t = 3.0
    ctl.finish(a, completed=True)
    # area 0..3: 1 x 1 s + 2 x 2 s = 5; a's mean concurrency 5/3 over 3 s -> observed 5/9 answers/s
    r1 = 0.5 + 0.3 * (5 / 9 - 0.5)
    assert ctl.rate == pytest.approx(r1) and ctl.solo_s == 2.0  # not alone: solo unchanged
    clock.t = 4.0
    ctl.finish(b, completed=True)
    # b: area from 1 (at t=1) to 6 (at t=4) = 5 over 3 s -> 5/9 again
    assert ctl.rate == pytest.approx(r1 + 0.3 * (5 / 9 - r1))
    assert (ctl.in_flight, ctl.completed) == (0, 2)


def test_a_request_alone_updates_solo_and_an_abort_can_only_lower_the_rate():
    clock = Clock()
    ctl = controller(clock)
    ctl.seed(2.0)
    clock.t = 10.0
    t = ctl.decide(100).ticket
    clock.t = 11.0
    ctl.finish(t, completed=True)  # alone for 1 s
    assert ctl.solo_s == pytest.approx(2.0 + 0.3 * (1.0 - 2.0))  # 1.7
    assert ctl.rate == pytest.approx(0.5 + 0.3 * (1.0 - 0.5))  # 0.65
    t = ctl.decide(100).ticket
    clock.t = 15.0
    ctl.finish(t, completed=False)  # aborted after 4 s alone: rate <= 1/4
    assert ctl.rate == pytest.approx(0.65 + 0.3 * (0.25 - 0.65))  # 0.53
    assert ctl.solo_s == pytest.approx(1.7) and ctl.aborted == 1
    t = ctl.decide(100).ticket
    clock.t = 15.5
    ctl.finish(t, completed=False)  # aborted after 0.5 s: 1/0.5 = 2 > 0.53 says nothing new
    assert ctl.rate == pytest.approx(0.53)


def test_caps_time_used_up_disabled_and_no_measurement():
    ctl = controller(Clock(), max_in_flight=2)
    d = ctl.decide(1.0)
    assert d.admit and d.predicted_s is None  # nothing measured yet: admitted on trust
    assert ctl.decide(1.0).admit
    d = ctl.decide(1000.0)
    assert not d.admit and d.reason == "shed: 2 generations in flight, the limit is 2"
    assert ctl.decide(0.0).reason == "shed: latency budget used up before generation"
    off = AdmissionController(AdmissionSettings(enabled=False), solo_s=5.0, clock=Clock())
    assert off.decide(0.01).admit and off.in_flight == 1


@pytest.mark.parametrize("field,value", [("headroom", 0.0), ("headroom", 1.5), ("smoothing", 0.0),
                                         ("max_in_flight", 0), ("reserve_ms", -1.0), ("warmup_requests", -1)])
def test_bad_settings_are_named(field, value):
    with pytest.raises(ConfigError, match=f"server.admission.{field}"):
        AdmissionController(AdmissionSettings(**{field: value}))
