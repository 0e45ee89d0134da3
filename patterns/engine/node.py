"""The node model every component kind builds on, and the registry of kinds.

A kind is a subclass of :class:`Node` registered with :func:`register_kind`; it declares its
parameters once (``PARAMS``), which validates documents, fills defaults and drives the
parameter form. A node answers synchronous calls in :meth:`Node.receive` and reports a
``metric`` sample every sim-second through :meth:`Node.sample`.

Life: ``crash`` marks the node down and drops its volatile state (the hook
:meth:`Node.on_crash`); calls to a down node are refused at once. ``recover`` runs
:meth:`Node.on_recover` and the node serves again. ``hang`` accepts calls and never
answers; ``slow`` multiplies its work times; ``error_rate`` makes a share of its work fail.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from patterns.engine import messages as m
from patterns.params import Param

if TYPE_CHECKING:
    from patterns.engine.network import Call, Edge
    from patterns.engine.simulation import Simulation

KINDS: dict[str, type[Node]] = {}

N = TypeVar("N", bound="type[Node]")


def register_kind(cls: N) -> N:
    """Class decorator: make a component kind available to documents under ``cls.KIND``."""
    if cls.KIND in KINDS and KINDS[cls.KIND] is not cls:
        raise ValueError(f"kind {cls.KIND!r} is registered twice")
    KINDS[cls.KIND] = cls
    return cls


def kind_class(kind: str) -> type[Node]:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(
            f"Unknown kind: {kind}. Available: {', '.join(sorted(KINDS))}") from None


class Node:
    KIND: ClassVar[str] = ""
    LABEL: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    # Whether the kind may have several outgoing edges, and what it does with them.
    MAX_OUT_EDGES: ClassVar[int | None] = None

    def __init__(self, sim: Simulation, node_id: str, params: dict[str, Any]) -> None:
        self.sim = sim
        self.kernel = sim.kernel
        self.net = sim.network
        self.trace = sim.trace
        self.id = node_id
        self.p = params
        self.rng: random.Random = sim.rng(node_id)
        self.out_edges: list[Edge] = []
        self.in_edges: list[Edge] = []
        self.down = False
        self.hung = False
        self.slow = 1.0
        self.fault_error_rate = 0.0
        self.fault_error_class = m.TRANSIENT
        self.state: str | None = None
        self.states: list[dict[str, Any]] = []

    # -- wiring and start ----------------------------------------------------------------------
    def start(self) -> None:
        """Called once every node and edge exists; start processes and timers here."""

    # -- serving -------------------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        """Answer a synchronous call (exactly one ``call.reply``, unless hung or lost)."""
        call.reply(m.Reply(m.FAILED, error=m.BUSINESS, status=501,
                           reason=f"{self.KIND} does not take calls"))

    def refuse_if_unavailable(self, call: Call) -> bool:
        """Answer for a node that cannot serve; True when the call was taken care of."""
        if self.down:
            call.reply(m.CONNECTION_REFUSED)
            return True
        return self.hung

    def injected_failure(self) -> m.Reply | None:
        """The failure a fault injects on this unit of work, if any."""
        if self.fault_error_rate > 0.0 and self.rng.random() < self.fault_error_rate:
            return m.BUSINESS_ERROR if self.fault_error_class == m.BUSINESS \
                else m.TRANSIENT_ERROR
        return None

    def set_param(self, name: str, value: Any) -> None:
        """Change a declared parameter mid-run (the ``set`` fault); kinds refresh caches."""
        self.p[name] = value

    # -- life ----------------------------------------------------------------------------------
    def crash(self) -> None:
        if self.down:
            return
        self.down = True
        self.on_crash()
        self.emit({"k": "node.down", "node": self.id})

    def recover(self) -> None:
        if not self.down:
            return
        self.down = False
        self.on_recover()
        self.emit({"k": "node.up", "node": self.id})

    def on_crash(self) -> None:
        """Drop volatile state: queued and in-flight work, buffers, caches."""

    def on_recover(self) -> None:
        """Rebuild what a restart rebuilds before the node serves again."""

    # -- reporting -----------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        if self.trace.on:
            event["t"] = self.kernel.now
            self.trace.emit(event)

    def note(self, text: str) -> None:
        self.emit({"k": "note", "node": self.id, "text": text})

    def set_state(self, new: str, reason: str) -> None:
        """Change the node's named state; every change is an event and kept for the summary."""
        old = self.state
        if old == new:
            return
        self.state = new
        self.states.append({"t": round(self.kernel.now, 3), "from": old, "to": new,
                            "reason": reason})
        self.emit({"k": "node.state", "node": self.id, "from": old, "to": new,
                   "reason": reason})

    def sample(self, window_ms: float) -> dict[str, Any]:
        """Fields of this node's ``metric`` event for the sim-second just ended."""
        return {}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        """This node's part of the end-of-run summary."""
        return {"processed": 0, "utilisation": 0.0, "max_queue": 0}

    def summary(self, duration_ms: float) -> dict[str, Any]:
        out = {"kind": self.KIND, **self.stats(duration_ms),
               "states": self.states}
        return out

    def every(self, period_ms: float, fn: Callable[[], None],
              first_ms: float | None = None) -> None:
        """Call ``fn`` every ``period_ms`` ms for the rest of the run."""
        kernel = self.kernel

        def tick(_: Any) -> None:
            fn()
            kernel.schedule(period_ms, tick)

        kernel.schedule(period_ms if first_ms is None else first_ms, tick)
