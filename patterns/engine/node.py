"""The node model every component kind builds on, and the registry of kinds.

A kind is a subclass of :class:`Node` registered with :func:`register_kind`; it declares its
parameters once (``PARAMS``), which validates documents, fills defaults and drives the
parameter form. A node answers synchronous calls in :meth:`Node.receive` and reports a
``metric`` sample every sim-second through :meth:`Node.sample`.

Life: ``crash`` marks the node down and drops its volatile state (the hook
:meth:`Node.on_crash`); calls to a down node are refused at once. ``recover`` runs
:meth:`Node.on_recover` and the node serves again. ``hang`` accepts calls and never
answers; ``slow`` multiplies its work times; ``error_rate`` makes a share of its work fail.

Durable and volatile state: a kind that implements :meth:`Node.init_state` (which sets every
piece of its state to what a fresh process starts with) and names the durable part in
``DURABLE`` gets a real restart. A crash keeps the durable attributes as they were (they are
on disk), cancels the node's local timers and forgets its inbox; ``recover`` rebuilds the
memory with ``init_state``, puts the durable attributes back, and runs ``on_recover`` while
the node is RECOVERING; then it is READY (``node.life`` events say so).

Such kinds use :meth:`Node.timer` for every timer, on the node's own :class:`Clock` (which a
``clock_skew`` fault moves), and may set ``PAUSABLE``: ``pause`` then freezes the node
(timers stopped where they are, calls and peer messages kept in an inbox, memory intact)
and the resume runs on from there, as after a long GC pause.

Cluster groups: see :mod:`patterns.engine.cluster`. A member sends with
:meth:`Node.send_peer` / :meth:`Node.broadcast` and receives in :meth:`Node.on_peer`; it
says which roles it holds (``leader``…) in :meth:`Node.role_rank`, which is how a fault
aimed at ``leader:<cluster>`` finds its node.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from patterns.engine import messages as m
from patterns.engine.clock import Clock, LocalTimer
from patterns.params import Param

if TYPE_CHECKING:
    from patterns.engine.cluster import Cluster, PeerLink, PeerMessage
    from patterns.engine.network import Call, Edge
    from patterns.engine.simulation import Simulation

# A node's life, as ``node.life`` events report it for kinds with durable state.
READY = "READY"
DOWN = "DOWN"
RECOVERING = "RECOVERING"
PAUSED = "PAUSED"

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
    # Attributes that survive a crash (on disk); the rest of the state is volatile. Only
    # kinds that implement ``init_state`` get the restart described in the module docstring.
    DURABLE: ClassVar[tuple[str, ...]] = ()
    # Whether ``pause`` can freeze the kind: true only when all its timers are local timers.
    PAUSABLE: ClassVar[bool] = False
    # Roles a member of a cluster may hold, usable as fault targets (``leader:<cluster>``).
    ROLES: ClassVar[tuple[str, ...]] = ()
    # Named points where a ``crash`` fault with ``point`` can strike (between a commit and a
    # publish, say), since a random instant almost never hits such a window.
    CRASH_POINTS: ClassVar[tuple[str, ...]] = ()

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
        # Life beyond up and down: a local clock, local timers, pause, durable state.
        self.clock = Clock(self.kernel)
        self.paused = False
        self.incarnation = 0  # bumped by every crash: late callbacks of a past life see it
        self.durable: tuple[str, ...] = self.DURABLE
        self._timers: list[LocalTimer] = []
        self._inbox: list[tuple[str, Any, Any]] = []
        self._on_disk: dict[str, Any] = {}
        self.cluster: Cluster | None = None
        self._links: dict[str, PeerLink] = {}
        # Crash points armed by a fault: point -> how long the node stays down (ms).
        self._armed: dict[str, float] = {}
        # Faults in force per action, so overlapping ones revert correctly (engine.faults).
        self.fault_layers: dict[str, tuple[Any, list[list[Any]]]] = {}

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Check what a single declaration cannot (one parameter against another); raise
        :class:`patterns.params.ParamError` naming the parameter. Called on validation."""

    @classmethod
    def check_wiring(cls, params: dict[str, Any], targets: list[str]) -> None:
        """Check parameters against the node's outgoing edges (``targets``: the ids they
        lead to, in document order); raise ParamError naming the parameter."""

    @property
    def restartable(self) -> bool:
        """Whether the kind has the durable/volatile restart (it implements init_state)."""
        return type(self).init_state is not Node.init_state

    def init_state(self) -> None:
        """Set every piece of state to what a fresh process starts with (kinds override)."""

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
        if self.restartable:
            # What is on disk stays as it was at the crash; memory and timers are gone.
            self._on_disk = {name: copy.deepcopy(getattr(self, name)) for name in self.durable}
            self.incarnation += 1
            self.paused = False
            self.__dict__.pop("receive", None)
            self._inbox.clear()
            for timer in self._timers:
                timer.cancel()
                timer.thaw()
        self.on_crash()
        self.emit({"k": "node.down", "node": self.id})
        if self.restartable:
            self._life(DOWN, "crashed")

    def recover(self) -> None:
        if not self.down:
            return
        self.down = False
        if self.restartable:
            self._life(RECOVERING, "restarted: memory rebuilt, durable state read back")
            self.init_state()
            for name, value in self._on_disk.items():
                setattr(self, name, value)
            self.on_recover()
            self.emit({"k": "node.up", "node": self.id})
            self._life(READY, "recovered")
            return
        self.on_recover()
        self.emit({"k": "node.up", "node": self.id})

    def _life(self, life: str, reason: str) -> None:
        self.emit({"k": "node.life", "node": self.id, "life": life, "reason": reason})

    def arm_crash(self, point: str, down_ms: float) -> None:
        """A ``crash`` fault with a ``point``: the next time the node reaches ``point`` it
        crashes there, and recovers ``down_ms`` later."""
        self._armed[point] = down_ms

    def disarm_crash(self, point: str) -> None:
        self._armed.pop(point, None)

    def crash_point(self, point: str) -> bool:
        """Components call this at each point they declare in ``CRASH_POINTS``; True means
        the node crashed right here and the caller must stop (its memory is gone)."""
        if not self._armed or point not in self._armed or self.down:
            return False
        down_ms = self._armed.pop(point)
        self.note(f"crashed at {point}; back in {down_ms / 1000.0:g} s")
        self.crash()
        self.kernel.schedule(down_ms, self._recover_after_point, self.incarnation)
        return True

    def _recover_after_point(self, incarnation: int) -> None:
        # Not if another crash took the node down again meanwhile (its own end recovers it).
        if incarnation == self.incarnation:
            self.recover()

    def pause(self) -> None:
        """Stop the world: timers freeze, calls and peer messages wait, memory is kept."""
        if self.down or self.paused:
            return
        self.paused = True
        for timer in self._timers:
            timer.freeze()
        # Calls that arrive now wait in the inbox: shadowing ``receive`` on the instance
        # costs the network's hot path nothing.
        self.__dict__["receive"] = self._hold_call
        self._life(PAUSED, "paused (stop-the-world)")

    def resume(self) -> None:
        """Run on where the pause stopped: timers go on, the inbox is delivered in order."""
        if not self.paused:
            return
        self.paused = False
        self.__dict__.pop("receive", None)
        for timer in self._timers:
            timer.thaw()
        self._life(READY, "resumed")
        inbox, self._inbox = self._inbox, []
        for what, src, item in inbox:
            if self.down or self.paused:
                break
            if what == "call":
                self.receive(item)
            else:
                self.deliver_peer(src, item)

    def _hold_call(self, call: Call) -> None:
        self._inbox.append(("call", "", call))

    def skew_clock(self, offset_ms: float, rate: float) -> None:
        """A ``clock_skew`` fault: jump the local clock and set its rate; timers follow."""
        old_rate = self.clock.rate
        self.clock.skew(offset_ms, rate)
        if rate != old_rate:
            for timer in self._timers:
                timer.retime(old_rate)

    def timer(self, fn: Callable[[], None]) -> LocalTimer:
        """A resettable timer on this node's clock, frozen by a pause, cancelled by a crash."""
        timer = LocalTimer(self.kernel, self.clock, fn)
        if self.paused:
            timer.freeze()
        self._timers.append(timer)
        return timer

    def local_now(self) -> float:
        """The time as this node's clock reads it (local ms)."""
        return self.clock.now()

    # -- cluster peers -----------------------------------------------------------------------
    def join(self, cluster: Cluster) -> None:
        """Called by the simulation once the cluster's links exist."""
        self.cluster = cluster
        self._links = cluster.links[self.id]

    @property
    def peers(self) -> list[str]:
        """The other members of this node's cluster, in document order."""
        return list(self._links)

    def send_peer(self, peer: str, msg: PeerMessage) -> None:
        """Send a one-way message to a member of the same cluster."""
        self._links[peer].send(msg)

    def broadcast(self, msg: PeerMessage) -> None:
        """Send the same message to every other member (one message per link)."""
        for link in self._links.values():
            link.send(msg)

    def deliver_peer(self, src: str, msg: PeerMessage) -> None:
        """A peer message arrives (the node is up): handled now, or kept while paused."""
        if self.paused:
            self._inbox.append(("peer", src, msg))
            return
        trace = self.trace
        if trace.full:
            trace.emit({"t": self.kernel.now, "k": "peer.recv", "from": src, "to": self.id,
                        "type": msg["type"]})
        self.on_peer(src, msg)

    def on_peer(self, src: str, msg: PeerMessage) -> None:
        """Handle a peer message (kinds that join clusters override)."""

    def role_rank(self, role: str) -> float | None:
        """None when the node does not hold ``role``; else a rank (a leader's term), the
        highest of which a role selector picks."""
        return None

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
