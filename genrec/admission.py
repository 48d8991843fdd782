"""Admission control for the generative path: admit a request only if it can finish in time.

Without it, an overloaded server gives every request to the engine, the engine shares itself
among all of them, and every one overruns its budget: all the work is thrown away and every
caller waits the whole budget for a fallback answer it could have had at once (SPEC.md §8).

The model (ours) is two measured numbers and a count:

* ``rate`` r — requests per second the engine completes at the concurrency it has been running,
  from Little's law on each finished request: r = (mean number in flight during its life) /
  (its latency). A request aborted past its deadline ran at least that long, so it can only
  lower r (r ≤ its k̄ / its time);
* ``solo`` — the latency of a request that ran alone (mean concurrency below 1.5), measured at
  start-up and refreshed whenever one runs alone: no request is faster than that;
* ``in_flight`` k — requests admitted and not yet finished.

A new request would finish after ``predicted = max(solo, (k + 1) / r)`` seconds (continuous
batching shares the engine among the k + 1). It is admitted when ``predicted ≤ headroom ×
time left``, else shed: answered by the fallback at once, saying why. Both numbers are smoothed
(exponential average, weight ``smoothing`` for each new measurement). ``max_in_flight`` caps k
whatever the estimate says. The controller is plain Python with an injectable clock, so its
arithmetic is testable exactly; the server owns one per app and calls it from its event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from genrec.errors import ConfigError


@dataclass
class AdmissionSettings:
    """``server.admission`` of a bundle's settings."""

    enabled: bool = True         # false: every request goes to the engine (the old behaviour)
    headroom: float = 0.8        # admit when the predicted time is at most this share of the time left
    smoothing: float = 0.3       # weight of a new measurement in the running estimates (0 < s <= 1)
    max_in_flight: int = 32      # hard cap on admitted requests in the engine at once
    reserve_ms: float = 200.0    # kept from the budget to abort and answer from the fallback (~50 ms p99 loaded)
    warmup_requests: int = 2     # generations at start-up; the last one's latency seeds solo and rate

    def validate(self) -> AdmissionSettings:
        if not 0 < self.headroom <= 1:
            raise ConfigError(f"server.admission.headroom must be in (0, 1], got {self.headroom!r}")
        if not 0 < self.smoothing <= 1:
            raise ConfigError(f"server.admission.smoothing must be in (0, 1], got {self.smoothing!r}")
        if self.max_in_flight < 1:
            raise ConfigError(f"server.admission.max_in_flight must be at least 1, got {self.max_in_flight!r}")
        if self.reserve_ms < 0:
            raise ConfigError(f"server.admission.reserve_ms must be >= 0, got {self.reserve_ms!r}")
        if self.warmup_requests < 0:
            raise ConfigError(f"server.admission.warmup_requests must be >= 0, got {self.warmup_requests!r}")
        return self


@dataclass(frozen=True)
class Decision:
    """What the controller said about one request, with the numbers it used."""

    admit: bool
    predicted_s: float | None  # None: nothing measured yet (admitted on trust)
    in_flight: int             # admitted requests already in the engine
    time_left_s: float
    reason: str | None = None  # why it was shed (None when admitted)
    ticket: Ticket | None = None


@dataclass(frozen=True)
class Ticket:
    """An admitted request: when it started and the concurrency integral at that moment."""

    started: float
    area: float


class AdmissionController:
    """Admits, sheds and learns; see the module docstring for the model."""

    def __init__(self, settings: AdmissionSettings | None = None, solo_s: float | None = None,
                 rate: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = (settings or AdmissionSettings()).validate()
        self.clock = clock
        self.solo_s = solo_s
        self.rate = rate if rate is not None else (1.0 / solo_s if solo_s else None)
        self.in_flight = 0
        self._area = 0.0          # ∫ in_flight dt since creation
        self._last = clock()
        self.admitted = self.shed = self.completed = self.aborted = 0

    # -- bookkeeping ----------------------------------------------------------------------
    def _advance(self) -> float:
        now = self.clock()
        self._area += self.in_flight * (now - self._last)
        self._last = now
        return now

    def _smooth(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.settings.smoothing * (new - old)

    # -- the decision ---------------------------------------------------------------------
    def predicted_s(self, in_flight: int | None = None) -> float | None:
        """Seconds a request admitted now would take (None before any measurement)."""
        k = self.in_flight if in_flight is None else in_flight
        if self.rate is None or self.rate <= 0:
            return None
        return max(self.solo_s or 0.0, (k + 1) / self.rate)

    def decide(self, time_left_s: float) -> Decision:
        """Admit (and count the request in flight) or shed, for a request with ``time_left_s``
        of its budget left, after the fallback reserve is taken off."""
        s = self.settings
        k = self.in_flight
        predicted = self.predicted_s(k)
        reason = None
        if not s.enabled:
            pass
        elif time_left_s <= 0:
            reason = "shed: latency budget used up before generation"
        elif k >= s.max_in_flight:
            reason = f"shed: {k} generations in flight, the limit is {s.max_in_flight}"
        elif predicted is not None and predicted > s.headroom * time_left_s:
            reason = (f"shed: generation would take ~{predicted * 1000:.0f} ms ({k} in flight, "
                      f"{self.rate:.2f} answers/s measured), over {s.headroom:g} x the {time_left_s * 1000:.0f} ms "
                      "left of the latency budget")
        if reason is not None:
            self.shed += 1
            return Decision(False, predicted, k, time_left_s, reason)
        now = self._advance()
        self.in_flight += 1
        self.admitted += 1
        return Decision(True, predicted, k, time_left_s, None, Ticket(now, self._area))

    def finish(self, ticket: Ticket, completed: bool) -> None:
        """An admitted request left the engine: ``completed`` with its samples, or aborted past
        its deadline (or failed). Learns rate (and solo) from it."""
        now = self._advance()
        self.in_flight = max(0, self.in_flight - 1)
        seconds = now - ticket.started
        if seconds <= 0:
            return
        mean_k = max(1.0, (self._area - ticket.area) / seconds)
        observed = mean_k / seconds
        if completed:
            self.completed += 1
            self.rate = self._smooth(self.rate, observed)
            if mean_k < 1.5:
                self.solo_s = self._smooth(self.solo_s, seconds)
        else:  # it would have taken longer than `seconds`: r is at most mean_k / seconds
            self.aborted += 1
            if self.rate is None or observed < self.rate:
                self.rate = self._smooth(self.rate, observed)

    def seed(self, solo_s: float) -> None:
        """Start-up measurement: one request alone took ``solo_s``."""
        if solo_s <= 0:
            raise ConfigError(f"solo latency must be positive, got {solo_s!r}")
        self.solo_s = solo_s
        self.rate = 1.0 / solo_s
