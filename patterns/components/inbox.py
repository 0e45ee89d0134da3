"""Consuming messages, and the inbox that makes their effect happen once.

A broker delivers at least once: a producer re-sends after a lost ack, a consumer that
dies between its commit and its ack gets the message again. :class:`Inbox` is the
consumer's guard against applying such a copy twice; its ``policy``:

- ``transactional``: insert ``(consumer, key)`` into the ``inbox`` table (a unique key) in
  the same local transaction as the effect, then ack. A copy's insert fails the whole
  transaction (nothing applied twice, whatever the crash point); with ``concurrency``
  ``optimistic`` both copies may run the handler and the second commit fails
  (NServiceBus' default), with ``pessimistic`` the id is locked before the handler runs, so
  the second copy waits and is discarded without running it.
- ``check_then_act``: look the key up, apply the effect, record the key, each a step of its
  own: a crash between the effect and the record, or two copies at once, applies twice.
- ``none``: apply every delivery.

The key is the producer's ``msg_id`` (``dedup_key`` ``msg_id``), never the broker's id of a
copy (``broker_id``: a re-send gets a new one, so every re-send gets through). Inbox rows
older than ``dedup_retention_s`` are deleted every ``cleanup_interval_s``: a copy arriving
after that is applied again.

:class:`Consumer` (kind ``consumer``) is a service that handles delivered messages with an
inbox: it works on a message (the handler, ``service_time_ms``; with ``external_effect``
it also sends an e-mail, which no transaction takes back), then commits the effect (adding
the message's ``amount`` to its account's balance) in its ``sql_database``, if it has
one, and acks.
Without a database edge it only records the delivery (a plain subscriber). A crash drops
the messages it is working on without an answer: the broker sees no ack and delivers them
again after its visibility timeout. Crash points: ``after_commit_before_ack`` and
``after_effect_before_record`` (check_then_act).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patterns.components.publishing import msg_id_of
from patterns.components.service import Job, WorkerPool, pool_params
from patterns.components.sql_database import (
    SELECT,
    TXN,
    Query,
    SqlDatabase,
    TxnSpec,
    unique_violation,
)
from patterns.engine import messages as m
from patterns.engine.distributions import Sampler, parse
from patterns.engine.network import Call, Edge, Invocation
from patterns.engine.node import Node, register_kind
from patterns.params import Param

TRANSACTIONAL, CHECK_THEN_ACT, NONE = "transactional", "check_then_act", "none"
INBOX_POLICIES = (TRANSACTIONAL, CHECK_THEN_ACT, NONE)
OPTIMISTIC, PESSIMISTIC = "optimistic", "pessimistic"
MSG_ID, BROKER_ID = "msg_id", "broker_id"
INBOX_TABLE = "inbox"
BALANCES = "balances"


class Inbox:
    """A consumer's dedup records: which keys to keep, and the writes that keep them."""

    def __init__(self, owner: Node, policy: str, dedup_key: str, retention_ms: float,
                 table: str = INBOX_TABLE) -> None:
        self.owner = owner
        self.policy = policy
        self.dedup_key = dedup_key
        self.retention_ms = retention_ms
        self.table = table
        # Keys being handled now (pessimistic): the row lock, and who waits for it.
        self.locked: dict[str, list[Callable[[], None]]] = {}

    def key(self, req: m.Request) -> str:
        """The dedup key of a delivered copy: the producer's id, or the broker's."""
        if self.dedup_key == BROKER_ID:
            return f"b-{req.id}"
        return msg_id_of(req) or f"b-{req.id}"

    def row_key(self, key: str) -> tuple[str, str]:
        return (self.owner.id, key)

    def guard(self, spec: TxnSpec, key: str, now: float) -> None:
        """Add the dedup record to the effect's transaction (``transactional``)."""
        spec.insert(self.table, self.row_key(key), {"msg_id": key, "t": now})

    def record(self, key: str, now: float) -> TxnSpec:
        """The separate transaction that records a key (``check_then_act``)."""
        return TxnSpec(inbox=key).put(self.table, self.row_key(key), {"msg_id": key, "t": now})

    def lookup(self, key: str) -> Query:
        return Query(self.table, key=self.row_key(key))

    def cleanup(self, now: float) -> TxnSpec:
        """Delete the records older than the retention."""
        return TxnSpec(cleanup=self.table).purge(self.table, "t", now - self.retention_ms)

    # -- pessimistic concurrency ----------------------------------------------------------------
    def lock(self, key: str, then: Callable[[], None]) -> None:
        """Run ``then`` once the key is free (at once when nobody holds it)."""
        waiting = self.locked.get(key)
        if waiting is None:
            self.locked[key] = []
            then()
        else:
            waiting.append(then)

    def unlock(self, key: str) -> None:
        waiting = self.locked.get(key)
        if waiting is None:
            return
        if waiting:
            waiting.pop(0)()
        else:
            del self.locked[key]


