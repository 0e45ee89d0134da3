"""The operation history of a run, as Jepsen records it.

A process (a client, a worker) *invokes* an operation and later learns how it ended: ``ok``
(it took effect), ``fail`` (it certainly did not) or ``info`` (unknown: a timeout, a crash;
it may or may not have taken effect). Checkers (linearizability, lost writes, stale reads)
read the history, never the components' internals. Each step is an event (``op.invoke``,
``op.ok``, ``op.fail``, ``op.info``) on the trace, and is kept here whatever the trace level,
so a run's checks see it even when nobody streams it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patterns.engine.simulation import Simulation

OK, FAIL, INFO = "ok", "fail", "info"


class Op:
    """One operation: who did what, and how it ended (None while it is still open)."""

    __slots__ = ("end", "error", "f", "id", "invoked", "process", "result", "value")

    def __init__(self, op_id: int, process: str, f: str, value: Any, invoked: float) -> None:
        self.id = op_id
        self.process = process
        self.f = f
        self.value = value
        self.invoked = invoked
        self.end: float | None = None
        self.result: str | None = None
        self.error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"op": self.id, "process": self.process, "f": self.f, "value": self.value,
                "invoked": round(self.invoked, 3), "result": self.result,
                "end": None if self.end is None else round(self.end, 3),
                **({"error": self.error} if self.error else {})}


class History:
    """``invoke`` opens an operation and returns it; ``ok`` / ``fail`` / ``info`` close it."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.ops: list[Op] = []
        self.events: list[dict[str, Any]] = []

    def _record(self, event: dict[str, Any]) -> None:
        event["t"] = round(self.sim.kernel.now, 3)
        self.events.append(event)
        self.sim.trace.emit(dict(event))

    def invoke(self, process: str, f: str, value: Any = None) -> Op:
        op = Op(len(self.ops) + 1, process, f, value, self.sim.kernel.now)
        self.ops.append(op)
        self._record({"k": "op.invoke", "op": op.id, "process": process, "f": f,
                      "value": value})
        return op

    def _close(self, op: Op, result: str, value: Any, error: str | None) -> None:
        if op.result is not None:
            raise ValueError(f"operation {op.id} already ended ({op.result})")
        op.result = result
        op.end = self.sim.kernel.now
        op.error = error
        if value is not None:
            op.value = value
        event: dict[str, Any] = {"k": f"op.{result}", "op": op.id, "process": op.process,
                                 "f": op.f, "value": op.value}
        if error:
            event["error"] = error
        self._record(event)

    def ok(self, op: Op, value: Any = None) -> None:
        """It took effect (``value``: what a read returned, if anything)."""
        self._close(op, OK, value, None)

    def fail(self, op: Op, error: str = "") -> None:
        """It certainly did not take effect."""
        self._close(op, FAIL, None, error or None)

    def info(self, op: Op, error: str = "") -> None:
        """Its fate is unknown (a timeout, a crash): it may have taken effect."""
        self._close(op, INFO, None, error or None)

    def open_ops(self) -> list[Op]:
        """Operations invoked and not ended: at the end of a run, indeterminate too."""
        return [op for op in self.ops if op.result is None]
