"""Orchestrators: one node carries each business process (a workflow, a saga) step by step.

A client's call starts a flow and is answered on acceptance. The orchestrator then sends
the steps' commands in order, each to the participant that owns it (``steps``:
``participant.action``, or ``participant.action/participant.compensation`` for a step that
can be undone), waiting for each reply up to ``step_timeout_ms``:

- a success moves the flow on; after the last step it is COMPLETED;
- a ``business`` failure is final for that step (the same command would fail the same way);
- a transient failure, a refusal or a timeout is retried after a backoff (``retry_initial_ms``
  × ``retry_backoff`` per attempt, capped at ``retry_max_ms``) up to ``max_attempts``
  (0 = for ever).

When a step fails for good, a plain orchestrator marks the flow FAILED with the reason. With
``compensate`` (a saga) it undoes the steps already done, last first (``compensation_order``
reverse; ``parallel`` sends every compensation at once, as Camunda 8 does), and the flow ends
COMPENSATED. With ``compensate_unknown`` a step whose outcome is unknown (an attempt timed
out, or its connection was reset after the participant took it: it may have committed) is
compensated too; a business-refused step is not. The ``pivot`` step is the
point of no return: once it has committed nothing is compensated, and the steps after it
are retried until they commit. Compensations are retried until they commit.

Every transition (accepting a flow, handling a reply) takes ``transition_ms`` on one of
``workers``. With ``durable`` each transition is committed to the orchestrator's own log
(a :class:`~patterns.engine.localdb.LocalDatabase`, as Temporal's history or a saga log)
before its command is sent, so after a crash the orchestrator reads its open flows back
and re-sends their current commands; participants are expected to apply a re-sent command
once. Without it, flows in progress die with the process. The flows' ids travel on every
command (``Request.flow``); their starts, steps and ends are ``flow.*`` events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from patterns.engine import messages as m
from patterns.engine.localdb import LocalDatabase
from patterns.engine.network import Call, Edge
from patterns.engine.node import Node, register_kind
from patterns.params import Param, ParamError

COMPENSATION_ORDERS = ("reverse", "parallel")
RUNNING, COMPENSATING = "RUNNING", "COMPENSATING"
NOTE_EVERY_MS = 5000.0  # at most one "compensating" note per this long
COMPLETED, COMPENSATED, FAILED = "COMPLETED", "COMPENSATED", "FAILED"


# A saga orchestrator is an orchestrator that compensates, with the saga entry's steps.
SAGA_DEFAULTS: dict[str, Any] = {
    "steps": ["orders.create/orders.reject", "inventory.reserve/inventory.release",
              "payment.authorize", "shipping.schedule", "orders.approve"],
    "compensate": True,
    "pivot": "payment.authorize",
}


class Step:
    """One step of the flow, parsed from ``steps``."""

    __slots__ = ("action", "compensation", "edge", "index", "participant", "retriable")

    def __init__(self, index: int, action: str, compensation: str | None) -> None:
        self.index = index
        self.action = action
        self.compensation = compensation
        self.participant = action.split(".", 1)[0]
        self.retriable = False
        self.edge: Edge | None = None


def parse_steps(specs: list[str]) -> list[Step]:
    """``participant.action[/participant.compensation]`` per step; raise ParamError."""
    steps = []
    for i, spec in enumerate(specs):
        action, _, compensation = spec.partition("/")
        for part in (action, compensation) if compensation else (action,):
            owner, dot, name = part.partition(".")
            if not dot or not owner or not name:
                raise ParamError(f"steps[{i}]", f"{part!r} is not participant.action")
        if compensation and compensation.split(".", 1)[0] != action.split(".", 1)[0]:
            raise ParamError(f"steps[{i}]", "a compensation runs on its step's participant")
        steps.append(Step(i, action, compensation or None))
    return steps


class _Work:
    """A transition waiting for, or holding, one of the orchestrator's workers."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args


