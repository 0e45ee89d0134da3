"""A transactional SQL database server: a connection pool in front of a :class:`LocalDatabase`.

Services that keep business rows (orders and their outbox, balances and their inbox) call
it over an edge, so its work costs connection time and a round trip, and whoever else reads
it (an outbox relay polling a table, a CDC reader tailing the commit log) does so over its
own edge, as a separate process would. A request's ``op`` says what to do:

- ``txn``: commit a :class:`TxnSpec` (headers ``txn``): inserts (a unique key: an existing
  key aborts the whole transaction, reply 409), puts, deletes, increments (``add``, read
  and written at the commit instant), purges of rows older than a time, and inserts keyed
  by the table's sequence (``insert_seq``: an auto-increment id, taken when the statement
  runs at the start of the transaction, so ids do not follow commit order when several
  transactions overlap, as in PostgreSQL). The writes apply together at the end of the
  write time, or not at all (a crash or an injected error first). The reply's value is
  ``{"lsn", "ids"}``; each commit is a ``tx.commit`` event.
- ``select``: a :class:`Query` on committed rows (a snapshot at the end of the read time).
- ``log``: the commits after a log sequence number that wrote a table (a CDC reader's
  replication stream): answered at once when there are some, otherwise held until the next
  such commit (a long poll, so a tailing reader sees a commit a round trip later).

With ``row_locks`` a transaction that updates rows in place (``put``, ``add``, ``delete``)
takes their locks when it starts, or waits, holding its connection, until the transaction
holding one of them ends; so two transactions on one row commit one after the other, and
the later one's auto-increment ids come after the earlier one's.

The rows, the commit log and the sequences are durable; a crash fails the transactions in
progress (nothing of them is written), those waiting for a lock, and the held log reads.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from patterns.components.service import Job, WorkerPool
from patterns.engine import messages as m
from patterns.engine.distributions import Sampler, parse
from patterns.engine.localdb import Commit, LocalDatabase, Row, UniqueViolation
from patterns.engine.network import Call
from patterns.engine.node import register_kind
from patterns.params import Param

TXN, SELECT, LOG = "txn", "select", "log"
# A commit's ``tx.commit`` event lists at most this many keys per table.
_KEYS_SHOWN = 20


class TxnSpec:
    """The writes one transaction asks for, in order; built by the calling service."""

    __slots__ = ("ids", "ops", "tags")

    def __init__(self, **tags: Any) -> None:
        self.ops: list[tuple[Any, ...]] = []
        self.tags = tags
        # Keys the database allocated for ``insert_seq`` rows, by table, in order.
        self.ids: dict[str, list[int]] = {}

    def insert(self, table: str, key: Any, row: Row) -> TxnSpec:
        self.ops.append(("insert", table, key, row))
        return self

    def insert_seq(self, table: str, row: Row) -> TxnSpec:
        """Insert under the table's next auto-increment id (also set as the row's ``id``)."""
        self.ops.append(("insert_seq", table, None, row))
        return self

    def put(self, table: str, key: Any, row: Row) -> TxnSpec:
        self.ops.append(("put", table, key, row))
        return self

    def delete(self, table: str, key: Any) -> TxnSpec:
        self.ops.append(("delete", table, key, None))
        return self

    def add(self, table: str, key: Any, field: str, delta: float) -> TxnSpec:
        """``UPDATE table SET field = field + delta`` (the row is created at 0)."""
        self.ops.append(("add", table, key, (field, delta)))
        return self

    def purge(self, table: str, field: str, before: float) -> TxnSpec:
        """Delete the rows whose ``field`` is below ``before`` (a retention clean-up)."""
        self.ops.append(("purge", table, None, (field, before)))
        return self


class Query:
    """``SELECT * FROM table`` with the few predicates the patterns need."""

    __slots__ = ("after_id", "key", "limit", "table", "unpublished")

    def __init__(self, table: str, *, key: Any = None, after_id: int | None = None,
                 unpublished: bool = False, limit: int | None = None) -> None:
        self.table = table
        self.key = key  # one row by primary key
        self.after_id = after_id  # rows with a larger integer key, in key order
        self.unpublished = unpublished  # rows whose ``published`` is not set
        self.limit = limit


class LogRead:
    """The commits after ``after_lsn`` that wrote ``table``, at most ``limit`` of them."""

    __slots__ = ("after_lsn", "limit", "table")

    def __init__(self, table: str, after_lsn: int, limit: int) -> None:
        self.table = table
        self.after_lsn = after_lsn
        self.limit = limit


def unique_violation(reply: m.Reply) -> bool:
    """Whether a ``txn`` failed on a unique key (nothing was written)."""
    return reply.status == 409


@register_kind
class SqlDatabase(WorkerPool):
    KIND = "sql_database"
    LABEL = "SQL database"
    DESCRIPTION = ("A transactional database: atomic multi-row commits, unique keys, "
                   "auto-increment ids, a commit log that CDC can tail.")
    PARAMS = (
        Param("pool_size", "int", 20, min=1, max=10_000, help="Connections."),
        Param("queue_capacity", "int", 1000, min=0, max=10_000_000,
              help="Statements that may wait for a connection; more are rejected (503)."),
        Param("read_time_ms", "dist", {"dist": "lognormal", "median": 1.0, "p99": 5.0},
              unit="ms", max=3_600_000, help="Time of one query."),
        Param("write_time_ms", "dist", {"dist": "lognormal", "median": 2.0, "p99": 10.0},
              unit="ms", max=3_600_000,
              help="Time of a one-statement transaction, from its start to its commit."),
        Param("statement_time_ms", "float", 1.0, unit="ms", min=0, max=60_000,
              help="What each further statement of a transaction adds (an outbox or "
                   "inbox insert; one statement per kind of write to a table)."),
        Param("error_rate", "float", 0.0, min=0, max=1,
              help="Share of statements that fail (a transaction then commits nothing)."),
        Param("row_locks", "bool", True,
              help="A transaction that updates a row another one is updating waits for "
                   "it to end, holding its connection (row locks, as SELECT … FOR UPDATE)."),
    )
    MAX_OUT_EDGES = 0
    DURABLE = ("db", "seqs")

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self._rebuild_samplers()
        self.db = LocalDatabase()
        self.seqs: dict[str, int] = {}
        self.max_rows: dict[str, int] = {}
        self.unique_violations = 0
        self.lock_waited = 0
        self.init_state()

    def init_state(self) -> None:
        self.queue.clear()
        self.jobs.clear()
        self.busy = 0
        self.tails: list[Call] = []
        # Row locks: (table, key) -> the transaction holding it, and who waits for it.
        self.row_locks: dict[tuple[str, Any], Call] = {}
        self.lock_waits: dict[tuple[str, Any], deque[Call]] = {}

    def _workers(self) -> int:
        return int(self.p["pool_size"])

    def _rebuild_samplers(self) -> None:
        self._read: Sampler = parse(self.p["read_time_ms"]).sampler(self.rng)
        self._write: Sampler = parse(self.p["write_time_ms"]).sampler(self.rng)

    def table(self, name: str) -> dict[Any, Row]:
        """The committed rows of a table (created empty on first use)."""
        return self.db.tables.setdefault(name, {})

    # -- serving -------------------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        if call.req.op == LOG and not (self.down or self.hung):
            self._tail(call)
            return
        super().receive(call)

    # -- row locks ------------------------------------------------------------------------------
    @staticmethod
    def _row_keys(call: Call) -> list[tuple[str, Any]]:
        """The rows a transaction updates in place (inserts rely on unique keys instead)."""
        spec: TxnSpec = (call.req.headers or {})["txn"]
        return list(dict.fromkeys((table, key) for op, table, key, _ in spec.ops
                                  if op in ("put", "add", "delete")))

    def _start(self, call: Call) -> None:
        if call.req.op == TXN and self.p["row_locks"] and not call.expired:
            keys = self._row_keys(call)
            for key in keys:
                holder = self.row_locks.get(key)
                if holder is not None and holder is not call:
                    # Wait for the row, holding a connection (its statements have not run).
                    self.lock_waits.setdefault(key, deque()).append(call)
                    self.lock_waited += 1
                    self._account()
                    self.busy += 1
                    return
            for key in keys:
                self.row_locks[key] = call
        super()._start(call)

    def _finish(self, job: Job, reply: m.Reply) -> None:
        waiting = self._unlock(job.call)
        super()._finish(job, reply)
        self._admit(waiting)

    def _abandoned(self, job: Job, call: Call) -> None:
        waiting = self._unlock(call)
        super()._abandoned(job, call)
        self._admit(waiting)

    def _unlock(self, call: Call) -> list[Call]:
        """Release the rows a transaction held; the first waiter of each comes next."""
        waiting: list[Call] = []
        if call.req.op != TXN or not self.row_locks:
            return waiting
        for key in self._row_keys(call):
            if self.row_locks.get(key) is call:
                del self.row_locks[key]
                queue = self.lock_waits.get(key)
                if queue:
                    waiting.append(queue.popleft())
                    if not queue:
                        del self.lock_waits[key]
        return waiting

    def _admit(self, waiting: list[Call]) -> None:
        for waiter in waiting:
            # Its connection was held while it waited: it starts on it now.
            self._account()
            self.busy -= 1
            self._start(waiter)

    def work_time(self, call: Call) -> float:
        if call.req.op != TXN:
            return self._read()
        # The statements run now: an auto-increment id is taken at the insert, whatever
        # becomes of the transaction (sequences are not transactional).
        spec: TxnSpec = (call.req.headers or {})["txn"]
        for op, table, _, _ in spec.ops:
            if op == "insert_seq":
                value = self.seqs[table] = self.seqs.get(table, 0) + 1
                spec.ids.setdefault(table, []).append(value)
        # One statement per kind of write to a table (an UPDATE of 100 rows is one).
        statements = len(dict.fromkeys((op, table) for op, table, _, _ in spec.ops))
        extra = max(0, statements - 1) * self.p["statement_time_ms"]
        return float(self._write() + extra)

    def _worked(self, job: Job) -> None:
        if job.dead:
            return
        failure = self.injected_failure() if self.fault_error_rate else None
        if failure is None and self.error_rate > 0.0 and self.rng.random() < self.error_rate:
            failure = m.TRANSIENT_ERROR
        if failure is not None:
            self._finish(job, failure)
            return
        req = job.call.req
        if req.op == TXN:
            self._finish(job, self._commit((req.headers or {})["txn"]))
        elif req.op == SELECT:
            self._finish(job, m.Reply(m.SUCCEEDED, value=self._select(
                (req.headers or {})["query"])))
        else:
            self._finish(job, m.Reply(m.FAILED, error=m.BUSINESS, status=400,
                                      reason=f"unknown op {req.op}"))

    def _commit(self, spec: TxnSpec) -> m.Reply:
        txn = self.db.begin()
        seq_ids = {table: iter(ids) for table, ids in spec.ids.items()}
        for op, table, key, arg in spec.ops:
            self.table(table)
            if op == "insert":
                txn.insert(table, key, arg)
            elif op == "insert_seq":
                key = next(seq_ids[table])
                txn.insert(table, key, {**arg, "id": key})
            elif op == "put":
                txn.put(table, key, arg)
            elif op == "delete":
                txn.delete(table, key)
            elif op == "add":
                field, delta = arg
                row = dict(txn.get(table, key) or {field: 0})
                row[field] = row.get(field, 0) + delta
                txn.put(table, key, row)
            elif op == "purge":
                field, before = arg
                for old_key, row in list(self.table(table).items()):
                    if row.get(field, before) < before:
                        txn.delete(table, old_key)
        try:
            commit = txn.commit(self.kernel.now, spec.tags, self._record)
        except UniqueViolation as err:
            self.unique_violations += 1
            return m.Reply(m.FAILED, error=m.BUSINESS, status=409,
                           reason=f"duplicate key in {err.table}", value=err.key)
        events = spec.tags.get("events")
        if events:
            # The facts these events report are committed now: the ledger's ground truth.
            producer = spec.tags.get("producer", self.id)
            for msg_id in events:
                self.sim.ledger.produce(msg_id, producer)
        for table in dict.fromkeys(table for table, _, _ in commit.writes):
            size = len(self.db.tables[table])
            if size > self.max_rows.get(table, 0):
                self.max_rows[table] = size
        if self.tails:
            self._answer_tails()
        return m.Reply(m.SUCCEEDED, value={"lsn": commit.lsn, "ids": spec.ids})

    def _record(self, commit: Commit) -> None:
        keys: dict[str, list[Any]] = {}
        for table, key, _ in commit.writes:
            shown = keys.setdefault(table, [])
            if len(shown) < _KEYS_SHOWN:
                shown.append(key)
        self.sim.record({"k": "tx.commit", "node": self.id, "lsn": commit.lsn, "ids": keys,
                         **commit.tags})

    def _select(self, query: Query) -> list[Row]:
        rows = self.table(query.table)
        if query.key is not None:
            row = rows.get(query.key)
            return [dict(row)] if row is not None else []
        found: list[Row] = []
        keys = sorted(rows) if query.after_id is not None or query.unpublished else list(rows)
        for key in keys:
            if query.after_id is not None and key <= query.after_id:
                continue
            row = rows[key]
            if query.unpublished and row.get("published"):
                continue
            found.append(dict(row))
            if query.limit is not None and len(found) >= query.limit:
                break
        return found

    # -- the commit log --------------------------------------------------------------------
    def _tail(self, call: Call) -> None:
        if not self._answer_tail(call):
            self.tails.append(call)

    def _answer_tails(self) -> None:
        self.tails = [call for call in self.tails
                      if not call.done and not self._answer_tail(call)]

    def _answer_tail(self, call: Call) -> bool:
        read: LogRead = (call.req.headers or {})["read"]
        out: list[tuple[int, float, list[Row]]] = []
        for commit in self.db.since(read.after_lsn):
            rows = [row for table, _, row in commit.writes
                    if table == read.table and row is not None]
            if rows:
                out.append((commit.lsn, commit.t, rows))
                if len(out) >= read.limit:
                    break
        if not out:
            return False
        call.reply(m.Reply(m.SUCCEEDED, value=out))
        return True

    # -- life ----------------------------------------------------------------------------------
    def on_crash(self) -> None:
        super().on_crash()
        waiting = [call for queue in self.lock_waits.values() for call in queue]
        self.row_locks.clear()
        self.lock_waits.clear()
        tails, self.tails = self.tails, []
        for call in waiting + tails:
            call.reply(m.CONNECTION_RESET)

    def stats(self, duration_ms: float) -> dict[str, Any]:
        out = super().stats(duration_ms)
        out.update({"commits": self.db.commits, "aborts": self.db.aborts,
                    "unique_violations": self.unique_violations,
                    "lock_waits": self.lock_waited,
                    "rows": {name: len(rows) for name, rows in self.db.tables.items()},
                    "max_rows": dict(self.max_rows)})
        return out
