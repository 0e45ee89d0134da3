"""The message ledger (one fate per message, from the truth) and the SQL database kind it
learns commits from (auto-increment ids out of commit order, unique keys, the log tail)."""

from __future__ import annotations

from patterns.components.sql_database import LOG, TXN, LogRead, TxnSpec
from patterns.engine import messages as m
from patterns.engine.ledger import MessageLedger
from patterns.engine.simulation import Simulation
from patterns.topology import validate
from tests.helpers import document


def _sim() -> Simulation:
    doc = validate(document([{"id": "db", "kind": "sql_database", "params": {}},
                             {"id": "svc", "kind": "service", "params": {}}],
                            [{"id": "e", "from": "svc", "to": "db", "params": {}}],
                            duration_s=1))
    return Simulation(doc, trace="off")


def test_every_message_has_one_fate_taken_from_the_truth():
    sim = _sim()
    ledger: MessageLedger = sim.ledger
    held = ["m-held"]
    ledger.holder("outbox", lambda: held)
    for msg_id in ("m-ok", "m-lost", "m-held", "m-dead", "m-phantom", "m-refused"):
        # Publish first: the fact is not committed yet when the message is handed over.
        first = msg_id in ("m-phantom", "m-refused")
        ledger.produce(msg_id, "svc", committed=None if first else True)
    ledger.roll_back("m-phantom")
    ledger.roll_back("m-refused")
    for msg_id in ("m-ok", "m-phantom", "m-dead"):
        ledger.published(msg_id)
    ledger.delivered("m-ok")
    ledger.delivered("m-ok")
    ledger.delivered("m-phantom")
    ledger.settle("m-dead", "dead_lettered")
    assert ledger.fates() == {"m-ok": "delivered", "m-lost": "lost", "m-held": "in_flight",
                              "m-dead": "dead_lettered", "m-phantom": "delivered",
                              "m-refused": "rejected"}
    assert [msg.msg_id for msg in ledger.lost()] == ["m-lost"]
    assert [msg.msg_id for msg in ledger.phantoms()] == ["m-phantom"]
    counts = ledger.counts()
    assert counts["duplicates_delivered"] == 1 and counts["committed"] == 4
    # Once the holder lets go without a delivery, the message is lost.
    held.clear()
    assert ledger.fates()["m-held"] == "lost"


def _txn(sim: Simulation, spec: TxnSpec, replies: list[m.Reply]) -> None:
    edge = sim.network.edges["e"]
    req = m.Request(sim.ledger.next_request_id(), sim.now, op=TXN, headers={"txn": spec})
    sim.network.call(edge, req, lambda _, reply: replies.append(reply))


def test_ids_are_taken_at_the_insert_and_commits_follow_their_own_order():
    sim = _sim()
    replies: list[m.Reply] = []
    for i in range(20):
        _txn(sim, TxnSpec(events=[f"e-{i}"]).insert_seq("outbox", {"msg_id": f"e-{i}"}),
             replies)
    sim.run()
    assert all(r.ok for r in replies) and len(replies) == 20
    db = sim.nodes["db"]
    committed_ids = [key for c in db.db.log for table, key, _ in c.writes]
    assert sorted(committed_ids) == list(range(1, 21))
    assert committed_ids != sorted(committed_ids), "overlapping transactions commit out of id order"
    # The database told the ledger each event's fact committed, at its commit.
    assert all(msg.committed for msg in sim.ledger.messages.values())


def test_a_unique_key_fails_the_whole_transaction_and_the_log_tail_waits():
    sim = _sim()
    replies: list[m.Reply] = []
    tail: list[m.Reply] = []
    edge = sim.network.edges["e"]
    read = m.Request(-1, 0.0, op=LOG, headers={"read": LogRead("inbox", 0, 10)})
    sim.network.call(edge, read, lambda _, reply: tail.append(reply))
    _txn(sim, TxnSpec().insert("inbox", "m-1", {"t": 0}).add("balances", "a", "b", 1),
         replies)
    sim.advance(100)
    _txn(sim, TxnSpec().insert("inbox", "m-1", {"t": 0}).add("balances", "a", "b", 1),
         replies)
    sim.run()
    assert [r.ok for r in replies] == [True, False] and replies[1].status == 409
    assert sim.nodes["db"].table("balances")["a"] == {"b": 1}
    # The tail was held until the first commit, then answered with it alone.
    assert len(tail) == 1 and [lsn for lsn, _, _ in tail[0].value] == [1]