@register_kind
class Orchestrator(Node):
    KIND = "orchestrator"
    LABEL = "Orchestrator"
    DESCRIPTION = ("Runs each workflow's steps in order, retrying them; persists its "
                   "state so a restart resumes every open workflow.")
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("steps", "list", ["payment.charge", "inventory.reserve", "shipping.schedule"],
              help="participant.action per step, in order; "
                   "participant.action/participant.undo for a step that can be undone."),
        Param("step_timeout_ms", "float", 1000.0, unit="ms", min=1, max=3_600_000,
              help="Wait for a step's reply this long, then retry (Temporal has no default)."),
        Param("retry_initial_ms", "float", 200.0, unit="ms", min=0, max=3_600_000,
              help="Wait before the first retry (Temporal: 1 s)."),
        Param("retry_backoff", "float", 2.0, min=1, max=100,
              help="Each retry waits this × longer."),
        Param("retry_max_ms", "float", 5000.0, unit="ms", min=0, max=3_600_000,
              help="Longest wait between retries."),
        Param("max_attempts", "int", 3, min=0, max=1000,
              help="Attempts per step before it fails (0 = for ever; Step Functions: 3)."),
        Param("compensate", "bool", False,
              help="Undo the steps done when a later one fails (a saga)."),
        Param("compensation_order", "choice", "reverse", choices=COMPENSATION_ORDERS,
              help="Undo last step first, or all at once."),
        Param("compensate_unknown", "bool", True,
              help="Also undo a step that timed out (it may have committed)."),
        Param("pivot", "str", "",
              help="The step (participant.action) after which nothing is undone."),
        Param("durable", "bool", True,
              help="Persist each transition before acting on it (else flows die in a crash)."),
        Param("transition_ms", "float", 3.0, unit="ms", min=0, max=60_000,
              help="Work time of one transition."),
        Param("workers", "int", 1, min=1, max=1000, help="Transitions handled at once."),
    )
    CRASH_POINTS = ("after_persist_before_send",)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        steps = parse_steps(params["steps"])
        if not steps:
            raise ParamError("steps", "needs at least one step")
        if params["pivot"] and params["pivot"] not in [s.action for s in steps]:
            raise ParamError("pivot", f"{params['pivot']!r} is not one of the steps")

    @classmethod
    def check_wiring(cls, params: dict[str, Any], targets: list[str]) -> None:
        for step in parse_steps(params["steps"]):
            if step.participant not in targets:
                raise ParamError(f"steps[{step.index}]",
                                 f"no edge from this node to {step.participant!r}")

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.steps = parse_steps(params["steps"])
        pivot = next((s.index for s in self.steps if s.action == params["pivot"]), None)
        for step in self.steps:
            step.retriable = pivot is not None and step.index > pivot
        self.pivot = pivot
        self.durable = ("log",) if params["durable"] else ()
        self.init_state()
        # Counters for the summary (kept across crashes: they are the run's, not the node's).
        self.accepted = 0
        self.commands = 0
        self.retries = 0
        self.step_timeouts = 0
        self.resent = 0
        self.compensations = 0
        self.busy_ms = 0.0
        self.ended = 0
        self.compensating = 0
        self._quiet_until = 0.0
        self.max_open = 0
        self._last: tuple[int, int, float] = (0, 0, 0.0)

    def init_state(self) -> None:
        # The orchestrator's log: flow id -> its row (what a restart reads back).
        self.log = LocalDatabase("flows")
        self.queue: deque[_Work] = deque()
        self.busy = 0

    def start(self) -> None:
        by_participant = {edge.dst.id: edge for edge in self.out_edges}
        for step in self.steps:
            step.edge = by_participant[step.participant]

    # -- transitions on the worker pool --------------------------------------------------------
    def _transition(self, fn: Callable[..., None], *args: Any) -> None:
        work = _Work(fn, args)
        if self.busy < self.p["workers"]:
            self._run(work)
        else:
            self.queue.append(work)

    def _run(self, work: _Work) -> None:
        self.busy += 1
        cost = self.p["transition_ms"] * self.slow
        if self.kernel.now < self.sim.duration_ms:
            self.busy_ms += cost  # utilisation is of the run's load, not of its drain
        self.kernel.schedule(cost, self._ran, (self.incarnation, work))

    def _ran(self, ctx: tuple[int, _Work]) -> None:
        incarnation, work = ctx
        if incarnation != self.incarnation or self.down:
            return
        self.busy -= 1
        work.fn(*work.args)
        while self.queue and self.busy < self.p["workers"] and not self.down:
            self._run(self.queue.popleft())

    def _save(self, flow: str, row: dict[str, Any] | None) -> None:
        txn = self.log.begin()
        if row is None:
            txn.delete("flows", flow)
        else:
            txn.put("flows", flow, row)
        txn.commit(self.kernel.now)

    # -- accepting a flow ----------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        self._transition(self._accept, call)

    def _accept(self, call: Call) -> None:
        flow = f"{self.id}-{call.req.id}"
        row = {"step": 0, "phase": RUNNING, "attempt": 0, "done": [], "undo": [],
               "started": self.kernel.now}
        self._save(flow, row)
        self.accepted += 1
        self.sim.flows.start(flow, self.id, steps=len(self.steps))
        open_now = len(self.log.table("flows"))
        if open_now > self.max_open:
            self.max_open = open_now
        call.reply(m.OK)
        if self.crash_point("after_persist_before_send"):
            return
        self._send_step(flow, row)

    # -- forward steps -------------------------------------------------------------------------
    def _command(self, flow: str, step: Step, action: str, role: str) -> None:
        assert step.edge is not None
        self.commands += 1
        req = m.Request(self.commands, self.kernel.now, key=flow, op=action, client=self.id,
                        headers={"role": role, "of": step.action,
                                 "must_commit": role == "undo" or step.retriable},
                        flow=flow)
        self.net.call(step.edge, req, self._replied, (self.incarnation, flow, step, role),
                      timeout_ms=self.p["step_timeout_ms"])

    def _send_step(self, flow: str, row: dict[str, Any]) -> None:
        step = self.steps[row["step"]]
        row = {**row, "attempt": row["attempt"] + 1}
        self._save(flow, row)
        self.sim.flows.step(flow, self.id, step.action, "sent", attempt=row["attempt"])
        self._command(flow, step, step.action, "do")

    def _replied(self, call: Call, reply: m.Reply) -> None:
        incarnation, flow, step, role = call.ctx
        if incarnation != self.incarnation or self.down:
            return  # a reply to a process that is gone
        self._transition(self._handle, flow, step, role, reply)

    def _handle(self, flow: str, step: Step, role: str, reply: m.Reply) -> None:
        row = self.log.get("flows", flow)
        if row is None:
            return
        if role == "undo":
            self._compensated(flow, row, step, reply)
            return
        if row["phase"] != RUNNING or row["step"] != step.index:
            return  # a late reply to an attempt already given up on
        if reply.ok:
            self.sim.flows.step(flow, self.id, step.action, "ok", attempt=row["attempt"])
            row = {**row, "done": row["done"] + [step.index], "attempt": 0,
                   "step": step.index + 1, "maybe": False}
            if row["step"] == len(self.steps):
                self._end(flow, COMPLETED)
                return
            self._save(flow, row)
            if self.crash_point("after_persist_before_send"):
                return
            self._send_step(flow, row)
            return
        timed_out = reply.outcome == m.TIMED_OUT
        if timed_out:
            self.step_timeouts += 1
        # Whether this attempt may have committed: it timed out, or its connection was reset
        # after the participant took it. Refusals and errors say it did not.
        unknown = timed_out or reply.reason == m.CONNECTION_RESET.reason
        if unknown and not row.get("maybe"):
            row = {**row, "maybe": True}
            self._save(flow, row)
        status = "timed_out" if timed_out else "failed"
        self.sim.flows.step(flow, self.id, step.action, status, attempt=row["attempt"],
                            error=reply.error or reply.reason or reply.outcome)
        limit = self.p["max_attempts"]
        business = reply.outcome == m.FAILED and reply.error == m.BUSINESS
        # After the pivot, steps must commit; the pivot's own outcome must be learnt (a
        # timed-out pivot may have committed, and it cannot be undone).
        must_know = step.retriable or (row.get("maybe") and step.index == self.pivot
                                       and not business)
        if must_know or (not business and (limit == 0 or row["attempt"] < limit)):
            self.retries += 1
            self._later(self._backoff(row["attempt"]), self._retry_step, flow, step.index)
            return
        reason = f"{step.action} {'refused' if business else status}: " \
                 f"{reply.reason or reply.error or reply.outcome}"
        undo = [i for i in row["done"] if self.steps[i].compensation]
        if row.get("maybe") and step.compensation and self.p["compensate_unknown"] \
                and not business:
            # A refusal is the participant's recorded answer for the step (a re-sent command
            # that had committed would have been answered with its success): nothing to undo.
            undo.append(step.index)
        if not self.p["compensate"] or not undo:
            self._end(flow, COMPENSATED if self.p["compensate"] else FAILED, reason=reason)
            return
        self.compensating += 1
        if self.kernel.now >= self._quiet_until:
            # One note per few seconds: at 20 declines a second, a note each would drown
            # everything else a learner should read.
            self._quiet_until = self.kernel.now + NOTE_EVERY_MS
            self.note(f"{flow}: {reason}; compensating "
                      + ", ".join(self.steps[i].compensation or "" for i in reversed(undo))
                      + f" ({self.compensating} compensated or compensating so far)")
        row = {**row, "phase": COMPENSATING, "undo": undo, "reason": reason, "attempt": 0}
        self._save(flow, row)
        if self.crash_point("after_persist_before_send"):
            return
        self._send_compensations(flow, row)

    def _retry_step(self, flow: str, index: int) -> None:
        row = self.log.get("flows", flow)
        if row is None or row["phase"] != RUNNING or row["step"] != index:
            return
        self._send_step(flow, row)

    # -- compensations -------------------------------------------------------------------------
    def _send_compensations(self, flow: str, row: dict[str, Any]) -> None:
        pending = row["undo"]
        targets = pending if self.p["compensation_order"] == "parallel" else pending[-1:]
        for index in targets:
            step = self.steps[index]
            assert step.compensation is not None
            self.compensations += 1
            self.sim.flows.step(flow, self.id, step.compensation, "sent", compensation=True)
            self._command(flow, step, step.compensation, "undo")

    def _compensated(self, flow: str, row: dict[str, Any], step: Step, reply: m.Reply) -> None:
        if row["phase"] != COMPENSATING or step.index not in row["undo"]:
            return
        if not reply.ok:
            # Compensations must commit: try again, for ever, with the same backoff.
            self.retries += 1
            self.sim.flows.step(flow, self.id, step.compensation or "", "failed",
                                compensation=True, error=reply.error or reply.outcome)
            attempt = row.get("comp_attempts", 0) + 1
            row = {**row, "comp_attempts": attempt}
            self._save(flow, row)
            self._later(self._backoff(attempt), self._retry_compensation, flow, step.index)
            return
        self.sim.flows.step(flow, self.id, step.compensation or "", "ok", compensation=True)
        undo = [i for i in row["undo"] if i != step.index]
        if not undo:
            self._end(flow, COMPENSATED, reason=row.get("reason"))
            return
        row = {**row, "undo": undo, "comp_attempts": 0}
        self._save(flow, row)
        if self.p["compensation_order"] == "reverse":
            if self.crash_point("after_persist_before_send"):
                return
            self._send_compensations(flow, row)

    def _retry_compensation(self, flow: str, index: int) -> None:
        row = self.log.get("flows", flow)
        if row is None or row["phase"] != COMPENSATING or index not in row["undo"]:
            return
        step = self.steps[index]
        assert step.compensation is not None
        self.compensations += 1
        self.sim.flows.step(flow, self.id, step.compensation, "sent", compensation=True)
        self._command(flow, step, step.compensation, "undo")

    # -- ends, timers, recovery ----------------------------------------------------------------
    def _end(self, flow: str, outcome: str, reason: str | None = None) -> None:
        self._save(flow, None)
        self.ended += 1
        fields = {"reason": reason} if reason else {}
        self.sim.flows.end(flow, self.id, outcome, **fields)

    def _backoff(self, attempt: int) -> float:
        p = self.p
        return float(min(p["retry_initial_ms"] * p["retry_backoff"] ** max(0, attempt - 1),
                         p["retry_max_ms"]))

    def _later(self, delay_ms: float, fn: Callable[..., None], *args: Any) -> None:
        def fire(incarnation: int) -> None:
            if incarnation == self.incarnation and not self.down:
                self._transition(fn, *args)
        self.kernel.schedule(delay_ms, fire, self.incarnation)

    def on_crash(self) -> None:
        self.queue.clear()
        self.busy = 0

    def on_recover(self) -> None:
        open_flows = list(self.log.table("flows").items())
        if not open_flows:
            return
        self.note(f"recovered {len(open_flows)} flows from the log, re-sending their "
                  "current commands")
        for flow, row in open_flows:
            self.resent += 1
            if row["phase"] == RUNNING and row["attempt"] > 0 and not row.get("maybe"):
                # The reply to the attempt in flight at the crash was never heard: that
                # attempt may have committed.
                self._save(flow, {**row, "maybe": True})
            if row["phase"] == COMPENSATING:
                self._transition(self._resume_compensation, flow)
            else:
                self._transition(self._retry_step, flow, row["step"])

    def _resume_compensation(self, flow: str) -> None:
        row = self.log.get("flows", flow)
        if row is not None and row["phase"] == COMPENSATING:
            self._send_compensations(flow, row)

    # -- reporting -----------------------------------------------------------------------------
    def open_flows(self) -> dict[str, dict[str, Any]]:
        """The flows this orchestrator holds now (empty while it is down)."""
        return {} if self.down else dict(self.log.table("flows"))

    def sample(self, window_ms: float) -> dict[str, Any]:
        accepted, ended, busy_ms = self._last
        self._last = (self.accepted, self.ended, self.busy_ms)
        # Where the open flows are: participant -> [flows at its step, flows undoing there].
        at: dict[str, list[int]] = {step.participant: [0, 0] for step in self.steps}
        flows = self.open_flows()
        for row in flows.values():
            if row["phase"] == COMPENSATING:
                for index in row["undo"]:
                    at[self.steps[index].participant][1] += 1
            else:
                at[self.steps[min(row["step"], len(self.steps) - 1)].participant][0] += 1
        return {"arr": self.accepted - accepted, "done": self.ended - ended,
                "q": len(self.queue),
                "util": round((self.busy_ms - busy_ms) / (window_ms * self.p["workers"]), 4),
                "open": len(flows), "at": at}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        util = self.busy_ms / (duration_ms * self.p["workers"]) if duration_ms else 0.0
        return {"processed": self.accepted, "utilisation": round(util, 4),
                "max_queue": 0, "commands": self.commands, "retries": self.retries,
                "step_timeouts": self.step_timeouts, "commands_resent": self.resent,
                "compensations": self.compensations, "open": len(self.open_flows())}


@register_kind
class SagaOrchestrator(Orchestrator):
    KIND = "saga_orchestrator"
    LABEL = "Saga orchestrator"
    DESCRIPTION = ("Runs each saga's local transactions in order and, when one fails, "
                   "their compensations in reverse; keeps a durable saga log.")
    PARAMS = tuple(
        replace(p, default=SAGA_DEFAULTS[p.name]) if p.name in SAGA_DEFAULTS else p
        for p in Orchestrator.PARAMS)
