"""An outbox relay: reads the events a service committed to its outbox table and publishes
them to a broker.

It has two outgoing edges: one to the ``sql_database`` that holds the outbox, one to the
broker (a topic or a queue). Every read is a query over the edge, so an idle poller still
costs the database ``1000 / poll_interval_ms`` queries a second.

``mode``:

- ``poll``: every ``poll_interval_ms`` it selects up to ``batch_size`` rows and publishes
  them one after the other (which keeps their order). With ``cursor`` ``unpublished`` it
  selects the rows not marked published and marks the acked ones in one transaction after
  the batch (``mark`` ``after_ack``): a crash between the acks and the mark sends the batch
  again (at most ``batch_size`` duplicates per crash). ``mark`` ``before_ack`` marks the
  batch first: a crash or a broker failure then loses the rows it had not yet published.
  With ``cursor`` ``max_id`` it keeps the highest id it published (persisted at once) and
  selects the rows above it: a row whose id was taken before and committed after a row it
  has published is never selected (lost), which happens as soon as two transactions write
  the outbox at once.
- ``log_tail``: it follows the database's commit log (CDC, as Debezium) from the log
  position after the last commit it published, in commit order. The position is kept in
  memory and persisted every ``offset_flush_ms`` (Kafka Connect's offset flush): a restart
  resumes from the last persisted position and publishes again what followed it.

A full batch means it is behind: it polls again at once. A failed publish (the broker
unreachable, no ack within ``publish_timeout_ms``) stops the batch; the relay tries again a
``poll_interval_ms`` later. States: RUNNING, DOWN while crashed, CATCHING_UP from a restart
until a read returns less than a full batch, then RUNNING again. Crash points:
``after_publish_before_mark`` (an event acked, the relay dies before recording it) and
``after_mark_before_publish``.
"""

from __future__ import annotations

from typing import Any

from patterns.components.publishing import OUTBOX, message
from patterns.components.sql_database import LOG, SELECT, LogRead, Query, SqlDatabase, TxnSpec
from patterns.engine import messages as m
from patterns.engine.localdb import Row
from patterns.engine.network import Call, Edge, Invocation
from patterns.engine.node import Node, register_kind
from patterns.params import Param

POLL, LOG_TAIL = "poll", "log_tail"
UNPUBLISHED, MAX_ID = "unpublished", "max_id"
AFTER_ACK, BEFORE_ACK = "after_ack", "before_ack"
RUNNING, DOWN, CATCHING_UP = "RUNNING", "DOWN", "CATCHING_UP"


