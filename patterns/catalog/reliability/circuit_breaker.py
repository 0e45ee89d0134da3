"""Circuit breaker: stop calling a dependency that keeps failing, and fail fast instead.

Covers: the ``circuit_breaker`` kind, a proxy in the caller's path (client → breaker →
service) that follows Resilience4j's state machine and parameter names, and the
``circuit-breaker`` pattern.
Scenario: 50 req/s of payments through a breaker to a payments service (4 workers, 20 ms),
with a 1 s timeout on the breaker's call. From 20 s to 50 s payments is 20× slower: it can
serve 10 of the 50 calls a second, its queue grows, and calls end at the timeout. With the
breaker, callers fail in a fraction of a millisecond once it has opened and payments only sees
the trial calls; without it, every call waits for the timeout and payments' backlog of work
nobody waits for keeps it sick after the fault ends.

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

import math
from collections import defaultdict
from typing import Any

from patterns.catalog.registry import Pattern, check, edge, node, register_pattern
from patterns.engine import messages as m
from patterns.engine.kernel import Entry, Kernel
from patterns.engine.network import Call, Edge, Invocation
from patterns.engine.node import Node, register_kind
from patterns.engine.ordered import OrderedSet
from patterns.engine.simulation import Simulation
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
RATE_RPS = 50  # payments per second
CALL_TIMEOUT_MS = 1000.0  # the breaker gives up on payments after this long
SLOWDOWN = 20  # the teaching fault: payments' work ×20 …
FAULT_AT_S, FAULT_UNTIL_S = 20, 50  # … for 30 s


def _breakers(sim: Simulation) -> list[CircuitBreaker]:
    return [n for n in sim.nodes.values() if isinstance(n, CircuitBreaker)]


def _seconds_p99_at(sim: Simulation, start_ms: float, end_ms: float,
                    limit_ms: float) -> tuple[int, int]:
    """(seconds in [start, end) whose requests' p99 reached ``limit_ms``, seconds counted).

    Requests are grouped by the second they were created in, which is how a learner reads
    the per-second latency chart during an outage.
    """
    by_second: defaultdict[int, list[float]] = defaultdict(list)
    for created, latency in zip(sim.done_created, sim.done_latency, strict=True):
        if start_ms <= created < end_ms:
            by_second[int(created // 1000.0)].append(latency)
    at_limit = 0
    for latencies in by_second.values():
        latencies.sort()
        p99 = latencies[max(1, math.ceil(0.99 * len(latencies))) - 1]
        at_limit += p99 >= limit_ms
    return at_limit, len(by_second)


@register_pattern
class CircuitBreakerPattern(Pattern):
    SLUG = "circuit-breaker"
    NAME = "Circuit breaker"
    CATEGORY = "reliability"
    SUMMARY = ("A proxy in the caller's path counts how calls to a dependency end. When too "
               "many of the recent ones failed or were slow it opens and rejects calls at once, "
               "then after a wait lets a few trial calls through to see whether the dependency "
               "has recovered.")
    PROBLEM = ("A caller that keeps calling a sick dependency makes every one of its own "
               "callers wait for the timeout, ties up its threads, and keeps the dependency "
               "buried under work nobody is waiting for.")
    TRADEOFFS = ("Callers fail fast instead of waiting, and the dependency gets room to "
                 "recover; but the breaker needs a window of failures before it opens (those "
                 "calls still wait), it rejects calls that might have succeeded, and its "
                 "thresholds, window and wait need tuning to the traffic.")
    TEACHING_FAULT = "Payments becomes 20× slower for 30 s (20 ms → 400 ms a call)."
    BASELINE = "The same system without the breaker: the client calls payments directly."
    OBSERVATIONS = (
        "About two seconds after payments slows down the breaker opens (a node.state event "
        "with the failure rate that tripped it); from then on calls fail in about 0.1 ms and "
        "payments receives nothing while the breaker is OPEN.",
        "The breaker cannot spare the calls it needs to learn: the ~100 calls of those first "
        "two seconds still wait for the 1 s timeout.",
        "Every 10 s the breaker lets exactly 10 trial calls through. The first time, payments' "
        "queue has drained and 20× slow is still under the timeout, so the trials pass and the "
        "breaker closes; the full load buries payments again and it reopens a few seconds "
        "later. The next trials time out and it stays OPEN.",
        "Without the breaker every call made during the outage waits for the 1 s timeout (the "
        "per-second p99 sits at the timeout for all 30 s), payments' queue fills to 1000 calls "
        "nobody waits for, and draining it keeps callers timing out after the fault ends.",
    )

    def canonical(self) -> dict[str, Any]:
        return {
            "version": 1,
            "title": "Payments behind a circuit breaker",
            "pattern": self.SLUG,
            "nodes": [
                node("users", "client", 80, 200, "Users", rate_rps=RATE_RPS),
                node("cb", "circuit_breaker", 260, 200, "Circuit breaker",
                     failure_rate_threshold=0.5, sliding_window_size=100,
                     minimum_number_of_calls=100, wait_in_open_s=10, half_open_calls=10),
                node("payments", "service", 440, 200, "Payments", workers=4,
                     service_time_ms={"dist": "exponential", "mean": 20}),
            ],
            "edges": [
                # The breaker is a library inside the caller: a loopback hop.
                edge("users", "cb", latency_ms=0.05),
                edge("cb", "payments", timeout_ms=CALL_TIMEOUT_MS,
                     latency_ms={"dist": "lognormal", "median": 2, "p99": 15}),
            ],
            "scenario": {"duration_s": 80, "seed": 42, "faults": [
                {"at_s": FAULT_AT_S, "until_s": FAULT_UNTIL_S, "target": "payments",
                 "action": "slow", "value": SLOWDOWN},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        """Take every breaker out: its callers call its dependency over the breaker's own
        outgoing edge (same latency, same timeout, same id, so faults on it still apply)."""
        document["title"] = "Payments without a circuit breaker"
        removed = {n["id"] for n in document["nodes"] if n["kind"] == "circuit_breaker"}
        document["nodes"] = [n for n in document["nodes"] if n["id"] not in removed]
        edges = document["edges"]
        kept = [e for e in edges if e["from"] not in removed and e["to"] not in removed]
        for breaker in removed:
            ins = [e for e in edges if e["to"] == breaker]
            for out in (e for e in edges if e["from"] == breaker):
                for inn in ins:
                    edge_id = out["id"] if len(ins) == 1 else f"{inn['id']}-{out['id']}"
                    kept.append({"id": edge_id, "from": inn["from"], "to": out["to"],
                                 "params": dict(out.get("params", {}))})
        document["edges"] = kept
        scenario = document.get("scenario", {})
        scenario["faults"] = [f for f in scenario.get("faults", [])
                              if f["target"] not in removed]
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        out: dict[str, Any] = {}
        faults = [f for f in sim.document["scenario"]["faults"] if f.get("until_s")]
        if faults:
            outage = sim.latency_between(faults[0]["at_s"] * 1000.0,
                                         faults[0]["until_s"] * 1000.0)
            out["outage_requests"] = int(outage["requests"])
            out["outage_p50_ms"] = outage["p50"]
            out["outage_p90_ms"] = outage["p90"]
            out["outage_p99_ms"] = outage["p99"]
            timeouts = [e.timeout_ms for e in sim.network.edges.values() if e.timeout_ms]
            if timeouts:
                at_timeout, seconds = _seconds_p99_at(
                    sim, faults[0]["at_s"] * 1000.0, faults[0]["until_s"] * 1000.0,
                    max(timeouts))
                out["outage_seconds"] = seconds
                out["outage_seconds_p99_at_timeout"] = at_timeout
        out["calls_waiting_for_timeout"] = sum(e.timeouts for e in sim.network.edges.values())
        payments = sim.nodes.get("payments")
        if payments is not None:
            stats = payments.summary(sim.duration_ms)
            out["service_queue_max"] = stats["max_queue"]
            out["service_wasted_ms"] = stats.get("wasted_ms", 0.0)
        for breaker in _breakers(sim)[:1]:
            stats = breaker.summary(sim.duration_ms)
            out.update({
                "breaker_state": stats["state"],
                "breaker_time_open_s": stats["time_open_s"],
                "calls_permitted": stats["permitted"],
                "calls_rejected_fast": stats["rejected"],
                "calls_reaching_service_while_open": stats["sent_while_open"],
                "transitions": stats["transitions"],
                "times_opened": stats["times_opened"],
                "slow_calls": stats["slow_calls"],
                "half_open_trials": stats["half_open_trials"],
            })
        return out

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        out = []
        for breaker in _breakers(sim):
            stats = breaker.summary(sim.duration_ms)
            out.append(check(
                "while OPEN, zero calls reach the service", stats["sent_while_open"] == 0,
                f"{breaker.id}: {stats['sent_while_open']} sent while OPEN over "
                f"{stats['time_open_s']:g} s"))
            early = [c for c in stats["opened_with_calls"] if c < stats["minimum_calls"]]
            out.append(check(
                "never OPEN before the minimum number of calls", not early,
                f"{breaker.id}: opened {stats['times_opened']} times from CLOSED, with "
                f"{stats['opened_with_calls'][:5]} calls in the window "
                f"(minimum {stats['minimum_calls']})"))
            trials = breaker.p["half_open_calls"]
            out.append(check(
                "HALF_OPEN admits exactly half_open_calls trials",
                all(n == trials for n in stats["half_open_trials"]),
                f"{breaker.id}: trials per probe {stats['half_open_trials'][:10]}"))
        return out
