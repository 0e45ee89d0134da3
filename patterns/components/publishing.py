"""Publishing events from a service: the pieces a writer, an outbox relay or an event reactor
share.

- :func:`message` makes the request that carries one message to a broker: the producer's
  ``msg_id`` (the message's identity in the run's ledger) and the aggregate it is about
  travel in its headers, the aggregate is its key (a topic keeps one key's order).
- :class:`OutboxWriter` adds an event to a local transaction: a row in the ``outbox``
  table, under the table's auto-increment id, committed with the business rows or not at
  all. Tagging the transaction with the event's id lets the database tell the ledger the
  moment the event is committed at the source (whoever crashes afterwards).
- :class:`ProducerBuffer` is a client library's asynchronous ``send`` (Kafka's producer):
  the event waits in memory until the broker acks it, is retried while the broker is
  unreachable, and dies with the process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from patterns.components.sql_database import TxnSpec
from patterns.engine import messages as m

if TYPE_CHECKING:
    from patterns.engine.network import Call, Edge, Invocation
    from patterns.engine.node import Node

OUTBOX = "outbox"
PUBLISH = "publish"


def message(node: Node, msg_id: str, aggregate: str, size: int = 512,
            flow: str | None = None, **headers: Any) -> m.Request:
    """The request that carries message ``msg_id`` about ``aggregate`` to a broker (with
    the business flow it belongs to, if any)."""
    return m.Request(node.sim.ledger.next_request_id(), node.kernel.now, key=aggregate,
                     op=PUBLISH, size=size, client=node.id,
                     headers={"msg_id": msg_id, "aggregate": aggregate, **headers}, flow=flow)


def msg_id_of(req: m.Request) -> str | None:
    """The producer's id of the message a request carries (None for a plain request)."""
    headers = req.headers
    return headers.get("msg_id") if headers else None


class OutboxWriter:
    """Write events into the outbox table of the transaction that records their fact."""

    def __init__(self, producer: str, table: str = OUTBOX) -> None:
        self.producer = producer
        self.table = table

    def tag(self, spec: TxnSpec, msg_id: str) -> None:
        """Say that committing ``spec`` commits the fact event ``msg_id`` reports."""
        spec.tags.setdefault("events", []).append(msg_id)
        spec.tags.setdefault("producer", self.producer)

    def add(self, spec: TxnSpec, msg_id: str, aggregate: str, event_type: str,
            now: float) -> None:
        """Insert the event's outbox row (``published`` unset) into the transaction."""
        self.tag(spec, msg_id)
        spec.insert_seq(self.table, {"msg_id": msg_id, "aggregate": aggregate,
                                     "type": event_type, "t": now})


class ProducerBuffer:
    """An in-memory send buffer: events wait here until the broker acks them.

    ``edge`` leads to the broker. One send at a time keeps the order; a send that fails or
    is not acked within ``timeout_ms`` is tried again after ``backoff_ms``. A full buffer
    refuses a new event (:meth:`append` returns False). :meth:`crash` empties it: whatever
    was in it is gone, and ``on_lost`` hears of each event. An event may carry more headers
    (its type) and its flow, and an ``on_acked`` callback (an outbox relay marks its row).
    """

    def __init__(self, owner: Node, edge: Callable[[], Edge | None], *, capacity: int,
                 timeout_ms: float, backoff_ms: float,
                 on_lost: Callable[[str, str], None] | None = None) -> None:
        self.owner = owner
        self.edge = edge
        self.capacity = capacity
        self.timeout_ms = timeout_ms
        self.backoff_ms = backoff_ms
        self.on_lost = on_lost
        # (msg_id, aggregate, extra headers, flow, on_acked)
        self.events: deque[tuple[str, str, dict[str, Any], str | None,
                                 Callable[[], None] | None]] = deque()
        self.sending = False
        self.epoch = 0
        self.acked = 0
        self.retries = 0
        self.refused = 0
        self.died = 0
        self.max_size = 0
        owner.sim.ledger.holder(f"{owner.id}.buffer", self.held)

    def held(self) -> list[str]:
        return [event[0] for event in self.events]

    def append(self, msg_id: str, aggregate: str, headers: dict[str, Any] | None = None,
               flow: str | None = None, on_acked: Callable[[], None] | None = None) -> bool:
        if len(self.events) >= self.capacity:
            self.refused += 1
            return False
        self.events.append((msg_id, aggregate, headers or {}, flow, on_acked))
        if len(self.events) > self.max_size:
            self.max_size = len(self.events)
        self._send()
        return True

    def _send(self, _: Any = None) -> None:
        if self.sending or not self.events or self.owner.down:
            return
        edge = self.edge()
        if edge is None:
            return
        msg_id, aggregate, headers, flow, _ = self.events[0]
        self.sending = True
        self.owner.sim.ledger.sent(msg_id)
        self.owner.net.call(edge, message(self.owner, msg_id, aggregate, flow=flow, **headers),
                            self._on_reply, self.epoch, timeout_ms=self.timeout_ms)

    def _on_reply(self, handle: Call | Invocation, reply: m.Reply) -> None:
        if handle.ctx != self.epoch:
            return  # sent by a process that has since died
        self.sending = False
        if reply.ok:
            msg_id, _, _, _, on_acked = self.events.popleft()
            self.acked += 1
            self.owner.sim.ledger.published(msg_id)
            if on_acked is not None:
                on_acked()
            self._send()
        else:
            self.retries += 1
            self.owner.kernel.schedule(self.backoff_ms, self._retry, self.epoch)

    def _retry(self, epoch: int) -> None:
        if epoch == self.epoch:
            self._send()

    def crash(self) -> None:
        """The process died: the buffer is gone with it."""
        self.epoch += 1
        self.sending = False
        lost, self.events = list(self.events), deque()
        self.died += len(lost)
        if self.on_lost is not None:
            for msg_id, aggregate, *_ in lost:
                self.on_lost(msg_id, aggregate)
