"""A node's own transactional database: tables, unique keys, atomic commits, a commit log.

A component that keeps business rows (a participant's orders, an outbox, an inbox, a saga log)
holds one :class:`LocalDatabase` and names it in its ``DURABLE`` attributes, so the rows
survive a crash and whatever was not committed does not.

A :class:`Txn` stages writes and reads its own writes; :meth:`Txn.commit` applies all of them
at one instant or none of them: a row inserted under a key that exists already (a unique
constraint, such as an inbox's ``(consumer, msg_id)``) aborts the whole transaction with
:class:`UniqueViolation`, and nothing is written. Every commit appends one entry to the
commit log with a log sequence number, the order a CDC reader (a relay tailing the log)
follows; ``on_commit`` lets the owner turn each commit into an event (``tx.commit``) the
run's checks read.

The simulation is single-threaded and a commit happens at one instant, so transactions
are serializable as long as a component reads and commits in the same callback. A
component that reads in one step and writes in a later one (``check_then_act``) gets what a
real database gives under read committed: its read may be stale by the time it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Row = dict[str, Any]
Key = Any


class UniqueViolation(Exception):
    """A row was inserted under a key its table holds already; the transaction aborted."""

    def __init__(self, table: str, key: Key) -> None:
        super().__init__(f"duplicate key {key!r} in {table}")
        self.table = table
        self.key = key


class Commit:
    """One committed transaction as the commit log keeps it."""

    __slots__ = ("lsn", "t", "tags", "writes")

    def __init__(self, lsn: int, t: float, writes: list[tuple[str, Key, Row | None]],
                 tags: dict[str, Any]) -> None:
        self.lsn = lsn
        self.t = t
        # (table, key, row); row None = deleted.
        self.writes = writes
        self.tags = tags


class LocalDatabase:
    """Tables of rows by primary key, and the log of every commit in commit order."""

    def __init__(self, *tables: str) -> None:
        self.tables: dict[str, dict[Key, Row]] = {name: {} for name in tables}
        self.log: list[Commit] = []
        self.commits = 0
        self.aborts = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> LocalDatabase:
        # The database is the disk: a crash keeps it as it is (only committed transactions
        # ever reach it, and a down node commits nothing), so the node model's snapshot of
        # durable state need not copy every row and the whole log at each crash.
        return self

    def table(self, name: str) -> dict[Key, Row]:
        """The committed rows of a table (read-only by convention: write through a Txn)."""
        return self.tables[name]

    def get(self, table: str, key: Key) -> Row | None:
        return self.tables[table].get(key)

    def begin(self) -> Txn:
        return Txn(self)

    def since(self, lsn: int) -> Iterator[Commit]:
        """Commits after log sequence number ``lsn``, in commit order (a CDC reader's view)."""
        # LSNs are 1-based and dense, so the commit after ``lsn`` sits at index ``lsn``.
        for i in range(max(0, lsn), len(self.log)):
            yield self.log[i]

    @property
    def last_lsn(self) -> int:
        return len(self.log)


class Txn:
    """Staged writes, applied together by :meth:`commit` or dropped by :meth:`abort`."""

    __slots__ = ("db", "done", "inserts", "writes")

    def __init__(self, db: LocalDatabase) -> None:
        self.db = db
        self.writes: dict[tuple[str, Key], Row | None] = {}
        self.inserts: dict[tuple[str, Key], None] = {}
        self.done = False

    def get(self, table: str, key: Key) -> Row | None:
        """Read a row, seeing this transaction's own writes."""
        if (table, key) in self.writes:
            return self.writes[(table, key)]
        return self.db.tables[table].get(key)

    def put(self, table: str, key: Key, row: Row) -> None:
        """Insert or overwrite a row."""
        self.writes[(table, key)] = row

    def insert(self, table: str, key: Key, row: Row) -> None:
        """Insert a row; the commit fails if the key exists (a unique constraint)."""
        self.writes[(table, key)] = row
        self.inserts[(table, key)] = None

    def delete(self, table: str, key: Key) -> None:
        self.writes[(table, key)] = None

    def abort(self) -> None:
        self.done = True
        self.db.aborts += 1

    def commit(self, now: float, tags: dict[str, Any] | None = None,
               on_commit: Callable[[Commit], None] | None = None) -> Commit:
        """Apply every write at once and log them; raise UniqueViolation (nothing written)
        when an inserted key exists already."""
        if self.done:
            raise RuntimeError("transaction already ended")
        db = self.db
        for table, key in self.inserts:
            if key in db.tables[table]:
                self.abort()
                raise UniqueViolation(table, key)
        self.done = True
        writes = []
        for (table, key), row in self.writes.items():
            rows = db.tables[table]
            if row is None:
                rows.pop(key, None)
            else:
                rows[key] = row
            writes.append((table, key, row))
        db.commits += 1
        entry = Commit(len(db.log) + 1, now, writes, tags or {})
        db.log.append(entry)
        if on_commit is not None:
            on_commit(entry)
        return entry
