"""A participant: a service with its own transactional database that carries out a flow's
commands (a saga's local transactions and their compensations).

A command names its action (``Request.op``), its flow (``Request.flow``) and whether it does
or undoes a step (header ``role`` ``do`` / ``undo``, and ``of``: the step's action). The
participant works on it (``service_time_ms``) and then, in one local transaction, applies
the effect and records the command in its ``processed`` table, keyed by (flow, action):

- with ``idempotent`` (an inbox), a command already processed is not applied again: the
  recorded answer is given back (a re-sent command after an orchestrator restart or a
  timeout takes effect once);
- an ``undo`` of a step that never took effect is a no-op that leaves a tombstone, so the
  step's command arriving late (it was delayed, the orchestrator timed out and compensated)
  is refused rather than applied after its compensation;
- with ``stock`` > 0 every ``do`` takes a unit and every ``undo`` gives it back; an empty
  stock refuses the step (``business``).

A ``business`` failure injected by a fault refuses a ``do`` (recorded, so a retry is refused
the same way), except a command marked ``must_commit`` (a compensation, a step after a
saga's pivot), which by design cannot be refused; a transient failure commits nothing.
Every commit is a ``tx.commit`` event naming the flow, action and effect, which is the
ground truth a saga's checks read. The database is durable; a crash may strike at
``after_commit_before_reply``.
"""

from __future__ import annotations

from typing import Any

from patterns.components.service import Job, WorkerPool, pool_params
from patterns.engine import messages as m
from patterns.engine.distributions import Sampler, parse
from patterns.engine.localdb import Commit, LocalDatabase
from patterns.engine.network import Call
from patterns.engine.node import register_kind
from patterns.params import Param

# Effects a command's transaction records (the ``effect`` of its tx.commit event).
APPLIED = "applied"
UNDONE = "undone"
NOOP = "noop"  # an undo of a step that never took effect
REFUSED = "refused"  # a business refusal, recorded
OUT_OF_STOCK = "out of stock"


