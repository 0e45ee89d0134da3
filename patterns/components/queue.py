"""A message queue with competing consumers (SQS- or RabbitMQ-like).

A producer's call is answered as soon as the message is stored (reply on acceptance), so
the producer never waits for the work; a full queue rejects (503). The queue keeps
``consumers`` deliveries in flight towards its outgoing edges (round robin over them).
A delivery that succeeds is acknowledged and the message is gone; one that fails, or is not
answered within ``visibility_timeout_ms``, returns to the queue and is received again, up
to ``max_receives`` times, after which it is dead-lettered. Every message therefore ends in
one fate: delivered, dead-lettered, rejected, dropped by a crash, or still queued.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from patterns.engine import messages as m
from patterns.engine.metrics import LatencyRecorder
from patterns.engine.network import Call, Invocation
from patterns.engine.node import Node, register_kind
from patterns.params import Param


class Delivery:
    """A stored message: the producer's request and how often it was received."""

    __slots__ = ("enqueued", "receives", "req")

    def __init__(self, req: m.Request, enqueued: float) -> None:
        self.req = req
        self.enqueued = enqueued
        self.receives = 0


@register_kind
class Queue(Node):
    KIND = "queue"
    LABEL = "Queue"
    DESCRIPTION = "Stores messages and hands each to one consumer; the producer does not wait."
    PARAMS = (
        Param("capacity", "int", 100_000, min=1, max=100_000_000,
              help="Messages it holds; a full queue rejects with 503."),
        Param("consumers", "int", 4, min=1, max=10_000,
              help="Deliveries in flight at once (consumer threads × prefetch)."),
        Param("visibility_timeout_ms", "float", 30_000.0, unit="ms", min=1, max=43_200_000,
              help="An unanswered delivery is visible again after this long (SQS: 30 s)."),
        Param("max_receives", "int", 5, min=1, max=1000,
              help="Receives before a message is dead-lettered."),
    )

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.backlog: deque[Delivery] = deque()
        self.in_flight = 0
        self.accepted = 0
        self.rejected = 0
        self.delivered = 0
        self.redelivered = 0
        self.dead_lettered = 0
        self.lost_in_crash = 0
        self.max_backlog = 0
        self.end_to_end = LatencyRecorder()
        self._next_edge = 0
        self._last = (0, 0)

    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        if len(self.backlog) >= self.p["capacity"]:
            self.rejected += 1
            call.reply(m.QUEUE_FULL)
            return
        self.accepted += 1
        self.backlog.append(Delivery(call.req, self.kernel.now))
        if len(self.backlog) > self.max_backlog:
            self.max_backlog = len(self.backlog)
        call.reply(m.OK)
        self._pump()

    def _pump(self) -> None:
        edges = self.out_edges
        if not edges or self.down:
            return
        while self.backlog and self.in_flight < self.p["consumers"]:
            delivery = self.backlog.popleft()
            delivery.receives += 1
            self.in_flight += 1
            edge = edges[self._next_edge % len(edges)]
            self._next_edge += 1
            self.net.call(edge, delivery.req, self._on_ack, delivery,
                          timeout_ms=self.p["visibility_timeout_ms"])

    def _on_ack(self, handle: Call | Invocation, reply: m.Reply) -> None:
        delivery: Delivery = handle.ctx
        if self.down:
            return
        self.in_flight -= 1
        if reply.ok:
            self.delivered += 1
            self.end_to_end.record(self.kernel.now - delivery.req.created)
        elif delivery.receives >= self.p["max_receives"]:
            self.dead_lettered += 1
            self.emit({"k": "msg.dead", "node": self.id, "req": delivery.req.id,
                       "receives": delivery.receives})
        else:
            self.redelivered += 1
            self.backlog.append(delivery)
        self._pump()

    def on_crash(self) -> None:
        # An in-memory broker loses what it held; in-flight deliveries' acks go nowhere.
        self.lost_in_crash += len(self.backlog) + self.in_flight
        self.backlog.clear()
        self.in_flight = 0

    def on_recover(self) -> None:
        self._pump()

    def sample(self, window_ms: float) -> dict[str, Any]:
        acc, done = self._last
        self._last = (self.accepted, self.delivered)
        return {"q": len(self.backlog), "inflight": self.in_flight,
                "arr": self.accepted - acc, "done": self.delivered - done}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.delivered, "utilisation": 0.0,
                "max_queue": self.max_backlog, "accepted": self.accepted,
                "rejected": self.rejected, "redelivered": self.redelivered,
                "dead_lettered": self.dead_lettered, "lost_in_crash": self.lost_in_crash,
                "backlog": len(self.backlog), "end_to_end_ms": self.end_to_end.summary()}
