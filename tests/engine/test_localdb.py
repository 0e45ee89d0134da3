"""The transactional local database: atomic commits, unique keys, the commit log."""

from __future__ import annotations

import copy

import pytest

from patterns.engine.localdb import LocalDatabase, UniqueViolation


def test_a_commit_applies_every_write_at_once_and_logs_it():
    db = LocalDatabase("orders", "outbox")
    txn = db.begin()
    txn.put("orders", 1, {"state": "PENDING"})
    txn.insert("outbox", 1, {"event": "OrderPlaced"})
    assert db.get("orders", 1) is None, "nothing is visible before the commit"
    assert txn.get("orders", 1) == {"state": "PENDING"}, "a transaction reads its own writes"
    seen = []
    commit = txn.commit(5.0, tags={"order": 1}, on_commit=seen.append)
    assert db.get("orders", 1) == {"state": "PENDING"} and db.get("outbox", 1)
    assert commit.lsn == 1 and commit.t == 5.0 and seen == [commit]
    assert [(t, k) for t, k, _ in commit.writes] == [("orders", 1), ("outbox", 1)]


def test_a_duplicate_key_aborts_the_whole_transaction():
    db = LocalDatabase("inbox", "balances")
    first = db.begin()
    first.insert("inbox", "m-1", {"at": 1})
    first.put("balances", "acct", {"amount": 1})
    first.commit(1.0)
    again = db.begin()
    again.put("balances", "acct", {"amount": 2})
    again.insert("inbox", "m-1", {"at": 2})
    with pytest.raises(UniqueViolation) as info:
        again.commit(2.0)
    assert info.value.key == "m-1"
    assert db.get("balances", "acct") == {"amount": 1}, "the other write did not happen"
    assert db.last_lsn == 1 and db.aborts == 1
    with pytest.raises(RuntimeError):
        again.commit(3.0)


def test_a_reader_follows_the_log_in_commit_order():
    db = LocalDatabase("t")
    for i in range(5):
        txn = db.begin()
        txn.put("t", i, {"i": i})
        txn.commit(float(i))
    assert [c.lsn for c in db.since(0)] == [1, 2, 3, 4, 5]
    assert [c.lsn for c in db.since(3)] == [4, 5]
    assert list(db.since(5)) == []


def test_the_database_is_the_disk_a_crash_snapshot_keeps_it_as_it_is():
    db = LocalDatabase("t")
    assert copy.deepcopy(db) is db
