"""Cluster groups: nodes that talk to each other over a full mesh of peer links.

A kind that can join a cluster puts :data:`CLUSTER_PARAMS` in its ``PARAMS``; every node
whose ``cluster`` parameter names the same group is a member, and each ordered pair of
members gets a :class:`PeerLink` (one direction, its own latency draws), so a document
needs no edge for each pair and the browser can draw the mesh itself.

Peer messages are one-way and asynchronous (a Raft RPC and its response are two messages):
:meth:`Node.send_peer` and :meth:`Node.broadcast` send, :meth:`Node.on_peer` receives. A
message is a dict whose ``type`` names it on the trace (``peer.send`` / ``peer.recv`` /
``peer.drop``). A message to a down node is lost; one to a paused node waits in its inbox
until the resume.

Links can be cut by a partition (see :mod:`patterns.engine.faults`): a cut link drops its
messages, or, when the cut holds them, keeps them and delivers them after the heal, in the
order they were sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from patterns.engine.distributions import Sampler, parse
from patterns.params import Param

if TYPE_CHECKING:
    from patterns.engine.node import Node
    from patterns.engine.simulation import Simulation

PeerMessage = dict[str, Any]

LAN_LATENCY = {"dist": "lognormal", "median": 0.5, "p99": 2.0}

CLUSTER_PARAMS: tuple[Param, ...] = (
    Param("cluster", "str", "", max=64,
          help="The cluster group this node joins: a full mesh of peer links to every other "
               "member (empty: none)."),
    Param("peer_latency_ms", "dist", LAN_LATENCY, unit="ms", max=600_000,
          help="One-way latency of a peer message sent by this node (LAN by default)."),
)


class PeerLink:
    """One direction between two members of a cluster."""

    __slots__ = ("cluster", "cut", "dropped", "dst", "held", "holds", "latency", "sent",
                 "src")

    def __init__(self, cluster: Cluster, src: Node, dst: Node, latency: Sampler) -> None:
        self.cluster = cluster
        self.src = src
        self.dst = dst
        self.latency = latency
        # How many partitions cut this link now, how many of them hold (rather than drop)
        # what they cut, and what they hold, in sending order.
        self.cut = 0
        self.holds = 0
        self.held: list[PeerMessage] = []
        self.sent = 0
        self.dropped = 0

    def send(self, msg: PeerMessage) -> None:
        sim = self.cluster.sim
        self.sent += 1
        trace = sim.trace
        if self.cut:
            if self.holds:
                self.held.append(msg)
                if trace.full:
                    trace.emit({"t": sim.kernel.now, "k": "peer.hold", "from": self.src.id,
                                "to": self.dst.id, "type": msg["type"]})
                return
            self.dropped += 1
            if trace.full:
                trace.emit({"t": sim.kernel.now, "k": "peer.drop", "from": self.src.id,
                            "to": self.dst.id, "type": msg["type"], "why": "partition"})
            return
        delay = self.latency()
        if trace.full:
            trace.emit({"t": sim.kernel.now, "k": "peer.send", "from": self.src.id,
                        "to": self.dst.id, "type": msg["type"], "d": round(delay, 3)})
        sim.kernel.schedule(delay, self._arrive, msg)

    def _arrive(self, msg: PeerMessage) -> None:
        dst = self.dst
        if dst.down:
            self.dropped += 1
            trace = self.cluster.sim.trace
            if trace.full:
                trace.emit({"t": self.cluster.sim.kernel.now, "k": "peer.drop",
                            "from": self.src.id, "to": dst.id, "type": msg["type"],
                            "why": "down"})
            return
        dst.deliver_peer(self.src.id, msg)

    def add_cut(self, hold: bool) -> None:
        self.cut += 1
        if hold:
            self.holds += 1

    def remove_cut(self, hold: bool) -> None:
        """A partition healed: once nothing cuts the link, what it held goes out in order;
        what a dropping cut still in force covers is lost."""
        self.cut -= 1
        if hold:
            self.holds -= 1
        if self.held and (self.cut == 0 or self.holds == 0):
            held, self.held = self.held, []
            for msg in held:
                if self.cut:
                    self.dropped += 1
                else:
                    self.send(msg)


class Cluster:
    """The members of one group, in document order, and the link for each ordered pair."""

    def __init__(self, sim: Simulation, name: str, members: list[Node]) -> None:
        self.sim = sim
        self.name = name
        self.members = members
        self.links: dict[str, dict[str, PeerLink]] = {}
        for src in members:
            out: dict[str, PeerLink] = {}
            latency = parse(src.p["peer_latency_ms"])
            for dst in members:
                if dst is not src:
                    rng = sim.rng(f"{name}:{src.id}>{dst.id}")
                    out[dst.id] = PeerLink(self, src, dst, latency.sampler(rng))
            self.links[src.id] = out

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def majority(self) -> int:
        return self.size // 2 + 1

    def link(self, src: str, dst: str) -> PeerLink:
        return self.links[src][dst]

    def holder(self, role: str) -> Node | None:
        """The live member that holds ``role`` (the highest rank wins, e.g. the highest
        term for a leader; ties go to the first in document order), or None."""
        best: Node | None = None
        best_rank = 0.0
        for node in self.members:
            if node.down:
                continue
            rank = node.role_rank(role)
            if rank is not None and (best is None or rank > best_rank):
                best, best_rank = node, rank
        return best
