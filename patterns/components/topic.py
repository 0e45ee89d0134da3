"""A publish-subscribe topic (Google Pub/Sub-, SNS- or RabbitMQ-fanout-like).

A publisher's call is answered once the message is stored in every subscription (reply on
acceptance), so the publisher never waits for a subscriber. Each outgoing edge is one
subscription with its own queue, named after its subscriber: a slow or absent subscriber
grows only its own backlog. A subscription pushes its messages to the subscriber with at
most ``max_in_flight`` pushes outstanding, and the subscriber's reply is the ack:

- ``at_most_once``: each message is pushed once; a failed, refused or unacknowledged push
  loses it (counted ``lost``);
- ``at_least_once``: a failed push, or one not acked within ``ack_timeout_ms``, is
  redelivered after a backoff that doubles from ``redelivery_backoff_ms`` up to
  ``redelivery_backoff_max_ms`` (Pub/Sub's retry policy), until ``max_deliveries``
  receives (then dead-lettered). A message keeps its id across redeliveries. A late ack
  still settles a message waiting for its redelivery; every successful reply beyond a
  message's first is a time the subscriber processed it again (``duplicates``). A reply
  lost on the wire hides its duplicate from the topic, as it would from a real broker.

A subscription holds at most ``subscription_capacity`` messages waiting; past that,
``overflow`` drops the oldest (``drop_head``, RabbitMQ's default) or refuses the new one
(``reject_publish``: the other subscriptions keep it, the publisher gets 503).

Subscriptions exist from the start, except those named in ``unsubscribed`` (a subscriber's
node id, or the edge's id). A subscriber joins late by a ``set`` of ``unsubscribed`` at the
time it subscribes, and leaves the same way: subscribing is something that happens to the
topic at a time, so it is an intervention, recorded on the run like any fault and possible
live, rather than a property of the edge. A subscription receives only the messages
published while it exists (the contrast with a log, which a newcomer can replay), and
removing it discards what it held. The topic's memory is volatile: a crash loses it all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patterns.components.delivery import (
    AT_LEAST_ONCE,
    DELIVERY_MODES,
    DROP_HEAD,
    REJECT,
    Subscription,
)
from patterns.engine import messages as m
from patterns.engine.network import Call, Edge
from patterns.engine.node import Node, register_kind
from patterns.params import Param

OVERFLOWS = (DROP_HEAD, "reject_publish")

# Topic parameter → Subscription attribute, for changes mid-run.
_SETTINGS = {
    "subscription_capacity": "capacity",
    "max_in_flight": "max_in_flight",
    "ack_timeout_ms": "ack_timeout_ms",
    "delivery": "delivery",
    "max_deliveries": "max_deliveries",
    "redelivery_backoff_ms": "backoff_ms",
    "redelivery_backoff_max_ms": "backoff_max_ms",
}


@register_kind
class Topic(Node):
    KIND = "topic"
    LABEL = "Topic"
    DESCRIPTION = ("Copies each published message to every subscription; each subscriber "
                   "is pushed its own copy at its own pace. The publisher does not wait.")
    PARAMS = (
        Param("delivery", "choice", AT_LEAST_ONCE, choices=DELIVERY_MODES,
              help="at_most_once: push once, a failed push is lost. at_least_once: "
                   "redeliver until acked (duplicates possible)."),
        Param("subscription_capacity", "int", 100_000, min=1, max=100_000_000,
              help="Messages a subscription holds waiting; past it, overflow applies."),
        Param("overflow", "choice", DROP_HEAD, choices=OVERFLOWS,
              help="drop_head: a full subscription drops its oldest message (RabbitMQ); "
                   "reject_publish: it refuses the new one and the publisher gets 503."),
        Param("max_in_flight", "int", 10, min=1, max=100_000,
              help="Pushes outstanding per subscription (prefetch, flow control)."),
        Param("ack_timeout_ms", "float", 10_000.0, unit="ms", min=1, max=600_000,
              help="A push not acked by then counts as failed (Pub/Sub ack deadline: 10 s)."),
        Param("redelivery_backoff_ms", "float", 1000.0, unit="ms", min=0, max=600_000,
              help="Wait before the first redelivery, doubling per receive "
                   "(Pub/Sub: 10 s; teaching: 1 s)."),
        Param("redelivery_backoff_max_ms", "float", 10_000.0, unit="ms", min=0,
              max=3_600_000, help="Longest wait between receives (Pub/Sub: 600 s; "
                                  "teaching: 10 s)."),
        Param("max_deliveries", "int", None, min=1, max=1000, nullable=True,
              help="Receives before a message is dead-lettered (null = never, as Pub/Sub "
                   "without a dead-letter topic)."),
        Param("unsubscribed", "list", [], max_items=1000,
              help="Subscribers (node or edge ids) not subscribed now; set it mid-run "
                   "to join or leave."),
    )

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.subscriptions: dict[str, Subscription] = {}
        self._edge_names: dict[str, str] = {}  # edge id → subscription name
        self.published = 0
        self.rejected = 0
        self._last = (0, 0)

    def start(self) -> None:
        p = self.p
        for edge in self.out_edges:
            name = edge.dst.id if edge.dst.id not in self.subscriptions else edge.id
            self._edge_names[edge.id] = name
            self.subscriptions[name] = Subscription(
                self, _only(edge), name=name, capacity=p["subscription_capacity"],
                max_in_flight=p["max_in_flight"], ack_timeout_ms=p["ack_timeout_ms"],
                delivery=p["delivery"], max_deliveries=p["max_deliveries"],
                backoff_ms=p["redelivery_backoff_ms"],
                backoff_max_ms=p["redelivery_backoff_max_ms"], requeue_front=True,
                overflow=DROP_HEAD if p["overflow"] == DROP_HEAD else REJECT,
                late_ack_settles=True)
        self._subscribe(p["unsubscribed"])

    def _subscribe(self, unsubscribed: list[str]) -> None:
        """Attach every subscription except those named (by subscriber or edge id)."""
        names = set(unsubscribed)
        edge_names = self._edge_names
        unknown = names - set(self.subscriptions) - set(edge_names)
        if unknown:
            raise ValueError(f"{self.id}.unsubscribed: no subscription {sorted(unknown)[0]!r}; "
                             f"available: {', '.join(self.subscriptions)}")
        for edge_id, name in edge_names.items():
            sub = self.subscriptions[name]
            wanted = name not in names and edge_id not in names
            if wanted and not sub.attached:
                sub.attach()
                self.note(f"{name} subscribed to {self.id}: it gets messages from now on")
            elif not wanted and sub.attached:
                held = sub.waiting
                sub.detach()
                if self.kernel.now > 0.0:
                    self.note(f"{name} unsubscribed from {self.id}: {held} waiting "
                              "messages discarded")

    def set_param(self, name: str, value: Any) -> None:
        self.p[name] = value
        if name == "unsubscribed":
            self._subscribe(value)
            return
        attribute = _SETTINGS.get(name)
        for sub in self.subscriptions.values():
            if attribute is not None:
                setattr(sub, attribute, value)
            elif name == "overflow":
                sub.overflow = DROP_HEAD if value == DROP_HEAD else REJECT
            sub.pump()

    # -- publishing ----------------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        failure = self.injected_failure() if self.fault_error_rate else None
        if failure is not None:
            call.reply(failure)
            return
        self.published += 1
        refused = 0
        for sub in self.subscriptions.values():
            if sub.attached and not sub.offer(call.req):
                refused += 1
        if refused:
            # Like a RabbitMQ publisher confirm nack: the others did store it.
            self.rejected += 1
            call.reply(m.QUEUE_FULL)
        else:
            call.reply(m.OK)
        for sub in self.subscriptions.values():
            sub.pump()

    # -- life ----------------------------------------------------------------------------------
    def on_crash(self) -> None:
        for sub in self.subscriptions.values():
            sub.crash()

    def on_recover(self) -> None:
        for sub in self.subscriptions.values():
            sub.pump()

    # -- reporting -----------------------------------------------------------------------------
    def sample(self, window_ms: float) -> dict[str, Any]:
        published, delivered = self._last
        now_delivered = sum(s.delivered for s in self.subscriptions.values())
        self._last = (self.published, now_delivered)
        return {"q": sum(s.unacked for s in self.subscriptions.values()),
                "inflight": sum(s.in_flight for s in self.subscriptions.values()),
                "arr": self.published - published, "done": now_delivered - delivered,
                "backlog": {name: s.unacked for name, s in self.subscriptions.items()}}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        subs = self.subscriptions.values()
        return {"processed": sum(s.delivered for s in subs), "utilisation": 0.0,
                "max_queue": max((s.max_unacked for s in subs), default=0),
                "published": self.published, "rejected": self.rejected,
                "subscriptions": {name: s.figures()
                                  for name, s in self.subscriptions.items()}}


def _only(edge: Edge) -> Callable[[], Edge | None]:
    """The edge picker of a subscription with one subscriber."""
    return lambda: edge