class _Work:
    """One delivery being handled: the job holding a worker, and what it is about."""

    __slots__ = ("amount", "job", "key", "locked", "msg_id")

    def __init__(self, job: Job, msg_id: str, key: str, amount: float) -> None:
        self.job = job
        self.msg_id = msg_id
        self.key = key
        self.amount = amount
        self.locked = False


@register_kind
class Consumer(WorkerPool):
    KIND = "consumer"
    LABEL = "Consumer"
    DESCRIPTION = ("Handles delivered messages and applies each one's effect in its "
                   "database, guarded by an inbox.")
    PARAMS = (
        *pool_params("message", 4, 5.0, "The handler's work on one message."),
        Param("inbox", "choice", NONE, choices=INBOX_POLICIES,
              help="transactional: dedup record and effect in one transaction; "
                   "check_then_act: look up, apply, record as separate steps; none."),
        Param("dedup_key", "choice", MSG_ID, choices=(MSG_ID, BROKER_ID),
              help="Deduplicate on the producer's msg_id, or on the broker's id of a copy."),
        Param("concurrency", "choice", OPTIMISTIC, choices=(OPTIMISTIC, PESSIMISTIC),
              help="optimistic: copies may run at once, the unique key fails the second "
                   "commit; pessimistic: lock the id before running the handler."),
        Param("dedup_retention_s", "float", 600.0, unit="s", min=0.001, max=31_536_000,
              help="How long a dedup record is kept (NServiceBus: 7 days; teaching: 600 s)."),
        Param("cleanup_interval_s", "float", 60.0, unit="s", min=0.01, max=86_400,
              help="How often expired dedup records are deleted (NServiceBus: 1 min)."),
        Param("external_effect", "bool", True,
              help="The handler also calls out (an e-mail, an HTTP call), outside any "
                   "transaction."),
        Param("table", "str", BALANCES, help="The table the effect updates."),
    )
    MAX_OUT_EDGES = 1
    DURABLE = ()
    CRASH_POINTS = ("after_commit_before_ack", "after_effect_before_record")

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self._service_time: Sampler = parse(params["service_time_ms"]).sampler(self.rng)
        self.inbox = Inbox(self, params["inbox"], params["dedup_key"],
                           params["dedup_retention_s"] * 1000.0)
        self.db_edge: Edge | None = None
        self.handler_runs = 0
        self.applied = 0
        self.hits = 0
        self.conflicts = 0
        self.external_calls: dict[str, int] = {}
        # For the notes only (a narrator's memory, not the consumer's): when each key's
        # effect was applied.
        self._applied_at: dict[str, float] = {}
        self._cleanup_timer = self.timer(self._cleanup)
        self.init_state()

    def init_state(self) -> None:
        self.queue.clear()
        self.jobs.clear()
        self.busy = 0
        self.inbox.locked.clear()

    def start(self) -> None:
        for edge in self.out_edges:
            if isinstance(edge.dst, SqlDatabase):
                self.db_edge = edge
        self.sim.ledger.holder(self.id, self._holding)
        self._arm_cleanup()

    def _arm_cleanup(self) -> None:
        if self.db_edge is not None and self.p["inbox"] != NONE:
            self._cleanup_timer.start(self.p["cleanup_interval_s"] * 1000.0)

    def _holding(self) -> list[str]:
        calls = list(self.queue) + [job.call for job in self.jobs]
        return [msg for msg in (msg_id_of(call.req) for call in calls) if msg is not None]

    def _rebuild_samplers(self) -> None:
        self._service_time = parse(self.p["service_time_ms"]).sampler(self.rng)

    def work_time(self, call: Call) -> float:
        return self._service_time()

    # -- handling one delivery ---------------------------------------------------------------
    def _worked(self, job: Job) -> None:
        if job.dead:
            return
        failure = self.injected_failure() if self.fault_error_rate else None
        if failure is not None:
            self._finish(job, failure)
            return
        req = job.call.req
        msg_id = msg_id_of(req) or f"b-{req.id}"
        amount = float((req.headers or {}).get("amount", 1))
        work = _Work(job, msg_id, self.inbox.key(req), amount)
        self.sim.ledger.delivered(msg_id)
        if self.db_edge is None:
            self._handled(work)
            self._finish(job, m.OK)
            return
        policy = self.p["inbox"]
        if policy == TRANSACTIONAL and self.p["concurrency"] == PESSIMISTIC:
            # SELECT … FOR UPDATE on the id: a second copy waits here, then finds the record.
            self.inbox.lock(work.key, lambda: self._locked(work))
        elif policy == CHECK_THEN_ACT:
            self._db(SELECT, self._on_lookup, work,
                     query=self.inbox.lookup(work.key))
        else:
            self._handled(work)
            self._apply(work)

    def _locked(self, work: _Work) -> None:
        work.locked = True
        if work.job.dead:
            self.inbox.unlock(work.key)
            return
        self._db(SELECT, self._on_lookup, work, query=self.inbox.lookup(work.key))

    def _handled(self, work: _Work) -> None:
        """The handler ran: counted, and its call outside the transaction made."""
        self.handler_runs += 1
        if self.p["external_effect"]:
            self.external_calls[work.msg_id] = self.external_calls.get(work.msg_id, 0) + 1

    def _db(self, op: str, on_reply: Any, work: _Work, **headers: Any) -> None:
        assert self.db_edge is not None
        req = m.Request(self.sim.ledger.next_request_id(), self.kernel.now, key=work.key,
                        op=op, client=self.id, size=256, headers=headers)
        self.net.call(self.db_edge, req, on_reply, work)

    def effect(self, spec: TxnSpec, req: m.Request, amount: float) -> None:
        """The message's effect, as writes in the consumer's transaction: add its amount to
        its account's balance (the message's key). A kind that reacts to events overrides
        this, and may add its own outbox rows
        (:class:`~patterns.components.publishing.OutboxWriter`) to the same transaction:
        consume with an inbox and publish with an outbox, atomically."""
        spec.add(self.p["table"], req.key or "total", "balance", amount)

    def _apply(self, work: _Work) -> None:
        now = self.kernel.now
        spec = TxnSpec(effect=work.msg_id, key=work.key, amount=work.amount,
                       consumer=self.id)
        self.effect(spec, work.job.call.req, work.amount)
        if self.p["inbox"] == TRANSACTIONAL:
            self.inbox.guard(spec, work.key, now)
        self._db(TXN, self._on_effect, work, txn=spec)

    def _on_lookup(self, handle: Call | Invocation, reply: m.Reply) -> None:
        work: _Work = handle.ctx
        if work.job.dead:
            return
        if not reply.ok:
            self._done(work, _failed(reply))
        elif reply.value:
            self._hit(work)
        else:
            self._handled(work)
            self._apply(work)

    def _on_effect(self, handle: Call | Invocation, reply: m.Reply) -> None:
        work: _Work = handle.ctx
        if work.job.dead:
            return
        if not reply.ok:
            if unique_violation(reply):
                self.conflicts += 1
                self._hit(work)
            else:
                self._done(work, _failed(reply))
            return
        self._applied(work)
        if self.p["inbox"] == CHECK_THEN_ACT:
            if self.crash_point("after_effect_before_record"):
                return
            self._db(TXN, self._on_recorded, work,
                     txn=self.inbox.record(work.key, self.kernel.now))
            return
        self._committed(work)

    def _on_recorded(self, handle: Call | Invocation, reply: m.Reply) -> None:
        work: _Work = handle.ctx
        if work.job.dead:
            return
        if not reply.ok:
            self._done(work, _failed(reply))
            return
        self._committed(work)

    def _applied(self, work: _Work) -> None:
        self.applied += 1
        before = self._applied_at.get(work.key)
        if before is not None and self.p["inbox"] == TRANSACTIONAL:
            self.note(f"dedup record for {work.key} expired: late copy applied again "
                      f"(first applied at {before / 1000:.1f} s)")
        elif before is not None and self.p["inbox"] == CHECK_THEN_ACT:
            self.note(f"{work.key} applied again: its check ran before the first copy's "
                      f"record (first applied at {before / 1000:.1f} s)")
        self._applied_at.setdefault(work.key, self.kernel.now)
        self.emit({"k": "effect.apply", "node": self.id, "msg_id": work.msg_id,
                   "amount": work.amount})

    def _committed(self, work: _Work) -> None:
        if self.crash_point("after_commit_before_ack"):
            return
        self._done(work, m.OK)

    def _hit(self, work: _Work) -> None:
        self.hits += 1
        first = self._applied_at.get(work.key)
        when = f"processed at {first / 1000:.1f} s" if first is not None else "processed"
        self.emit({"k": "inbox.hit", "node": self.id, "msg_id": work.msg_id})
        if self.hits <= 3:
            self.note(f"duplicate {work.key} discarded: {when}")
        self._done(work, m.OK)

    def _done(self, work: _Work, reply: m.Reply) -> None:
        if work.locked:
            self.inbox.unlock(work.key)
        self.emit({"k": "msg.ack", "node": self.id, "msg_id": work.msg_id, "ok": reply.ok})
        self._finish(work.job, reply)

    # -- upkeep and life -----------------------------------------------------------------------
    def _cleanup(self) -> None:
        if self.down or self.db_edge is None:
            return
        req = m.Request(self.sim.ledger.next_request_id(), self.kernel.now, op=TXN,
                        client=self.id, size=128,
                        headers={"txn": self.inbox.cleanup(self.kernel.now)})
        self.net.call(self.db_edge, req, _ignore)
        self._arm_cleanup()

    def on_crash(self) -> None:
        # The messages in hand die without an answer: the broker learns nothing until
        # their ack deadline (visibility timeout) passes, then delivers them again.
        for job in self.jobs:
            job.dead = True
        self.jobs.clear()
        self.queue.clear()
        self._account()
        self.busy = 0

    def on_recover(self) -> None:
        self._arm_cleanup()

    def stats(self, duration_ms: float) -> dict[str, Any]:
        out = super().stats(duration_ms)
        out.update({"handler_runs": self.handler_runs, "applied": self.applied,
                    "inbox_hits": self.hits, "unique_conflicts": self.conflicts})
        return out


def _ignore(handle: Call | Invocation, reply: m.Reply) -> None:
    """A reply nobody needs (a clean-up's)."""


def _failed(reply: m.Reply) -> m.Reply:
    return m.Reply(m.FAILED, error=reply.error or m.TRANSIENT, status=502,
                   reason=f"dependency {reply.reason or reply.outcome}")