@register_kind
class Participant(WorkerPool):
    KIND = "participant"
    LABEL = "Participant"
    DESCRIPTION = ("A service with its own database that applies a flow's steps and their "
                   "compensations, each once.")
    PARAMS = (
        *pool_params("command", 4, 10.0,
                     "Work time of one command, its local commit included."),
        Param("error_rate", "float", 0.0, min=0, max=1,
              help="Share of commands that fail with a transient error (nothing committed)."),
        Param("idempotent", "bool", True,
              help="Record each processed command with its effect, and apply a repeat "
                   "once (an inbox)."),
        Param("stock", "int", 0, min=0, max=1_000_000_000,
              help="Units a step takes and its undo gives back (0 = no stock kept)."),
        Param("tombstones", "bool", True,
              help="An undo of a step never applied leaves a mark that refuses the step's "
                   "late command (false: the late command is applied after its undo)."),
    )
    MAX_OUT_EDGES = 0
    DURABLE = ("db",)
    CRASH_POINTS = ("after_commit_before_reply",)

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self._service_time: Sampler = parse(params["service_time_ms"]).sampler(self.rng)
        self.db = LocalDatabase("processed", "rows", "stock")
        self.db.tables["stock"]["units"] = {"free": params["stock"]}
        self.applied = 0
        self.undone = 0
        self.noops = 0
        self.refused = 0
        self.duplicates_ignored = 0
        self.duplicates_applied = 0
        self.late_refused = 0

    def init_state(self) -> None:
        # Memory after a restart: no queued or running commands (the database is durable).
        self.queue.clear()
        self.jobs.clear()
        self.busy = 0

    def _rebuild_samplers(self) -> None:
        self._service_time = parse(self.p["service_time_ms"]).sampler(self.rng)

    def work_time(self, call: Call) -> float:
        return self._service_time()

    @property
    def stock_free(self) -> int:
        return int(self.db.tables["stock"]["units"]["free"])

    def _worked(self, job: Job) -> None:
        if job.dead:
            return
        call = job.call
        req = call.req
        headers = req.headers or {}
        undo = headers.get("role") == "undo"
        failure = self.injected_failure() if self.fault_error_rate else None
        if failure is not None and failure.error == m.BUSINESS and headers.get("must_commit"):
            # Compensations and the steps after a saga's pivot are not business decisions:
            # they are designed to be able to commit (they may still fail transiently).
            failure = None
        if failure is None and self.error_rate > 0.0 and self.rng.random() < self.error_rate:
            failure = m.TRANSIENT_ERROR
        if failure is not None and failure.error != m.BUSINESS:
            self._finish(job, failure)
            return
        reply = self._transact(req, undo, headers.get("of", req.op), failure)
        if self.crash_point("after_commit_before_reply"):
            return
        self._finish(job, reply)

    def _transact(self, req: m.Request, undo: bool, of: str,
                  failure: m.Reply | None) -> m.Reply:
        flow, action = req.flow, req.op
        txn = self.db.begin()
        seen = txn.get("processed", (flow, action))
        if seen is not None and self.p["idempotent"]:
            if seen.get("effect") == NOOP and not undo:
                self.late_refused += 1  # a step whose compensation already ran
            else:
                self.duplicates_ignored += 1
            txn.abort()
            return m.OK if seen["ok"] else _refusal(seen["reason"])
        if seen is not None:
            self.duplicates_applied += 1
        stock = txn.get("stock", "units")
        assert stock is not None
        keeps_stock = self.p["stock"] > 0
        if undo:
            done = txn.get("processed", (flow, of))
            if done is not None and done.get("effect") == APPLIED:
                effect = UNDONE
                txn.put("rows", (flow, of), {"state": "undone"})
                if keeps_stock:
                    txn.put("stock", "units", {"free": stock["free"] + 1})
                self.undone += 1
            else:
                effect = NOOP
                if self.p["tombstones"]:
                    # The step's own command, should it still arrive, is refused.
                    txn.put("processed", (flow, of), {"ok": False, "effect": NOOP,
                                                       "reason": "already compensated"})
                self.noops += 1
            txn.put("processed", (flow, action), {"ok": True, "effect": effect})
            self._commit(txn, flow, action, of, effect)
            return m.OK
        reason = None
        if failure is not None:
            reason = failure.reason or "declined"
        elif keeps_stock and stock["free"] <= 0:
            reason = OUT_OF_STOCK
        if reason is not None:
            self.refused += 1
            txn.put("processed", (flow, action), {"ok": False, "effect": REFUSED,
                                                   "reason": reason})
            self._commit(txn, flow, action, of, REFUSED, reason)
            return _refusal(reason)
        if keeps_stock:
            txn.put("stock", "units", {"free": stock["free"] - 1})
        txn.put("rows", (flow, action), {"state": "done"})
        txn.put("processed", (flow, action), {"ok": True, "effect": APPLIED})
        self.applied += 1
        self._commit(txn, flow, action, of, APPLIED)
        return m.OK

    def _commit(self, txn: Any, flow: str | None, action: str, of: str, effect: str,
                reason: str | None = None) -> None:
        txn.commit(self.kernel.now, on_commit=lambda c: self._record(c, flow, action, of,
                                                                     effect, reason))

    def _record(self, commit: Commit, flow: str | None, action: str, of: str,
                effect: str, reason: str | None) -> None:
        event = {"k": "tx.commit", "node": self.id, "lsn": commit.lsn, "flow": flow,
                 "action": action, "of": of, "effect": effect}
        if reason:
            event["reason"] = reason
        self.sim.record(event)

    def stats(self, duration_ms: float) -> dict[str, Any]:
        out = super().stats(duration_ms)
        out.update({"applied": self.applied, "undone": self.undone, "noops": self.noops,
                    "refused": self.refused, "duplicates_ignored": self.duplicates_ignored,
                    "late_refused": self.late_refused,
                    "duplicates_applied": self.duplicates_applied})
        if self.p["stock"] > 0:
            out["stock_free"] = self.stock_free
        return out


def _refusal(reason: str) -> m.Reply:
    return m.Reply(m.FAILED, error=m.BUSINESS, status=422, reason=reason)
