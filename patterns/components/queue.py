"""A message queue with competing consumers (SQS- or RabbitMQ-like).

A producer's call is answered as soon as the message is stored (reply on acceptance), so
the producer never waits for the work; a full queue rejects (503). The queue keeps
``consumers`` deliveries in flight towards its outgoing edges (round robin over them).
A delivery that succeeds is acknowledged and the message is gone; one that fails, or is not
answered within ``visibility_timeout_ms``, returns to the back of the queue and is received
again, up to ``max_receives`` times, after which it is dead-lettered. A queue created at
``start_s`` fails what is sent to it before then (it does not exist yet). Every message
therefore ends in one fate: delivered, dead-lettered, rejected, dropped by a crash, or still
queued. The pushing, acks and redelivery are :class:`~patterns.components.delivery.Subscription`'s,
shared with the topic.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from patterns.components.delivery import Delivery, Subscription
from patterns.engine import messages as m
from patterns.engine.network import Call, Edge
from patterns.engine.node import Node, register_kind
from patterns.params import Param

__all__ = ["Delivery", "Queue"]

NO_SUCH_QUEUE = m.Reply(m.FAILED, error=m.BUSINESS, status=404, reason="no such queue yet")


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
        Param("start_s", "float", 0.0, unit="s", min=0, max=86_400,
              help="When the queue is created; before that a message sent to it fails "
                   "(404), so it holds nothing from before."),
        Param("redelivery_delay_ms", "float", 0.0, unit="ms", min=0, max=43_200_000,
              help="A failed or refused delivery is received again after this long "
                   "(0 = at once: a consumer that is down then burns a receive per push)."),
    )

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.messages = Subscription(
            self, self._next_consumer, capacity=params["capacity"],
            max_in_flight=params["consumers"],
            ack_timeout_ms=params["visibility_timeout_ms"],
            max_deliveries=params["max_receives"],
            backoff_ms=params["redelivery_delay_ms"],
            backoff_max_ms=params["redelivery_delay_ms"])
        self.accepted = 0
        self.rejected = 0
        self._next_edge = 0
        self._last = (0, 0)

    @property
    def backlog(self) -> deque[Delivery]:
        return self.messages.queue

    @property
    def in_flight(self) -> int:
        return self.messages.in_flight

    def set_param(self, name: str, value: Any) -> None:
        self.p[name] = value
        settings = {"capacity": "capacity", "consumers": "max_in_flight",
                    "visibility_timeout_ms": "ack_timeout_ms", "max_receives": "max_deliveries"}
        if name in settings:
            setattr(self.messages, settings[name], value)
        elif name == "redelivery_delay_ms":
            self.messages.backoff_ms = self.messages.backoff_max_ms = value

    def _next_consumer(self) -> Edge | None:
        edges = self.out_edges
        if not edges:
            return None
        edge = edges[self._next_edge % len(edges)]
        self._next_edge += 1
        return edge

    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        if self.kernel.now < self.p["start_s"] * 1000.0:
            call.reply(NO_SUCH_QUEUE)
            return
        if not self.messages.offer(call.req):
            self.rejected += 1
            call.reply(m.QUEUE_FULL)
            return
        self.accepted += 1
        call.reply(m.OK)
        self.messages.pump()

    def on_crash(self) -> None:
        # An in-memory broker loses what it held; in-flight deliveries' acks go nowhere.
        self.messages.crash()

    def on_recover(self) -> None:
        self.messages.pump()

    def sample(self, window_ms: float) -> dict[str, Any]:
        acc, done = self._last
        delivered = self.messages.delivered
        self._last = (self.accepted, delivered)
        return {"q": len(self.backlog), "inflight": self.in_flight,
                "arr": self.accepted - acc, "done": delivered - done}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        msgs = self.messages
        return {"processed": msgs.delivered, "utilisation": 0.0,
                "max_queue": msgs.max_queued, "accepted": self.accepted,
                "rejected": self.rejected, "redelivered": msgs.redelivered,
                "dead_lettered": msgs.dead_lettered, "lost_in_crash": msgs.lost_in_crash,
                "backlog": len(self.backlog),
                "end_to_end_ms": msgs.latency.summary()}
