"""Pushing stored messages to consumers: acks, ack deadlines, redelivery and a delivery limit.

What a broker does between storing a message and forgetting it is the same whether one
queue feeds competing consumers or a topic keeps one queue per subscriber, so both kinds
build on :class:`Subscription`:

- a FIFO of :class:`Delivery` records with a ``capacity`` of waiting messages and an
  overflow policy (``reject`` the new message, or ``drop_head``: drop the oldest waiting
  one, as RabbitMQ does);
- at most ``max_in_flight`` pushes outstanding (prefetch); each push is a synchronous call
  to the consumer, whose reply is the ack;
- an ack deadline (``ack_timeout_ms``, the push's call timeout) per push: past it the push
  counts as failed, but a late reply is still heard (``Call.on_late_reply``): a late ack is
  the tell-tale of a message processed twice;
- ``at_most_once``: a message is pushed once; a failed, refused or unanswered push loses it.
  ``at_least_once``: a failed push is redelivered after a backoff (``backoff_ms`` doubling
  per receive up to ``backoff_max_ms``; 0 = at once), keeping the message, until
  ``max_deliveries`` receives, after which it is dead-lettered.

Every stored message ends in one fate: delivered, lost, dead-lettered, overflowed,
discarded (its subscription was removed), lost in a crash of the broker, or still stored.
A message keeps its request (and so its id) across redeliveries; ``duplicates`` counts every
successful reply beyond a message's first, i.e. the times a consumer processed it again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from patterns.engine import messages as m
from patterns.engine.kernel import Entry, Kernel
from patterns.engine.metrics import LatencyRecorder

if TYPE_CHECKING:
    from patterns.engine.network import Call, Edge, Invocation
    from patterns.engine.node import Node

AT_MOST_ONCE = "at_most_once"
AT_LEAST_ONCE = "at_least_once"
DELIVERY_MODES = (AT_MOST_ONCE, AT_LEAST_ONCE)
REJECT = "reject"
DROP_HEAD = "drop_head"

# Fates of a stored message (None while it is still stored).
DELIVERED = "delivered"
LOST = "lost"
DEAD_LETTERED = "dead_lettered"
OVERFLOWED = "overflowed"
DISCARDED = "discarded"
CRASHED = "lost_in_crash"


class Delivery:
    """A stored message in one subscription: the publisher's request and its receives."""

    __slots__ = ("acks", "enqueued", "epoch", "fate", "pushed", "receives", "req", "timer")

    def __init__(self, req: m.Request, enqueued: float, epoch: int = 0) -> None:
        self.req = req
        self.enqueued = enqueued
        self.receives = 0
        # Successful replies heard, on time or late; more than one means a duplicate.
        self.acks = 0
        self.fate: str | None = None
        # Whether a push of it is in flight; the wait before its redelivery while held back.
        self.pushed = False
        self.timer: Entry | None = None
        self.epoch = epoch


