"""A run cut into frames, with live controls: what the worker streams and a replay re-runs.

A :class:`LiveRun` advances a simulation frame by frame. In ``live`` mode each frame covers
``speed × wall time`` of simulated time and carries every event; in ``fast`` mode frames
cover a fixed slice of simulated time and carry only metrics, state changes, faults and
notes. Controls (pause, resume, speed, stop, inject) take effect between frames; the ones
that change what happens (inject, stop) are recorded with the simulated time they took
effect at, so :func:`replay` reproduces the same event stream byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from patterns.engine.simulation import Simulation
from patterns.run import simulate, summarise
from patterns.topology import TopologyError, validate

MODES = ("live", "fast")
MAX_SPEED = 1000.0
FAST_SLICE_MS = 1000.0
# A frame is cut once it holds this many events, even before its slice of simulated time
# ends: a busy topology at a high speed then advances more slowly instead of sending
# frames no browser can take. The frame's t1 says how far it got.
MAX_FRAME_EVENTS = 5000
# The slice is simulated in steps that start at 1 ms of simulated time and double while
# the frame has room, so a frame never overshoots its event budget by much.
_FIRST_STEP_MS = 1.0

Frame = dict[str, Any]


class ControlError(ValueError):
    """A control message is invalid; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class LiveRun:
    def __init__(self, document: dict[str, Any], mode: str = "live", speed: float = 1.0) -> None:
        if mode not in MODES:
            raise ControlError("mode", f"must be one of: {', '.join(MODES)}")
        self.document = document
        self.mode = mode
        self.speed = _check_speed(speed)
        self.sim: Simulation = simulate(document, trace="full" if mode == "live" else "fast")
        self.seq = 0
        self.paused = False
        self.stopped = False
        # Interventions that change the event stream, for the run's record and replays.
        self.interventions: list[dict[str, Any]] = []

    @property
    def done(self) -> bool:
        return self.stopped or self.sim.done

    @property
    def now_ms(self) -> float:
        return self.sim.now

    def step(self, wall_ms: float) -> Frame:
        """Advance by one frame: ``wall_ms`` of wall time at the current speed (live), or a
        fixed slice (fast), or less when the frame fills up with events first."""
        sim = self.sim
        t0 = sim.now
        target = t0 + (wall_ms * self.speed if self.mode == "live" else FAST_SLICE_MS)
        events = sim.trace.events
        step_ms = _FIRST_STEP_MS
        while sim.now < target and not sim.done and len(events) < MAX_FRAME_EVENTS:
            before, start = len(events), sim.now
            sim.advance(min(target, start + step_ms))
            produced = len(events) - before
            room = MAX_FRAME_EVENTS - len(events)
            if produced and room > 0:
                # Aim the next step at half the room left, at the rate just seen.
                step_ms = min(step_ms * 2, max(_FIRST_STEP_MS,
                                               room / 2 / produced * (sim.now - start)))
            else:
                step_ms *= 2
        self.seq += 1
        return {"seq": self.seq, "t0": round(t0, 3), "t1": round(sim.now, 3),
                "events": sim.trace.drain()}

    def control(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Apply a control message; returns the intervention to record, if any."""
        if not isinstance(message, dict):
            raise ControlError("action", "a control message is a JSON object")
        action = message.get("action")
        if action == "pause":
            self.paused = True
            return None
        if action == "resume":
            self.paused = False
            return None
        if action == "speed":
            self.speed = _check_speed(message.get("value"))
            return None
        if action == "stop":
            self.stopped = True
            return self._record({"action": "stop"})
        if action == "inject":
            fault = validate_live_fault(message.get("fault"), self.document, self.sim.now)
            # Recorded as applied: a role selector's node is resolved now, and the replay
            # hits that node.
            applied = self.sim.inject(fault)
            return self._record({"action": "inject", "fault": applied})
        raise ControlError("action", "must be one of: pause, resume, speed, stop, inject")

    def _record(self, intervention: dict[str, Any]) -> dict[str, Any]:
        recorded = {"t": round(self.sim.now, 3), "seq": self.seq, **intervention}
        self.interventions.append(recorded)
        return recorded

    def summary(self) -> dict[str, Any]:
        return summarise(self.sim)


def validate_live_fault(fault: Any, document: dict[str, Any], now_ms: float) -> dict[str, Any]:
    """Check a fault injected live against the run's document; it takes effect now.

    The fault is checked exactly as a scheduled one would be (the same schema, targets and
    bounds), by validating the document with the fault in its scenario.
    """
    if not isinstance(fault, dict):
        raise ControlError("fault", "must be an object with target and action")
    at_s = round(now_ms / 1000.0, 3)
    candidate = {k: v for k, v in fault.items() if k != "at_s"}
    candidate["at_s"] = at_s
    probe = {**document, "scenario": {**document["scenario"], "faults": [candidate]}}
    try:
        checked = validate(probe)
    except TopologyError as exc:
        field = exc.field.replace("scenario.faults[0]", "fault", 1) or "fault"
        raise ControlError(field, exc.message) from None
    result: dict[str, Any] = checked["scenario"]["faults"][0]
    return result


def _check_speed(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 < value <= MAX_SPEED:
        raise ControlError("value", f"speed must be a number above 0 and at most {MAX_SPEED:g}")
    return float(value)


def replay(document: dict[str, Any], interventions: list[dict[str, Any]],
           mode: str = "live") -> Iterator[dict[str, Any]]:
    """Every event of a run re-simulated from its document and recorded interventions."""
    sim = simulate(document, trace="full" if mode == "live" else "fast")
    for intervention in sorted(interventions, key=lambda i: (i["t"], i["seq"])):
        sim.advance(intervention["t"])
        yield from sim.trace.drain()
        if intervention["action"] == "stop":
            return
        sim.inject(intervention["fault"])
    while not sim.done:
        sim.advance(sim.now + 10_000.0)
        yield from sim.trace.drain()