@register_kind
class OutboxRelay(Node):
    KIND = "outbox_relay"
    LABEL = "Outbox relay"
    DESCRIPTION = ("Reads committed events from a service's outbox table (polling, or "
                   "tailing the commit log) and publishes them to a broker.")
    PARAMS = (
        Param("mode", "choice", POLL, choices=(POLL, LOG_TAIL),
              help="poll: query the outbox table; log_tail: follow the commit log (CDC)."),
        Param("poll_interval_ms", "float", 500.0, unit="ms", min=1, max=600_000,
              help="Wait between polls when caught up, and after a failed publish."),
        Param("batch_size", "int", 100, min=1, max=100_000,
              help="Rows read and published per sweep (MassTransit: 100)."),
        Param("cursor", "choice", UNPUBLISHED, choices=(UNPUBLISHED, MAX_ID),
              help="poll: select unpublished rows and mark them, or rows above the highest "
                   "id published (loses rows committed out of id order)."),
        Param("mark", "choice", AFTER_ACK, choices=(AFTER_ACK, BEFORE_ACK),
              help="poll, unpublished: mark rows published after the broker's ack (safe), "
                   "or before publishing them (a failure loses them)."),
        Param("offset_flush_ms", "float", 5000.0, unit="ms", min=1, max=3_600_000,
              help="log_tail: how often the log position is persisted (Kafka Connect: "
                   "60 s; teaching: 5 s)."),
        Param("publish_timeout_ms", "float", 1000.0, unit="ms", min=1, max=600_000,
              help="A publish not acked by then failed."),
        Param("query_timeout_ms", "float", 5000.0, unit="ms", min=1, max=600_000,
              help="A read or a mark not answered by then failed (a log read that times "
                   "out idle is simply made again)."),
        Param("table", "str", OUTBOX, help="The outbox table."),
    )
    MAX_OUT_EDGES = 2
    DURABLE = ("saved",)
    CRASH_POINTS = ("after_publish_before_mark", "after_mark_before_publish")

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        # What survives a restart: the max_id cursor and the persisted log position.
        self.saved: dict[str, int] = {"last_id": 0, "lsn": 0}
        self.db_edge: Edge | None = None
        self.broker_edge: Edge | None = None
        self.polls = 0
        self.published = 0
        self.publish_failures = 0
        self.marks = 0
        self.restarts = 0
        self.resent_after_restart = 0
        self._poll_timer = self.timer(self._read)
        self._flush_timer = self.timer(self._flush)
        self.init_state()

    def init_state(self) -> None:
        self.lsn = 0  # the log position published up to (log_tail), set on (re)start
        self.batch: list[Row] = []
        self.acked: list[Row] = []
        self.batch_lsns: list[int] = []
        self.reading = False
        self.just_restarted = False

    def start(self) -> None:
        for edge in self.out_edges:
            if isinstance(edge.dst, SqlDatabase):
                self.db_edge = edge
            else:
                self.broker_edge = edge
        self.sim.ledger.holder(self.id, self.pending)
        self.set_state(RUNNING, "started")
        self._read()
        if self.p["mode"] == LOG_TAIL:
            self._flush_timer.start(self.p["offset_flush_ms"])

    # -- reading -------------------------------------------------------------------------------
    def _read(self) -> None:
        if self.down or self.reading or self.db_edge is None or self.broker_edge is None:
            return
        self.reading = True
        self.polls += 1
        p = self.p
        if p["mode"] == LOG_TAIL:
            req = self._request(LOG, read=LogRead(p["table"], self.lsn, p["batch_size"]))
        elif p["cursor"] == MAX_ID:
            req = self._request(SELECT, query=Query(p["table"], after_id=self.saved["last_id"],
                                                    limit=p["batch_size"]))
        else:
            req = self._request(SELECT, query=Query(p["table"], unpublished=True,
                                                    limit=p["batch_size"]))
        self.net.call(self.db_edge, req, self._on_read, self.incarnation,
                      timeout_ms=p["query_timeout_ms"])

    def _request(self, op: str, **headers: Any) -> m.Request:
        return m.Request(self.sim.ledger.next_request_id(), self.kernel.now, op=op,
                         client=self.id, size=256, headers=headers)

    def _on_read(self, handle: Call | Invocation, reply: m.Reply) -> None:
        if handle.ctx != self.incarnation or self.down:
            return
        self.reading = False
        if not reply.ok:
            # An idle log read that timed out is made again at once; a failure waits.
            idle = self.p["mode"] == LOG_TAIL and reply.outcome == m.TIMED_OUT
            self._next(idle)
            return
        rows: list[Row]
        if self.p["mode"] == LOG_TAIL:
            self.batch_lsns = []
            rows = []
            for lsn, _, written in reply.value:
                for row in written:
                    rows.append(row)
                    self.batch_lsns.append(lsn)
        else:
            rows = reply.value
        full = len(rows) >= self.p["batch_size"]
        if self.state == CATCHING_UP and not full:
            self.set_state(RUNNING, "caught up: the outbox holds less than a batch")
        if self.just_restarted:
            self.just_restarted = False
            again = sum(1 for row in rows
                        if self.sim.ledger.messages.get(row["msg_id"]) is not None
                        and self.sim.ledger.messages[row["msg_id"]].publishes)
            self.resent_after_restart += again
            if self.p["mode"] == LOG_TAIL:
                self.note(f"relay restarted from log position {self.lsn}: {again} events "
                          "of its first read will be sent again")
            else:
                self.note(f"relay restarted: {again} unmarked rows will be sent again")
        if not rows:
            self._poll_timer.start(self.p["poll_interval_ms"])
            return
        self.batch = rows
        self.acked = []
        if self.p["mode"] == POLL and self.p["cursor"] == UNPUBLISHED \
                and self.p["mark"] == BEFORE_ACK:
            self._mark(rows, then_publish=True)
            return
        self._publish_next()

    # -- publishing ----------------------------------------------------------------------------
    def _publish_next(self) -> None:
        index = len(self.acked)
        if index >= len(self.batch):
            self._batch_done(failed=False)
            return
        row = self.batch[index]
        assert self.broker_edge is not None
        self.sim.ledger.sent(row["msg_id"])
        self.net.call(self.broker_edge, message(self, row["msg_id"], row["aggregate"]),
                      self._on_publish, self.incarnation,
                      timeout_ms=self.p["publish_timeout_ms"])

    def _on_publish(self, handle: Call | Invocation, reply: m.Reply) -> None:
        if handle.ctx != self.incarnation or self.down:
            return
        if not reply.ok:
            self.publish_failures += 1
            self._batch_done(failed=True)
            return
        row = self.batch[len(self.acked)]
        self.acked.append(row)
        self.published += 1
        self.sim.ledger.published(row["msg_id"])
        if self.crash_point("after_publish_before_mark"):
            return
        if self.p["mode"] == LOG_TAIL:
            # Everything of a commit published: the in-memory position moves past it.
            i = len(self.acked) - 1
            lsns = self.batch_lsns
            if i + 1 == len(lsns) or lsns[i + 1] != lsns[i]:
                self.lsn = lsns[i]
        self._publish_next()

    def _batch_done(self, failed: bool) -> None:
        p = self.p
        acked, full = self.acked, len(self.batch) >= p["batch_size"]
        self.batch, self.acked = [], []
        if p["mode"] == POLL and p["cursor"] == MAX_ID and acked:
            self.saved["last_id"] = max(self.saved["last_id"], max(r["id"] for r in acked))
        elif p["mode"] == POLL and p["mark"] == AFTER_ACK and acked:
            self._mark(acked, then_publish=False, again=full and not failed)
            return
        # The log is read with a long poll: a tailing relay asks again at once.
        self._next(not failed and (full or p["mode"] == LOG_TAIL))

    def _next(self, at_once: bool) -> None:
        if at_once:
            self._read()
        else:
            self._poll_timer.start(self.p["poll_interval_ms"])

    def _mark(self, rows: list[Row], then_publish: bool, again: bool = False) -> None:
        assert self.db_edge is not None
        spec = TxnSpec(marks=len(rows))
        now = self.kernel.now
        for row in rows:
            spec.put(self.p["table"], row["id"], {**row, "published": True,
                                                  "published_t": now})
        req = self._request("txn", txn=spec)
        self.net.call(self.db_edge, req, self._on_mark, (self.incarnation, then_publish,
                                                         again, rows),
                      timeout_ms=self.p["query_timeout_ms"])

    def _on_mark(self, handle: Call | Invocation, reply: m.Reply) -> None:
        incarnation, then_publish, again, rows = handle.ctx
        if incarnation != self.incarnation or self.down:
            return
        if not reply.ok:
            if then_publish:
                self.batch = []
            self._next(False)
            return
        self.marks += 1
        self.emit({"k": "outbox.mark", "node": self.id, "rows": len(rows),
                   "first": rows[0]["id"], "last": rows[-1]["id"]})
        if then_publish:
            if self.crash_point("after_mark_before_publish"):
                return
            self._publish_next()
        else:
            self._next(again)

    def _flush(self) -> None:
        if self.down:
            return
        self.saved["lsn"] = self.lsn
        self._flush_timer.start(self.p["offset_flush_ms"])

    # -- life ----------------------------------------------------------------------------------
    def on_crash(self) -> None:
        self.set_state(DOWN, "crashed")

    def on_recover(self) -> None:
        self.restarts += 1
        self.just_restarted = True
        self.lsn = self.saved["lsn"]
        self.set_state(CATCHING_UP, "restarted: reading the outbox from its saved position")
        self._read()
        if self.p["mode"] == LOG_TAIL:
            self._flush_timer.start(self.p["offset_flush_ms"])

    def pending(self) -> list[str]:
        """The events this relay will still publish, as its cursor stands (what the ledger
        counts in flight rather than lost at the end of a run)."""
        if self.db_edge is None:
            return []
        assert isinstance(self.db_edge.dst, SqlDatabase)
        rows = self.db_edge.dst.table(self.p["table"])
        if self.p["mode"] == LOG_TAIL:
            db = self.db_edge.dst.db
            return [row["msg_id"] for commit in db.since(self.lsn)
                    for table, _, row in commit.writes
                    if table == self.p["table"] and row is not None]
        if self.p["cursor"] == MAX_ID:
            return [row["msg_id"] for key, row in rows.items() if key > self.saved["last_id"]]
        return [row["msg_id"] for row in rows.values() if not row.get("published")]

    def sample(self, window_ms: float) -> dict[str, Any]:
        # The outbox backlog (committed events this relay has still to publish) and the
        # relay's lag: how long the oldest of them has waited since its commit.
        pending = self.pending()
        messages = self.sim.ledger.messages
        committed = [t for t in (messages[i].committed_t for i in pending if i in messages)
                     if t is not None]
        lag = self.kernel.now - min(committed) if committed else 0.0
        return {"backlog": len(pending), "lag_ms": round(lag, 1),
                "published": self.published}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.published, "utilisation": 0.0, "max_queue": 0,
                "polls": self.polls, "published": self.published,
                "publish_failures": self.publish_failures, "marks": self.marks,
                "restarts": self.restarts, "resent_after_restart": self.resent_after_restart}