class Subscription:
    """One queue of messages pushed to consumers; see the module docstring for the rules.

    ``pick_edge()`` names the edge of the next push (None: nobody to push to). The owner
    calls :meth:`offer` when a message arrives, :meth:`pump` when pushing may resume, and
    :meth:`crash` when it loses its memory. Settings are plain attributes the owner may
    change mid-run.
    """

    def __init__(self, owner: Node, pick_edge: Callable[[], Edge | None], *,
                 name: str | None = None, capacity: int, max_in_flight: int,
                 ack_timeout_ms: float, delivery: str = AT_LEAST_ONCE,
                 max_deliveries: int | None = None, backoff_ms: float = 0.0,
                 backoff_max_ms: float = 0.0, requeue_front: bool = False,
                 overflow: str = REJECT, late_ack_settles: bool = False) -> None:
        self.owner = owner
        self.kernel = owner.kernel
        self.pick_edge = pick_edge
        self.name = name
        self.capacity = capacity
        self.max_in_flight = max_in_flight
        self.ack_timeout_ms = ack_timeout_ms
        self.delivery = delivery
        self.max_deliveries = max_deliveries
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        # Pub/Sub-like brokers retry a failed message first; SQS-like queues make it
        # visible again behind the others.
        self.requeue_front = requeue_front
        self.overflow = overflow
        # Whether a late ack still removes a message not yet acked (otherwise it is only
        # counted, and the message is received again).
        self.late_ack_settles = late_ack_settles
        # False while the subscription does not exist (not yet subscribed, or removed).
        self.attached = True
        # Whether the last push failed: a change either way is told (for named ones).
        self.failing = False

        self.queue: deque[Delivery] = deque()
        self.in_flight = 0
        # Failed messages waiting out their redelivery backoff (a dict keeps them in order).
        self.holding: dict[Delivery, None] = {}
        # Bumped by a crash: replies to pushes made before it go nowhere.
        self.epoch = 0
        self.stored = 0
        self.overflowed = 0  # turned away for want of room: dropped, or refused
        self.refused = 0  # of which never stored
        self.delivered = 0
        self.duplicates = 0
        self.redelivered = 0
        self.lost = 0
        self.dead_lettered = 0
        self.discarded = 0
        self.lost_in_crash = 0
        self.late_replies = 0
        self.max_queued = 0
        self.max_unacked = 0
        # Publish → ack, for messages delivered.
        self.latency = LatencyRecorder()
        owner.sim.ledger.holder(f"{owner.id}/{name or 'messages'}", self._held)

    # -- state ---------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Messages stored and not being pushed: queued, or held back before a redelivery."""
        return len(self.queue) + len(self.holding)

    @property
    def unacked(self) -> int:
        """Messages stored and not yet delivered (the backlog a broker reports)."""
        return len(self.queue) + len(self.holding) + self.in_flight

    def accounted(self) -> int:
        """Stored messages by fate (delivered, lost, ... or still stored): ``stored`` if
        every message has exactly one."""
        return (self.delivered + self.lost + self.dead_lettered
                + self.overflowed - self.refused + self.discarded + self.lost_in_crash
                + self.unacked)

    # -- storing -------------------------------------------------------------------------------
    def offer(self, req: m.Request) -> bool:
        """Store a message; False when it does not fit (overflow ``reject``)."""
        if self.waiting >= self.capacity:
            if self.overflow != DROP_HEAD:
                self.overflowed += 1
                self.refused += 1
                return False
            # The oldest queued message goes; when every waiting one is held back for a
            # redelivery, the one held longest.
            oldest = self.queue[0] if self.queue else next(iter(self.holding))
            self._withdraw(oldest)
            oldest.fate = OVERFLOWED
            self._settle_ledger(oldest, "dropped")
            self.overflowed += 1
        self.stored += 1
        self.queue.append(Delivery(req, self.kernel.now, self.epoch))
        if len(self.queue) > self.max_queued:
            self.max_queued = len(self.queue)
        if self.unacked > self.max_unacked:
            self.max_unacked = self.unacked
        return True

    # -- pushing -------------------------------------------------------------------------------
    def pump(self) -> None:
        """Push queued messages while the prefetch window has room."""
        if self.owner.down or not self.attached:
            return
        queue = self.queue
        while queue and self.in_flight < self.max_in_flight:
            edge = self.pick_edge()
            if edge is None:
                return
            delivery = queue.popleft()
            delivery.receives += 1
            delivery.pushed = True
            self.in_flight += 1
            # The ack deadline is the call's timeout; a reply after it is still heard.
            call = self.owner.net.call(edge, delivery.req, self._on_reply, delivery,
                                       timeout_ms=self.ack_timeout_ms)
            call.on_late_reply = self._on_late_reply

    def _on_reply(self, handle: Call | Invocation, reply: m.Reply) -> None:
        """The push's ack, failure, or its deadline (``timed_out``)."""
        delivery: Delivery = handle.ctx
        if delivery.epoch != self.epoch:
            return  # pushed before the broker crashed: the connection is gone
        delivery.pushed = False
        self.in_flight -= 1
        if reply.ok:
            self._acked(delivery)
        elif delivery.fate is None:
            self._failed(delivery, reply)
        self.pump()

    def _on_late_reply(self, handle: Call | Invocation, reply: m.Reply) -> None:
        delivery: Delivery = handle.ctx
        if delivery.epoch == self.epoch:
            self._late_reply(delivery, reply)

    def _acked(self, delivery: Delivery) -> None:
        if self.failing:
            self.failing = False
            self._note(f"{self.name} acks again; {self.unacked} messages to catch up on")
        delivery.acks += 1
        if delivery.acks > 1:
            self.duplicates += 1
        if delivery.fate is None or delivery.fate == LOST:
            self._settle_delivered(delivery)

    def _settle_delivered(self, delivery: Delivery) -> None:
        if delivery.fate == LOST:
            self.lost -= 1  # an at-most-once push past its deadline was processed after all
        delivery.fate = DELIVERED
        self.delivered += 1
        self.latency.record(self.kernel.now - delivery.req.created)

    def _late_reply(self, delivery: Delivery, reply: m.Reply) -> None:
        """A reply after the push's deadline: the consumer did the work anyway."""
        self.late_replies += 1
        if not reply.ok:
            return
        delivery.acks += 1
        if delivery.acks > 1:
            self.duplicates += 1
        if delivery.fate == LOST or (delivery.fate is None and self.late_ack_settles):
            if delivery.fate is None and not delivery.pushed:
                self._withdraw(delivery)
            self._settle_delivered(delivery)

    def _withdraw(self, delivery: Delivery) -> None:
        """Take a message that is waiting (queued or held back) out of the subscription."""
        if delivery in self.holding:
            del self.holding[delivery]
            Kernel.cancel(delivery.timer)
            delivery.timer = None
        else:
            self.queue.remove(delivery)

    def _failed(self, delivery: Delivery, reply: m.Reply) -> None:
        if not self.failing:
            self.failing = True
            then = "messages are lost" if self.delivery == AT_MOST_ONCE \
                else "its messages are kept for redelivery"
            self._note(f"pushes to {self.name} fail ({reply.reason or reply.outcome}): {then}")
        if self.delivery == AT_MOST_ONCE:
            delivery.fate = LOST
            self.lost += 1
            self._emit("msg.lost", delivery, reason=reply.reason or reply.outcome)
            return
        if not self.attached:
            delivery.fate = DISCARDED
            self.discarded += 1
            return
        if self.max_deliveries is not None and delivery.receives >= self.max_deliveries:
            delivery.fate = DEAD_LETTERED
            self.dead_lettered += 1
            self._emit("msg.dead", delivery)
            self._settle_ledger(delivery, DEAD_LETTERED)
            return
        self.redelivered += 1
        wait = self.backoff(delivery.receives)
        if wait <= 0.0:
            self._requeue(delivery)
        else:
            self.holding[delivery] = None
            delivery.timer = self.kernel.schedule(wait, self._release, delivery)

    def backoff(self, receives: int) -> float:
        """Wait before the next receive of a message received ``receives`` times."""
        if self.backoff_ms <= 0.0:
            return 0.0
        return float(min(self.backoff_max_ms,
                         self.backoff_ms * 2.0 ** min(receives - 1, 60)))

    def _release(self, delivery: Delivery) -> None:
        if delivery not in self.holding:
            return
        del self.holding[delivery]
        delivery.timer = None
        self._requeue(delivery)
        self.pump()

    def _requeue(self, delivery: Delivery) -> None:
        if self.requeue_front:
            self.queue.appendleft(delivery)
        else:
            self.queue.append(delivery)

    def _settle_ledger(self, delivery: Delivery, fate: str) -> None:
        """Tell the run's message ledger how a producer's message (one with a ``msg_id``)
        ended here, when not delivered."""
        headers = delivery.req.headers
        if headers and "msg_id" in headers:
            self.owner.sim.ledger.settle(headers["msg_id"], fate)

    def _held(self) -> list[str]:
        """The producers' ids of the messages stored here and waiting (for the ledger)."""
        return [d.req.headers["msg_id"] for d in (*self.queue, *self.holding)
                if d.req.headers and "msg_id" in d.req.headers]

    def _note(self, text: str) -> None:
        # Only a named subscription (a topic's) narrates; a queue's stream stays as it was.
        if self.name is not None:
            self.owner.note(text)

    def _emit(self, kind: str, delivery: Delivery, **fields: Any) -> None:
        event: dict[str, Any] = {"k": kind, "node": self.owner.id, "req": delivery.req.id,
                                 "receives": delivery.receives}
        if self.name is not None:
            event["sub"] = self.name
        event.update(fields)
        self.owner.emit(event)

    # -- life ----------------------------------------------------------------------------------
    def crash(self) -> None:
        """The broker lost its memory: everything stored is gone, acks in flight go nowhere."""
        for delivery in self.queue:
            delivery.fate = CRASHED
        self.lost_in_crash += self.unacked
        self.epoch += 1
        self.queue.clear()
        self._clear_holding(CRASHED)
        self.in_flight = 0

    def detach(self) -> None:
        """Remove the subscription: what it holds is discarded, new messages pass it by."""
        self.attached = False
        for delivery in self.queue:
            delivery.fate = DISCARDED
        self.discarded += self.waiting
        self.queue.clear()
        self._clear_holding(DISCARDED)

    def _clear_holding(self, fate: str) -> None:
        for delivery in self.holding:
            delivery.fate = fate
            Kernel.cancel(delivery.timer)
            delivery.timer = None
        self.holding.clear()

    def attach(self) -> None:
        """(Re)create the subscription: it receives messages published from now on."""
        self.attached = True
        self.pump()

    # -- reporting -----------------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        latency = self.latency.summary()
        return {
            "stored": self.stored, "delivered": self.delivered,
            "duplicates": self.duplicates, "redeliveries": self.redelivered,
            "lost": self.lost, "dead_lettered": self.dead_lettered,
            "overflowed": self.overflowed, "discarded": self.discarded,
            "lost_in_crash": self.lost_in_crash, "backlog": self.unacked,
            "backlog_max": self.max_unacked,
            "delivery_p50_ms": latency["p50"], "delivery_p99_ms": latency["p99"],
        }
