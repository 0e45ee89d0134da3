"""The ``circuit_breaker`` kind: a proxy in the caller's path (client → breaker → service)
that follows Resilience4j's state machine and parameter names. The ``circuit-breaker``
pattern (patterns/catalog/reliability/circuit_breaker.py) shows it at work.

The state machine (Resilience4j ``CircuitBreakerStateMachine``):

- CLOSED: every call is forwarded and its outcome recorded in a sliding window, either the
  last ``sliding_window_size`` calls (count) or the calls of the last ``sliding_window_size``
  sim-seconds, kept in one bucket per second (time). Once the window holds at least
  ``minimum_number_of_calls`` (for a count window, at most its size), the breaker opens when
  the failure rate ≥ ``failure_rate_threshold`` or the share of calls slower than
  ``slow_call_duration_ms`` ≥ ``slow_call_rate_threshold``. Any reply that is not a success
  counts as a failure (Resilience4j records every exception by default), a timeout included.
- OPEN: every call is rejected at once (503, ``circuit_open``) and nothing is sent
  downstream, for ``wait_in_open_s``; then the breaker moves to HALF_OPEN by itself
  (Resilience4j's ``automaticTransitionFromOpenToHalfOpenEnabled``, so the canvas shows it).
- HALF_OPEN: exactly ``half_open_calls`` trial calls are let through and every other call is
  rejected until they have all completed; if their failure (or slow-call) rate ≥ the
  threshold the breaker opens again, otherwise it closes with an empty window. (Resilience4j
  may decide after min(``minimum_number_of_calls``, ``half_open_calls``) trials; with the
  defaults that is all of them.)

An outcome is recorded only in the state episode that let the call through: a call let
through while CLOSED that ends after the breaker opened says nothing about the trials.
A retry policy belongs on the caller's edge into the breaker, so that each attempt asks the
breaker; one on the breaker's outgoing edge retries inside a single permitted call, and those
retries can reach the service while the breaker is OPEN (the run's check says so).
"""

from __future__ import annotations

from typing import Any

from patterns.engine import messages as m
from patterns.engine.kernel import Entry, Kernel
from patterns.engine.network import Call, Edge, Invocation
from patterns.engine.node import Node, register_kind
from patterns.engine.ordered import OrderedSet
from patterns.params import Param

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"
WINDOW_TYPES = ("count", "time")
CALL_NOT_PERMITTED = m.Reply(m.REJECTED, status=503, reason="circuit_open")
NO_DOWNSTREAM = m.Reply(m.FAILED, error=m.UNAVAILABLE, status=502,
                        reason="circuit breaker has no downstream edge")


