"""The message ledger: every message a producer hands to the system, and its one fate.

A producer names each message with a stable id of its own (``msg_id``: an order's event id,
a payment's id), kept across re-sends, redeliveries and relay replays; the broker's ids
(a new one per copy, as SQS gives a re-sent message a new MessageId) are not the message's
identity. Components tell the ledger what happened, each at the moment it happens:

- :meth:`produce`: the producer hands the message over; ``committed`` says whether the
  business fact it reports is committed at the source (an order row and its outbox row in
  one transaction), :meth:`commit` when that comes later and :meth:`roll_back` when it never
  will (a publish-first dual write whose database transaction failed);
- :meth:`sent` and :meth:`published`: a copy sent to a broker, and stored by it (acked);
- :meth:`delivered`: a consumer processed a copy (the second and later are duplicates);
- :meth:`settle`: a copy ended otherwise (``rejected``, ``dropped``, ``dead_lettered``).

Holders (:meth:`holder`) say, when asked, which messages they still hold (an outbox's
unpublished rows, a producer buffer, a broker's stored messages, a consumer's work in
progress). So at the end of the
drain every message has exactly one fate (:meth:`fate`), taken from the truth rather than
from what any component believes: ``delivered``; else ``dead_lettered``, ``rejected`` or
``dropped`` when a copy ended so; else ``in_flight`` while a holder still has it; else
``lost`` (the silent loss: committed at the source, held by nobody, never delivered). A
message published or delivered whose fact was never committed is a ``phantom``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patterns.engine.simulation import Simulation

DELIVERED = "delivered"
REJECTED = "rejected"
DROPPED = "dropped"
DEAD_LETTERED = "dead_lettered"
LOST = "lost"
IN_FLIGHT = "in_flight"
FATES = (DELIVERED, REJECTED, DROPPED, DEAD_LETTERED, LOST, IN_FLIGHT)
# Which explicit ending wins when no copy was delivered (the most final first).
_ENDINGS = (DEAD_LETTERED, REJECTED, DROPPED)


class Message:
    """What the ledger knows about one message (all its copies)."""

    __slots__ = ("committed", "committed_t", "deliveries", "endings", "first_delivered",
                 "first_published", "msg_id", "produced", "producer", "publishes", "sends")

    def __init__(self, msg_id: str, producer: str, t: float) -> None:
        self.msg_id = msg_id
        self.producer = producer
        self.produced = t
        # True: the fact is committed at the source; False: rolled back; None: not yet.
        self.committed: bool | None = None
        self.committed_t: float | None = None
        self.sends = 0
        self.publishes = 0
        self.deliveries = 0
        self.first_published: float | None = None
        self.first_delivered: float | None = None
        self.endings: dict[str, int] = {}


class MessageLedger:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.messages: dict[str, Message] = {}
        self._holders: dict[str, Callable[[], Iterable[str]]] = {}
        # Every copy a broker acked, in the order the acks were heard (msg_ids).
        self.publish_order: list[str] = []
        self._next_id = 0

    def next_request_id(self) -> int:
        """An id for a message's request that no client request has (negative)."""
        self._next_id -= 1
        return self._next_id

    def _get(self, msg_id: str, producer: str = "") -> Message:
        msg = self.messages.get(msg_id)
        if msg is None:
            msg = self.messages[msg_id] = Message(msg_id, producer, self.sim.kernel.now)
        return msg

    # -- what happens ------------------------------------------------------------------------
    def produce(self, msg_id: str, producer: str, committed: bool | None = True) -> Message:
        """The producer hands the message over (once; a re-send of it is not a new one)."""
        msg = self._get(msg_id, producer)
        if committed:
            self.commit(msg_id)
        elif committed is False:
            self.roll_back(msg_id)
        return msg

    def commit(self, msg_id: str) -> None:
        msg = self._get(msg_id)
        if msg.committed is not True:
            msg.committed = True
            msg.committed_t = self.sim.kernel.now

    def roll_back(self, msg_id: str) -> None:
        msg = self._get(msg_id)
        if msg.committed is None:
            msg.committed = False

    def sent(self, msg_id: str) -> None:
        self._get(msg_id).sends += 1

    def published(self, msg_id: str) -> None:
        msg = self._get(msg_id)
        msg.publishes += 1
        self.publish_order.append(msg_id)
        if msg.first_published is None:
            msg.first_published = self.sim.kernel.now

    def delivered(self, msg_id: str) -> None:
        msg = self._get(msg_id)
        msg.deliveries += 1
        if msg.first_delivered is None:
            msg.first_delivered = self.sim.kernel.now

    def settle(self, msg_id: str, fate: str) -> None:
        """A copy ended otherwise than delivered: ``rejected``, ``dropped``, ``dead_lettered``."""
        if fate not in _ENDINGS:
            raise ValueError(f"not an ending: {fate}")
        endings = self._get(msg_id).endings
        endings[fate] = endings.get(fate, 0) + 1

    def holder(self, name: str, held: Callable[[], Iterable[str]]) -> None:
        """Register where messages may wait (asked only when fates are computed)."""
        self._holders[name] = held

    # -- the truth -----------------------------------------------------------------------------
    def held(self) -> dict[str, None]:
        out: dict[str, None] = {}
        for held in self._holders.values():
            out.update(dict.fromkeys(held()))
        return out

    def fate(self, msg: Message, held: dict[str, None] | None = None) -> str:
        if msg.deliveries:
            return DELIVERED
        for ending in _ENDINGS:
            if msg.endings.get(ending):
                return ending
        if msg.committed is False and not msg.publishes:
            return REJECTED  # taken back before any copy left: the producer said no
        if held is None:
            held = self.held()
        if msg.msg_id in held:
            return IN_FLIGHT
        return LOST

    def fates(self) -> dict[str, str]:
        """Each message's one fate, by msg_id, in the order they were produced."""
        held = self.held()
        return {msg_id: self.fate(msg, held) for msg_id, msg in self.messages.items()}

    def lost(self) -> list[Message]:
        """Committed at the source, never delivered, held by nobody: silently lost."""
        held = self.held()
        return [msg for msg in self.messages.values()
                if msg.committed and self.fate(msg, held) == LOST]

    def phantoms(self) -> list[Message]:
        """Published or delivered while the fact they report was never committed."""
        return [msg for msg in self.messages.values()
                if not msg.committed and (msg.publishes or msg.deliveries)]

    def counts(self) -> dict[str, int]:
        """Figures for a summary: messages by fate, copies, duplicates, phantoms."""
        fates = self.fates()
        by_fate = dict.fromkeys(FATES, 0)
        for fate in fates.values():
            by_fate[fate] += 1
        msgs = self.messages.values()
        return {
            "messages": len(self.messages),
            "committed": sum(1 for msg in msgs if msg.committed),
            **by_fate,
            "phantom": len(self.phantoms()),
            "sends": sum(msg.sends for msg in msgs),
            "publishes": sum(msg.publishes for msg in msgs),
            "duplicates_published": sum(max(0, msg.publishes - 1) for msg in msgs),
            "deliveries": sum(msg.deliveries for msg in msgs),
            "duplicates_delivered": sum(max(0, msg.deliveries - 1) for msg in msgs),
        }

    def summary_fields(self) -> dict[str, Any]:
        return self.counts() if self.messages else {}
