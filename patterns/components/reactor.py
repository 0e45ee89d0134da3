"""Event reactors: services that react to each other's events on a log, with no one in
charge of the flow (choreography), and the passive monitor that watches the flows.

A ``reactor`` is a member of its own consumer group on the ``event_log`` its edge leads to
(the log consumer's loop: partitions, offsets, commits, rebalances; see
:mod:`patterns.components.log_consumer`). Its ``rules`` say what it does: ``Event>Next``
(on Event, a local transaction, then emit Next), ``Event>`` (on Event, only the local
transaction), ``Event>Next!`` (and the flow is complete), ``start>Next`` (a client's call
starts a flow: a new order). Events of other types are read and passed over.

For each event it reacts to it works ``service_time_ms``, then commits in its own
:class:`~patterns.engine.localdb.LocalDatabase`, in one transaction, the flow's row, the
event's id in its ``inbox`` (``idempotent``: a redelivered event is then recognised and
skipped) and, with ``publish`` ``outbox``, the next event in its ``outbox`` table. An
outbox relay in the same process publishes the outbox rows in order every
``poll_interval_ms`` and marks each once the log acked it. With ``publish`` ``direct`` the
next event is handed to an in-memory producer buffer after the commit: a crash between
the two (``after_commit_before_publish``) or before the buffer drained loses it. A failed
event (an injected error) is delivered again, up to ``max_deliveries`` times (Spring Kafka:
10), then skipped: its flow stops there, with every error counter at 0.

The ``flow_monitor`` reads the log as a group of its own and sends nothing: it flags a flow
that has not completed and has been silent for ``stall_timeout_s``.

Every event carries its flow (the order) and a stable id: the id of the event it answers
plus its own type, the same on every redelivery, so the message ledger sees duplicates
as such and a consumer's inbox can discard them.
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

from patterns.components.log_consumer import LogConsumer
from patterns.components.publishing import ProducerBuffer
from patterns.engine import messages as m
from patterns.engine.clock import LocalTimer
from patterns.engine.localdb import LocalDatabase
from patterns.engine.network import Call
from patterns.engine.node import register_kind
from patterns.params import Param, ParamError

PUBLISH_MODES = ("outbox", "direct")
START = "start"


class Rule:
    """``On>Emit|Refused!Outcome``: on event On, a local transaction, then Emit; when the
    business refuses (a business error, no stock), the refusal is committed and Refused is
    emitted instead; ``!`` ends the flow (``!`` alone: COMPLETED; ``!COMPENSATED``…)."""

    __slots__ = ("emit", "on", "outcome", "refused")

    def __init__(self, on: str, emit: str | None, refused: str | None,
                 outcome: str | None) -> None:
        self.on = on
        self.emit = emit
        self.refused = refused
        self.outcome = outcome

    @property
    def carries_flow(self) -> bool:
        return bool(self.emit or self.refused or self.outcome)


def parse_rules(specs: list[str]) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for i, spec in enumerate(specs):
        on, sep, rest = spec.partition(">")
        rest, bang, outcome = rest.partition("!")
        emit, _, refused = rest.partition("|")
        for part in (on, emit, refused, outcome):
            if part and not part.replace("_", "").isalnum():
                raise ParamError(f"rules[{i}]", f"{part!r} is not an event name")
        if not sep or not on:
            raise ParamError(f"rules[{i}]", f"{spec!r} is not Event>Next (or Event>)")
        if on in rules:
            raise ParamError(f"rules[{i}]", f"a second rule for {on!r}")
        rules[on] = Rule(on, emit or None, refused or None,
                         (outcome.upper() or "COMPLETED") if bang else None)
    return rules


class _Slot:
    """One worker: the record it works on, and its timer."""

    __slots__ = ("record", "timer")

    def __init__(self) -> None:
        self.record: tuple[Any, ...] | None = None
        self.timer: LocalTimer


@register_kind
class Reactor(LogConsumer):
    KIND = "reactor"
    LABEL = "Event reactor"
    DESCRIPTION = ("A service that reacts to events on a log: a local transaction, then the "
                   "next event; no one holds the flow.")
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("rules", "list", ["OrderPlaced>PaymentTaken"],
              help="Event>Next per event it reacts to (Event>: no event after; Next!: the "
                   "flow completes, Next!COMPENSATED: it ends so; Event>Next|Refused: emit "
                   "Refused when the business refuses; start>Next: a client's call starts "
                   "a flow)."),
        *(p for p in LogConsumer.PARAMS if p.name != "group"),
        Param("publish", "choice", "outbox", choices=PUBLISH_MODES,
              help="outbox: the next event is committed with the row and relayed; direct: "
                   "sent after the commit (a crash between the two loses it)."),
        Param("idempotent", "bool", True,
              help="Record each event's id with its effect and skip a redelivered one."),
        Param("max_deliveries", "int", 10, min=1, max=1000,
              help="Tries of a failing event before it is skipped (Spring Kafka: 10)."),
        Param("redelivery_backoff_ms", "float", 0.0, unit="ms", min=0, max=600_000,
              help="Wait before trying a failed event again (Spring Kafka: 0)."),
        Param("workers", "int", 4, min=1, max=1000,
              help="Events worked on at once, at most one per partition (keys stay in "
                   "order)."),
        Param("poll_interval_ms", "float", 100.0, unit="ms", min=1, max=600_000,
              help="How often the outbox relay looks for events to publish."),
        Param("error_rate", "float", 0.0, min=0, max=1,
              help="Share of events whose handling fails (transiently)."),
        Param("stock", "int", 0, min=0, max=1_000_000_000,
              help="Units kept (0 = none): the event named by takes needs one, the event "
                   "named by returns gives one back."),
        Param("takes", "str", "", help="The event whose handling takes a unit of stock."),
        Param("returns", "str", "", help="The event whose handling gives a unit back."),
    )
    CRASH_POINTS = ("after_commit_before_publish",)
    DURABLE = ("db",)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        parse_rules(params["rules"])

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        params = {**params, "group": node_id}
        super().__init__(sim, node_id, params)
        self.rules = parse_rules(params["rules"])
        self.db = LocalDatabase("rows", "inbox", "outbox", "poison", "stock")
        self.db.tables["stock"]["units"] = {"free": params["stock"]}
        self._outbox_seq = 0
        self.reacted = 0
        self.handled: dict[str, int] = {}  # events of each type handled for good (or skipped)
        self.backlog_max = 0
        self.duplicates_ignored = 0
        self.redeliveries = 0
        self.skipped = 0
        self.buffer = ProducerBuffer(self, lambda: self.edge, capacity=100_000,
                                     timeout_ms=5000.0, backoff_ms=200.0)
        self.relay = self.timer(self._relay)
        self.slots = [_Slot() for _ in range(params["workers"])]
        for slot in self.slots:
            slot.timer = self.timer(partial(self._slot_worked, slot))
        sim.ledger.holder(f"{node_id}.outbox", self._unpublished)

    def init_state(self) -> None:
        super().init_state()
        # Memory only: tries of the events in hand, outbox rows handed to the producer, and
        # the records being worked on (a slot per worker, a partition at most once).
        self.deliveries: dict[tuple[int, int], int] = {}
        self.queued: dict[int, None] = {}
        self.busy_parts: dict[int, _Slot] = {}
        for slot in getattr(self, "slots", ()):
            slot.record = None

    def start(self) -> None:
        super().start()
        self.every(1000.0, self._observe_backlog)  # the figure, whatever the trace level
        if self.p["publish"] == "outbox":
            self.relay.start(self.p["poll_interval_ms"])

    def on_crash(self) -> None:
        super().on_crash()
        self.buffer.crash()

    def on_recover(self) -> None:
        super().on_recover()
        if self.p["publish"] == "outbox":
            unpublished = len(self._unpublished())
            if unpublished:
                self.note(f"relay restarted: {unpublished} unpublished events will be sent")
            self.relay.start(0.0)

    # -- a client's call starts a flow -----------------------------------------------------------
    def receive(self, call: Call) -> None:
        rule = self.rules.get(START)
        if rule is None:
            super().receive(call)
            return
        if self.refuse_if_unavailable(call):
            return
        flow = f"{self.id}-{call.req.id}"
        self.sim.flows.start(flow, self.id)
        emit = self._transact(flow, f"{flow}:{START}", rule, None)
        call.reply(m.OK)  # 202: accepted, the flow goes on without the caller
        self._after_commit(flow, f"{flow}:{START}", emit)

    # -- events from the log ---------------------------------------------------------------------
    # Records are worked on ``workers`` at a time, at most one per partition, so each
    # partition (and so each key) is still handled in order, as a key-ordered parallel
    # consumer does; a partition's position moves on only when its record is done. Events
    # of types it does not react to are passed over at once (a filter on the type header
    # costs next to nothing).
    def _next_record(self) -> None:
        if self.down:
            return
        batch, positions, busy = self.batch, self.positions, self.busy_parts
        progressed = True
        while progressed:
            progressed = False
            for record in list(batch):
                p = record[0]
                if p in busy:
                    continue
                if positions.get(p) != record[1]:
                    if positions.get(p) is None or record[1] < positions[p]:
                        batch.remove(record)  # of a partition given up, or already passed
                        progressed = True
                    continue
                if record[5] is None or record[5][1]["event"] not in self.rules:
                    batch.remove(record)
                    self._done(record)
                    progressed = True
                    continue
                slot = next((s for s in self.slots if s.record is None), None)
                if slot is None:
                    break
                batch.remove(record)
                busy[p] = slot
                slot.record = record
                duration = self._service() * self.slow
                self.busy_ms += duration
                slot.timer.start(duration)
                progressed = True
        self.current = next((s.record for s in self.slots if s.record is not None), None)
        if self.current is None and not batch:
            self._poll()

    def _done(self, record: tuple[Any, ...]) -> None:
        self.processed += 1
        self.ledger.processed(self.group, self.id, self.gen, record)
        if record[0] in self.positions:
            self.positions[record[0]] = record[1] + 1

    def _slot_worked(self, slot: _Slot) -> None:
        record = slot.record
        if record is None:
            return
        reacted = self._react(record)
        if self.down:
            return  # crashed at its point: memory gone
        if not reacted:
            slot.timer.start(self.p["redelivery_backoff_ms"] + self._service() * self.slow)
            return
        slot.record = None
        self.busy_parts.pop(record[0], None)
        self._done(record)
        self._next_record()

    def _react(self, record: tuple[Any, ...]) -> bool:
        """Handle one event; False when it is to be tried again (or the node crashed)."""
        p, offset = record[0], record[1]
        flow, headers = record[5]
        rule = self.rules.get(headers["event"])
        if rule is None or flow is None:
            return True  # not an event this service reacts to
        msg_id = headers["msg_id"]
        if rule.carries_flow:
            # The ledger follows each message to the consumer that carries its flow on (a
            # bystander such as a notifier reads it too, without that being a duplicate).
            self.sim.ledger.delivered(msg_id)
        if self.p["idempotent"] and self.db.get("inbox", msg_id) is not None:
            self.duplicates_ignored += 1
            return True
        # A business refusal is the event's own fault (bad data): every delivery of it fails
        # the same way. A transient failure is drawn anew each time.
        failure: m.Reply | None = m.BUSINESS_ERROR if self.db.get("poison", msg_id) else None
        if failure is None and self.fault_error_rate:
            failure = self.injected_failure()
            if failure is not None and failure.error == m.BUSINESS:
                if rule.refused:
                    # A refusal the flow knows how to answer: committed and told, not retried.
                    return self._reacted(record, rule, "declined")
                txn = self.db.begin()
                txn.put("poison", msg_id, {"t": self.kernel.now})
                txn.commit(self.kernel.now)
        if failure is None and self.p["error_rate"] and self.rng.random() < self.p["error_rate"]:
            failure = m.TRANSIENT_ERROR
        if failure is not None:
            tries = self.deliveries[(p, offset)] = self.deliveries.get((p, offset), 0) + 1
            if tries < self.p["max_deliveries"]:
                self.redeliveries += 1
                return False  # worked on again after the backoff
            self.skipped += 1
            self.deliveries.pop((p, offset), None)
            self.note(f"skipped {headers['event']} of {flow} after {tries} deliveries")
            self.sim.record({"k": "event.skip", "node": self.id, "flow": flow,
                             "event": headers["event"], "msg_id": msg_id})
            self._handled(headers["event"])
            return True
        self.deliveries.pop((p, offset), None)
        return self._reacted(record, rule, None)

    def _reacted(self, record: tuple[Any, ...], rule: Rule, refused: str | None) -> bool:
        flow, headers = record[5]
        self.deliveries.pop((record[0], record[1]), None)
        event = self._transact(flow, headers["msg_id"], rule, refused)
        self._handled(headers["event"])
        return self._after_commit(flow, headers["msg_id"], event)

    def _transact(self, flow: str, msg_id: str, rule: Rule, refused: str | None) -> str | None:
        """The local transaction for one event; returns the event it emits, if any."""
        txn = self.db.begin()
        stock = txn.get("stock", "units")
        assert stock is not None
        if refused is None and self.p["stock"] and rule.on == self.p["takes"]:
            if stock["free"] <= 0:
                refused = "out of stock"
            else:
                txn.put("stock", "units", {"free": stock["free"] - 1})
        if refused is None and self.p["stock"] and rule.on == self.p["returns"]:
            txn.put("stock", "units", {"free": stock["free"] + 1})
        emit = rule.refused if refused else rule.emit
        txn.put("rows", (flow, rule.on), {"state": "refused" if refused else "done"})
        if self.p["idempotent"]:
            txn.put("inbox", msg_id, {"t": self.kernel.now})
        emitted = self._next_id(msg_id, emit)
        if emitted is not None and self.p["publish"] == "outbox":
            self._outbox_seq += 1
            txn.put("outbox", self._outbox_seq, {"msg_id": emitted, "flow": flow,
                                                 "event": emit, "published": False})
        txn.commit(self.kernel.now)
        self.reacted += 1
        if emitted is not None:
            self.sim.ledger.produce(emitted, self.id, committed=True)
        event = {"k": "tx.commit", "node": self.id, "flow": flow, "on": rule.on,
                 "emit": emit, "msg_id": emitted}
        if refused:
            event["refused"] = refused
        self.sim.record(event)
        self.sim.flows.step(flow, self.id, rule.on, "refused" if refused else "ok")
        if rule.outcome:
            self.sim.flows.end(flow, self.id, rule.outcome)
        return emit

    def _handled(self, event: str) -> None:
        self.handled[event] = self.handled.get(event, 0) + 1

    def backlog(self) -> int:
        """Events of its types on the log that it has not handled yet."""
        log = self.edge.dst if self.edge is not None else None
        appended = getattr(log, "appended_by_event", {})
        return sum(appended.get(event, 0) - self.handled.get(event, 0) for event in self.rules
                   if event != START)

    def _observe_backlog(self) -> None:
        self.backlog_max = max(self.backlog_max, self.backlog())

    def sample(self, window_ms: float) -> dict[str, Any]:
        return {**super().sample(window_ms), "backlog": self.backlog()}

    def _next_id(self, msg_id: str, emit: str | None) -> str | None:
        return f"{msg_id}>{emit}" if emit else None

    def _after_commit(self, flow: str, msg_id: str, emit: str | None) -> bool:
        """Publish directly (dual write) if that is the mode; False if the node crashed."""
        emitted = self._next_id(msg_id, emit)
        if emitted is None or self.p["publish"] != "direct":
            return True  # nothing to send, or the relay will find it in the outbox
        if self.crash_point("after_commit_before_publish"):
            return False
        self.buffer.append(emitted, flow, headers={"event": emit}, flow=flow)
        return True

    @property
    def stock_free(self) -> int:
        return int(self.db.tables["stock"]["units"]["free"])

    # -- the outbox relay ------------------------------------------------------------------------
    def _unpublished(self) -> list[str]:
        return [row["msg_id"] for row in self.db.table("outbox").values()
                if not row["published"]]

    def _relay(self) -> None:
        if self.down:
            return
        rows = [(seq, row) for seq, row in self.db.table("outbox").items()
                if not row["published"] and seq not in self.queued]
        for seq, row in rows:
            self.queued[seq] = None
            self.buffer.append(row["msg_id"], row["flow"], headers={"event": row["event"]},
                               flow=row["flow"], on_acked=partial(self._mark, seq))
        self.relay.start(self.p["poll_interval_ms"])

    def _mark(self, seq: int) -> None:
        txn = self.db.begin()
        row = txn.get("outbox", seq)
        if row is not None:
            txn.put("outbox", seq, {**row, "published": True})
            txn.commit(self.kernel.now)
        self.queued.pop(seq, None)


@register_kind
class FlowMonitor(LogConsumer):
    KIND = "flow_monitor"
    LABEL = "Flow monitor"
    DESCRIPTION = ("Reads every event of a log as a group of its own and sends nothing; "
                   "flags a flow that went silent before completing.")
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("complete_on", "list", ["ShipmentScheduled"],
              help="The events after which a flow needs nothing more."),
        Param("stall_timeout_s", "float", 10.0, unit="s", min=0.1, max=86_400,
              help="A flow silent this long before completing is flagged."),
        *(p for p in LogConsumer.PARAMS if p.name not in ("group", "service_time_ms")),
        Param("service_time_ms", "dist", {"dist": "constant", "value": 0.2}, unit="ms",
              max=60_000, help="Time to read one event."),
    )
    # What it knows of flows is in memory, rebuilt from the log after a restart.
    DURABLE = ()

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        params = {**params, "group": node_id}
        super().__init__(sim, node_id, params)
        self.flagged: dict[str, float] = {}
        self.check = self.timer(self._check)

    def init_state(self) -> None:
        super().init_state()
        self.last_seen: dict[str, float] = {}  # open flow -> when its last event was read

    def start(self) -> None:
        super().start()
        self.check.start(1000.0)

    def on_recover(self) -> None:
        super().on_recover()
        self.check.start(1000.0)

    def _worked(self) -> None:
        record = self.current
        if record is not None and self.serving is None and record[5] is not None:
            flow, headers = record[5]
            if flow is not None and flow not in self.flagged:
                if headers["event"] in self.p["complete_on"]:
                    self.last_seen.pop(flow, None)
                else:
                    self.last_seen[flow] = record[4]  # when the event was appended
        super()._worked()

    def _check(self) -> None:
        limit = self.p["stall_timeout_s"] * 1000.0
        now = self.kernel.now
        for flow, seen in list(self.last_seen.items()):
            if now - seen >= limit:
                del self.last_seen[flow]
                self.flagged[flow] = now
                self.sim.record({"k": "flow.flag", "node": self.id, "flow": flow,
                                 "silent_ms": round(now - seen, 3)})
                if len(self.flagged) <= 5 or len(self.flagged) % 50 == 0:
                    self.note(f"{flow} silent {(now - seen) / 1000:.0f} s "
                              f"({len(self.flagged)} flagged so far)")
        self.check.start(1000.0)

    def sample(self, window_ms: float) -> dict[str, Any]:
        return {**super().sample(window_ms), "open": len(self.last_seen),
                "flagged": len(self.flagged)}