# -- sliding windows --------------------------------------------------------------------------
class CountWindow:
    """The outcomes of the last ``size`` calls (Resilience4j FixedSizeSlidingWindowMetrics)."""

    def __init__(self, size: int) -> None:
        self.size = size
        # One entry per recorded call: (failed, slow); a ring once it is full.
        self._ring: list[tuple[bool, bool]] = []
        self._head = 0
        self.calls = self.failures = self.slow = 0

    def record(self, now_ms: float, failed: bool, slow: bool) -> None:
        if len(self._ring) < self.size:
            self._ring.append((failed, slow))
        else:
            old_failed, old_slow = self._ring[self._head]
            self.calls -= 1
            self.failures -= old_failed
            self.slow -= old_slow
            self._ring[self._head] = (failed, slow)
            self._head = (self._head + 1) % self.size
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def totals(self, now_ms: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the window."""
        return self.calls, self.failures, self.slow

    def describe(self, calls: int) -> str:
        return f"the last {calls} calls"


class TimeWindow:
    """The calls of the last ``size`` sim-seconds, the current partial second included.

    One bucket per epoch second, as Resilience4j's SlidingTimeWindowMetrics keeps them: when
    the clock reaches a new second, the buckets of the seconds that left the window are
    emptied and their counts subtracted.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._buckets = [[0, 0, 0] for _ in range(size)]  # calls, failures, slow
        self._second = 0
        self.calls = self.failures = self.slow = 0

    def _advance(self, now_ms: float) -> list[int]:
        second = int(now_ms // 1000.0)
        if second > self._second:
            for s in range(max(self._second + 1, second - self.size + 1), second + 1):
                bucket = self._buckets[s % self.size]
                self.calls -= bucket[0]
                self.failures -= bucket[1]
                self.slow -= bucket[2]
                bucket[0] = bucket[1] = bucket[2] = 0
            self._second = second
        return self._buckets[second % self.size]

    def record(self, now_ms: float, failed: bool, slow: bool) -> None:
        bucket = self._advance(now_ms)
        bucket[0] += 1
        bucket[1] += failed
        bucket[2] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def totals(self, now_ms: float) -> tuple[int, int, int]:
        self._advance(now_ms)
        return self.calls, self.failures, self.slow

    def describe(self, calls: int) -> str:
        return f"the {calls} calls of the last {self.size} s"


Window = CountWindow | TimeWindow


# -- the component kind -----------------------------------------------------------------------
@register_kind
class CircuitBreaker(Node):
    KIND = "circuit_breaker"
    LABEL = "Circuit breaker"
    DESCRIPTION = ("Forwards calls to its one dependency while it is healthy; rejects them at "
                   "once while the dependency keeps failing (CLOSED → OPEN → HALF_OPEN).")
    MAX_OUT_EDGES = 1
    PARAMS = (
        Param("failure_rate_threshold", "float", 0.5, min=0, max=1, exclusive_min=True,
              help="Opens when this share of the calls in the window failed (Resilience4j 50%)."),
        Param("slow_call_rate_threshold", "float", 1.0, min=0, max=1, exclusive_min=True,
              help="Opens when this share of the calls in the window was slow "
                   "(Resilience4j 100%)."),
        Param("slow_call_duration_ms", "float", 500.0, unit="ms", min=0, max=3_600_000,
              exclusive_min=True,
              help="A call that takes longer is slow (Resilience4j 60 s; teaching 500 ms)."),
        Param("sliding_window_type", "choice", "count", choices=WINDOW_TYPES,
              help="Window of the last N calls, or of the calls of the last N seconds."),
        Param("sliding_window_size", "int", 100, min=1, max=100_000,
              help="N: calls (count window) or seconds (time window)."),
        Param("minimum_number_of_calls", "int", 100, min=1, max=1_000_000,
              help="No decision before the window holds this many calls."),
        Param("wait_in_open_s", "float", 10.0, unit="s", min=0, max=3600, exclusive_min=True,
              help="How long the breaker stays OPEN (Resilience4j 60 s; teaching 10 s)."),
        Param("half_open_calls", "int", 10, min=1, max=10_000,
              help="Trial calls let through in HALF_OPEN."),
    )

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        # The breaker starts CLOSED: a starting state, not a transition.
        self.state = CLOSED
        self._window: Window = self._new_window()
        # Bumped at every transition; a call's outcome counts only in its own episode.
        self._episode = 0
        self._open_timer: Entry | None = None
        self._opened_at = 0.0
        self._edge_sent_at_open = 0
        self._trials_admitted = self._trials_done = 0
        self._trial_failures = self._trial_slow = 0
        # Calls let through and not yet answered: a crash answers them with a reset.
        self._pending: OrderedSet[Call] = OrderedSet()
        # Counters for the summary, and their values at the last sample.
        self.permitted = 0
        self.rejected = 0
        self.failed = 0
        self.slow_calls = 0
        self.transitions = 0
        self.time_open_ms = 0.0
        self.sent_while_open = 0
        self.opened_with_calls: list[int] = []
        self.half_open_trials: list[int] = []
        self._last_sample = (0, 0)

    # -- parameters ----------------------------------------------------------------------------
    @property
    def minimum_calls(self) -> int:
        """The calls the window must hold before a decision; a count window caps it at its
        size, as Resilience4j does."""
        wanted: int = self.p["minimum_number_of_calls"]
        if self.p["sliding_window_type"] == "count":
            return min(wanted, int(self.p["sliding_window_size"]))
        return wanted

    def _new_window(self) -> Window:
        size: int = self.p["sliding_window_size"]
        return CountWindow(size) if self.p["sliding_window_type"] == "count" \
            else TimeWindow(size)

    def set_param(self, name: str, value: Any) -> None:
        self.p[name] = value
        if name in ("sliding_window_type", "sliding_window_size"):
            # A new window shape is a new window: Resilience4j's config is immutable too.
            self._window = self._new_window()

    @property
    def downstream(self) -> Edge | None:
        return self.out_edges[0] if self.out_edges else None

    # -- serving -------------------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        edge = self.downstream
        if edge is None:
            call.reply(NO_DOWNSTREAM)
            return
        state = self.state
        if state == OPEN or (state == HALF_OPEN
                             and self._trials_admitted >= self.p["half_open_calls"]):
            self.rejected += 1
            call.reply(CALL_NOT_PERMITTED)
            return
        if state == HALF_OPEN:
            self._trials_admitted += 1
        self.permitted += 1
        self._pending.add(call)
        self.net.invoke(edge, call.req, self._on_reply, (call, self.kernel.now, self._episode))

    def _on_reply(self, handle: Call | Invocation, reply: m.Reply) -> None:
        call, started, episode = handle.ctx
        if call not in self._pending:
            return  # answered when the breaker crashed
        self._pending.discard(call)
        failed = not reply.ok
        slow = self.kernel.now - started > self.p["slow_call_duration_ms"]
        self.failed += failed
        self.slow_calls += slow
        if episode == self._episode:
            if self.state == CLOSED:
                self._record(failed, slow)
            elif self.state == HALF_OPEN:
                self._record_trial(failed, slow)
        call.reply(reply)

    def _record(self, failed: bool, slow: bool) -> None:
        now = self.kernel.now
        self._window.record(now, failed, slow)
        calls, failures, slow_calls = self._window.totals(now)
        if calls < self.minimum_calls:
            return
        reasons = []
        if failures / calls >= self.p["failure_rate_threshold"]:
            reasons.append(f"{failures / calls:.0%} of {self._window.describe(calls)} failed")
        if slow_calls / calls >= self.p["slow_call_rate_threshold"]:
            reasons.append(f"{slow_calls / calls:.0%} of {self._window.describe(calls)} took "
                           f"longer than {self.p['slow_call_duration_ms']:g} ms")
        if reasons:
            self.opened_with_calls.append(calls)
            reason = " and ".join(reasons)
            self._enter(OPEN, reason)
            self.note(f"breaker opened: {reason}; calls fail fast for "
                      f"{self.p['wait_in_open_s']:g} s")

    def _record_trial(self, failed: bool, slow: bool) -> None:
        self._trials_done += 1
        self._trial_failures += failed
        self._trial_slow += slow
        trials = self._trials_done
        if trials < self.p["half_open_calls"]:
            return
        self.half_open_trials.append(self._trials_admitted)
        failures, slow_calls = self._trial_failures, self._trial_slow
        if failures / trials >= self.p["failure_rate_threshold"] \
                or slow_calls / trials >= self.p["slow_call_rate_threshold"]:
            reason = f"{failures} of {trials} trial calls failed"
            if slow_calls:
                reason += f", {slow_calls} were slow"
            self._enter(OPEN, reason)
            self.note(f"breaker opened again: {reason}")
        else:
            reason = f"{failures} of {trials} trial calls failed"
            self._enter(CLOSED, reason)
            self.note(f"breaker closed: {reason}; calls flow again")

    def _half_open(self, _: Any) -> None:
        self._open_timer = None
        calls = self.p["half_open_calls"]
        self._enter(HALF_OPEN, f"{self.p['wait_in_open_s']:g} s in OPEN elapsed")
        self.note(f"breaker half-open: letting {calls} trial call{'s' if calls != 1 else ''} "
                  "through")

    def _enter(self, new: str, reason: str) -> None:
        """Move to ``new``: every transition starts a new episode."""
        now = self.kernel.now
        edge = self.downstream
        if self.state == OPEN:
            self.time_open_ms += now - self._opened_at
            if edge is not None:
                self.sent_while_open += edge.sent - self._edge_sent_at_open
        self._episode += 1
        self.transitions += 1
        self.set_state(new, reason)
        if new == OPEN:
            self._opened_at = now
            self._edge_sent_at_open = edge.sent if edge is not None else 0
            self._open_timer = self.kernel.schedule(self.p["wait_in_open_s"] * 1000.0,
                                                    self._half_open)
        elif new == HALF_OPEN:
            self._trials_admitted = self._trials_done = 0
            self._trial_failures = self._trial_slow = 0
        else:
            self._window = self._new_window()

    # -- life ----------------------------------------------------------------------------------
    def on_crash(self) -> None:
        """The breaker's state lives in the caller's memory: a crash forgets it, and the
        calls it let through die with it (their callers see a reset)."""
        Kernel.cancel(self._open_timer)
        self._open_timer = None
        self._episode += 1
        pending, self._pending = self._pending, OrderedSet()
        for call in pending:
            call.reply(m.CONNECTION_RESET)

    def on_recover(self) -> None:
        if self.state != CLOSED:
            self._enter(CLOSED, "restarted: a breaker starts CLOSED")
        else:
            self._episode += 1
            self._window = self._new_window()

    # -- reporting -----------------------------------------------------------------------------
    def _time_open_ms(self) -> float:
        extra = self.kernel.now - self._opened_at if self.state == OPEN else 0.0
        return self.time_open_ms + extra

    def _sent_while_open(self) -> int:
        edge = self.downstream
        if self.state == OPEN and edge is not None:
            return self.sent_while_open + edge.sent - self._edge_sent_at_open
        return self.sent_while_open

    def sample(self, window_ms: float) -> dict[str, Any]:
        permitted, rejected = self._last_sample
        self._last_sample = (self.permitted, self.rejected)
        calls, failures, _slow = self._window.totals(self.kernel.now)
        return {"state": self.state, "open": int(self.state == OPEN),
                "permitted": self.permitted - permitted, "rejected": self.rejected - rejected,
                "inflight": len(self._pending),
                "failure_rate": round(failures / calls, 4) if calls else 0.0}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.permitted + self.rejected, "utilisation": 0.0,
                "max_queue": 0, "state": self.state, "permitted": self.permitted,
                "rejected": self.rejected, "failed": self.failed, "slow_calls": self.slow_calls,
                "transitions": self.transitions, "times_opened": len(self.opened_with_calls),
                "time_open_s": round(self._time_open_ms() / 1000.0, 3),
                "sent_while_open": self._sent_while_open(),
                "minimum_calls": self.minimum_calls,
                "opened_with_calls": self.opened_with_calls,
                "half_open_trials": self.half_open_trials}


# -- the pattern ------------------------------------------------------------------------------
