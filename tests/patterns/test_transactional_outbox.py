"""Transactional outbox: the entry's invariants read from the message ledger and the
database, the teaching fault against the dual-write baselines, and each invariant broken on
purpose (mark before the ack, a max-id cursor with several writers, publish first)."""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

import pytest

from patterns import catalog
from patterns.catalog.messaging import truth
from patterns.components.sql_database import SqlDatabase
from tests.helpers import failed, failing_seeds, run

SLUG = "transactional-outbox"
LOST = "no committed event lost"
PHANTOM = "no phantom event"


def canonical(relay: dict[str, Any] | None = None, orders: dict[str, Any] | None = None,
              db: dict[str, Any] | None = None, faults: list[dict[str, Any]] | None = None,
              baseline: str | None = None, **scenario: Any) -> dict[str, Any]:
    pattern = catalog.get(SLUG)
    doc = pattern.canonical()
    if baseline is not None:
        doc = pattern.baseline(doc)
    for item in doc["nodes"]:
        item["params"].update({"relay": relay, "orders": orders, "orders_db": db}
                              .get(item["id"]) or {})
        if baseline is not None and item["id"] == "orders":
            item["params"]["publish"] = baseline
    if faults is not None:
        doc["scenario"]["faults"] = faults
    doc["scenario"].update(scenario)
    return doc


def partition(start: float = 10, end: float = 30) -> dict[str, Any]:
    return {"at_s": start, "until_s": end, "target": "order_events", "action": "partition"}


def relay_crash(at_s: float, point: str | None = None) -> dict[str, Any]:
    if point is None:
        return {"at_s": at_s, "until_s": at_s + 1, "target": "relay", "action": "crash"}
    return {"at_s": at_s, "target": "relay", "action": "crash", "point": point, "down_s": 1}


# -- the teaching fault ----------------------------------------------------------------------
def test_canonical_run_loses_nothing_while_the_backlog_absorbs_the_partition():
    summary, sim = run(SLUG)
    fig = summary["pattern"]
    assert summary["checks"] and not failed(summary)
    assert fig["events_lost"] == 0 and fig["events_phantom"] == 0
    # Committed ids == distinct published ids == delivered ids after the drain.
    assert fig["events_committed"] == fig["events_published"] == fig["events_delivered"]
    assert fig["events_in_flight"] == 0
    # ≈ 100/s for the 20 s partition pile up in the outbox (the entry: ≈ 2,000).
    assert 1700 <= fig["outbox_backlog_max"] <= 2100
    # Orders go on during the partition: the request path never calls the broker.
    during = sim.outcomes_between(11_000, 24_000)["succeeded"]
    assert during >= 1050  # 13 s × 100, less the second orders is down at 15 s
    # Every order row has its outbox row, every outbox row has been marked.
    db = sim.nodes["orders_db"]
    assert set(db.table("orders")) == {r["aggregate"] for r in db.table("outbox").values()}
    assert all(r.get("published") for r in db.table("outbox").values())


def test_baseline_loses_the_buffered_events_and_one_per_crash_after_commit():
    summary, sim = run(SLUG, baseline=True)
    fig = summary["pattern"]
    # The buffer held the partition's events when orders crashed at 25 s (≈ 15 s × 100),
    # plus one per crash right after a commit (5).
    assert 1300 <= fig["events_lost"] <= 2000
    assert fig["events_phantom"] == 0
    assert sim.nodes["orders"].lost_in_crash >= 1300
    pattern_fig = run(SLUG)[0]["pattern"]
    # The same orders commit in both runs: the database is not the problem.
    assert abs(fig["events_committed"] - pattern_fig["events_committed"]) <= 20
    check = failed(summary)[LOST]
    assert "event lost" in check["counterexample"]["what"]
    assert check["counterexample"]["nodes"] == ["orders"]


def test_publish_first_with_a_failing_database_publishes_phantom_events():
    doc = canonical(db={"error_rate": 0.05}, faults=[], baseline="dual_write_broker_first")
    summary, _ = run(doc)
    fig = summary["pattern"]
    # ≈ 5% of the published events report orders whose commit failed.
    assert 0.03 * fig["events_published"] <= fig["events_phantom"] \
        <= 0.07 * fig["events_published"]
    assert fig["events_lost"] == 0
    counterexample = failed(summary)[PHANTOM]["counterexample"]
    assert "phantom" in counterexample["what"]


def test_publish_first_crashing_after_the_publish_leaves_a_phantom():
    doc = canonical(faults=[{"at_s": 5, "target": "orders", "action": "crash",
                             "point": "after_publish", "down_s": 1}],
                    baseline="dual_write_broker_first")
    summary, _ = run(doc)
    # The one whose worker crashed, and any publish acked while the process was dying.
    assert summary["pattern"]["events_phantom"] >= 1
    assert PHANTOM in failed(summary)


# -- (1) no loss, no phantom, whatever crashes -------------------------------------------------
def test_an_aborted_transaction_leaves_neither_row():
    summary, sim = run(canonical(db={"error_rate": 0.1}))
    db: SqlDatabase = sim.nodes["orders_db"]
    assert db.errors > 300
    orders = set(db.table("orders"))
    assert orders == {r["aggregate"] for r in db.table("outbox").values()}
    assert summary["pattern"]["events_committed"] == len(orders)
    assert not failed(summary)


@pytest.mark.parametrize("mode", ["poll", "log_tail"])
def test_no_crash_point_of_orders_or_the_relay_loses_an_event(mode):
    faults = [partition(10, 20)]
    faults += [{"at_s": at, "target": "orders", "action": "crash", "point": "after_commit",
                "down_s": 1} for at in (5, 25, 40)]
    faults += [relay_crash(at, "after_publish_before_mark") for at in (15, 33)]
    faults += [relay_crash(45), {"at_s": 50, "until_s": 51, "target": "orders_db",
                                 "action": "crash"}]
    summary, sim = run(canonical(relay={"mode": mode}, faults=faults))
    assert not failed(summary), failed(summary)
    assert summary["pattern"]["relay_restarts"] == 3
    states = [s["to"] for s in sim.nodes["relay"].states]
    assert states[:4] == ["RUNNING", "DOWN", "CATCHING_UP", "RUNNING"]


# -- (2) duplicates come only from relay restarts, bounded -----------------------------------
def test_a_relay_killed_mid_batch_sends_at_most_a_batch_again():
    # The relay catches up on the partition's backlog in full batches; it dies mid-batch.
    summary, sim = run(canonical(faults=[partition(10, 20), relay_crash(22)]))
    fig = summary["pattern"]
    assert fig["events_lost"] == 0 and fig["relay_restarts"] == 1
    assert 0 < fig["duplicates_published"] <= 100
    assert fig["duplicates_delivered"] >= fig["duplicates_published"]
    assert sim.nodes["relay"].resent_after_restart == fig["duplicates_published"]


def test_no_relay_restart_no_duplicate_published():
    summary, _ = run(canonical(faults=[partition(10, 20)]))
    assert summary["pattern"]["duplicates_published"] == 0


def test_a_log_tailing_relay_replays_at_most_one_offset_flush_interval():
    summary, _ = run(canonical(relay={"mode": "log_tail", "offset_flush_ms": 5000},
                               faults=[relay_crash(24)]))
    fig = summary["pattern"]
    assert fig["events_lost"] == 0
    # rate × offset_flush_ms = 100 × 5 s.
    assert 50 < fig["duplicates_published"] <= 600


def test_marking_before_the_ack_turns_duplicates_into_losses():
    summary, _ = run(canonical(relay={"mark": "before_ack"},
                               faults=[partition(10, 20), relay_crash(20.3)]))
    fig = summary["pattern"]
    assert fig["events_lost"] > 0 and fig["duplicates_published"] == 0
    assert "event lost" in failed(summary)[LOST]["counterexample"]["what"]


# -- (3) a max-id cursor loses rows committed out of id order --------------------------------
SLOW_COMMITS = {"write_time_ms": {"dist": "lognormal", "median": 5.0, "p99": 60.0}}


def test_a_max_id_cursor_with_several_writers_loses_rows():
    summary, _ = run(canonical(relay={"cursor": "max_id"}, db=SLOW_COMMITS, faults=[]))
    assert summary["pattern"]["events_lost"] > 0
    assert LOST in failed(summary)


@pytest.mark.parametrize("relay,orders", [
    ({"cursor": "max_id"}, {"workers": 1}),
    ({"cursor": "unpublished"}, {}),
    ({"mode": "log_tail"}, {}),
])
def test_one_writer_or_an_unpublished_cursor_or_the_log_loses_none(relay, orders):
    summary, _ = run(canonical(relay=relay, orders=orders, db=SLOW_COMMITS, faults=[]))
    assert summary["pattern"]["events_lost"] == 0
    assert not failed(summary)


# -- (4) order -------------------------------------------------------------------------------
def _first_publish_order(sim: Any) -> list[Any]:
    msgs = [m for m in sim.ledger.messages.values() if m.first_published is not None]
    return sorted(msgs, key=lambda m: m.first_published)


def test_the_log_tail_publishes_in_commit_order_a_poller_in_id_order():
    _, sim = run(canonical(relay={"mode": "log_tail"}, db=SLOW_COMMITS, faults=[]))
    committed = [m.committed_t for m in _first_publish_order(sim)]
    assert committed == sorted(committed)
    _, sim = run(canonical(db=SLOW_COMMITS, faults=[]))
    outbox = sim.nodes["orders_db"].table("outbox")
    row_id = {row["msg_id"]: key for key, row in outbox.items()}
    published = _first_publish_order(sim)
    # Within a poll the relay publishes by id; commit order differs whenever commits overlap.
    committed = [m.committed_t for m in published]
    assert committed != sorted(committed)
    ids = [row_id[m.msg_id] for m in published]
    assert sum(a > b for a, b in pairwise(ids)) < len(ids) // 20


# -- (5) lag ---------------------------------------------------------------------------------
def test_publish_lag_poll_about_half_an_interval_log_tail_a_few_ms():
    poll = run(canonical(faults=[]))[0]["pattern"]
    # The relay waits an interval after each sweep: ≈ (interval + sweep) / 2 + publish.
    assert 250 <= poll["publish_lag_ms_mean"] <= 500
    assert poll["publish_lag_ms_p99"] <= 500 + 400
    tail = run(canonical(relay={"mode": "log_tail"}, faults=[]))[0]["pattern"]
    assert tail["publish_lag_ms_p99"] <= 30


def test_an_idle_poller_still_queries_the_database():
    doc = canonical(faults=[], duration_s=30, drain_s=0)
    next(n for n in doc["nodes"] if n["id"] == "shoppers")["params"]["rate_rps"] = 0
    summary, _ = run(doc)
    assert summary["pattern"]["events_committed"] == 0
    assert 1.9 <= summary["pattern"]["relay_queries_per_s"] <= 2.0  # 1000 / 500 ms


# -- (6) the topic gone D seconds ------------------------------------------------------------
def test_topic_gone_orders_unchanged_backlog_rate_times_d_then_drains():
    summary, _ = run(canonical(faults=[partition(10, 25)]))
    fig = summary["pattern"]
    assert summary["requests"]["failed"] == 0
    assert 1350 <= fig["outbox_backlog_max"] <= 1650  # 100/s × 15 s
    assert fig["events_in_flight"] == 0 and fig["events_lost"] == 0


def with_second_relay(doc: dict[str, Any]) -> dict[str, Any]:
    relay = next(n for n in doc["nodes"] if n["id"] == "relay")
    doc["nodes"].append({**relay, "id": "relay2", "params": {**relay["params"],
                                                              "poll_interval_ms": 450.0}})
    doc["edges"] += [{"id": "relay2-db", "from": "relay2", "to": "orders_db", "params": {}},
                     {"id": "relay2-topic", "from": "relay2", "to": "order_events",
                      "params": {}}]
    return doc


def test_competing_pollers_publish_the_same_rows_twice_but_lose_none():
    summary, _ = run(with_second_relay(canonical(faults=[])))
    fig = summary["pattern"]
    assert fig["events_lost"] == 0
    # Both select the same unpublished rows (no claim, no SKIP LOCKED): each publishes them.
    assert fig["duplicates_published"] > 100


def customers(relay: dict[str, Any] | None = None, db: dict[str, Any] | None = None,
              pollers: int = 1) -> tuple[int, dict[str, Any]]:
    """Orders change 20 customers (many events per aggregate): order breaks, summary."""
    doc = canonical(relay=relay, db=db, orders={"aggregate": "key"}, faults=[])
    next(n for n in doc["nodes"] if n["id"] == "shoppers")["params"]["keys"] = 20
    summary, sim = run(with_second_relay(doc) if pollers == 2 else doc)
    outbox = sim.nodes["orders_db"].table("outbox").values()
    return truth.order_breaks(sim, {r["msg_id"]: r["aggregate"] for r in outbox}), summary


def test_a_single_poller_keeps_each_aggregates_order_competing_pollers_do_not():
    breaks, summary = customers()
    assert breaks == 0 and summary["nodes"]["orders_db"]["lock_waits"] > 0
    assert customers(relay={"mode": "log_tail"})[0] == 0
    breaks, summary = customers(pollers=2)
    assert breaks > 0 and summary["pattern"]["events_lost"] == 0


def test_the_pollers_order_rests_on_the_row_lock():
    # Without it two changes of one customer overlap and commit out of id order.
    breaks, summary = customers(db={"row_locks": False, **SLOW_COMMITS})
    assert breaks > 0 and not failed(summary)


# -- (1) under random faults ---------------------------------------------------------------
def random_outbox_faults(seed: int, duration_s: float) -> list[dict[str, Any]]:
    """Crashes of orders, the relay and the database (at named points or for a while),
    partitions of the topic and of the database's links, slow spells; never a crash of the
    in-memory topic, which loses what it stores whatever the producer does."""
    rng = random.Random(seed)
    faults: list[dict[str, Any]] = []
    for _ in range(rng.randint(2, 6)):
        at = round(rng.uniform(0.5, duration_s - 0.5), 3)
        target = rng.choice(["orders", "relay", "relay", "orders_db", "order_events",
                             "billing", "relay-orders_db", "orders-orders_db"])
        points = {"orders": "after_commit",
                  "relay": rng.choice(["after_publish_before_mark",
                                       "after_mark_before_publish"])}
        if target in points and rng.random() < 0.5:
            faults.append({"at_s": at, "target": target, "action": "crash",
                           "point": points[target], "down_s": round(rng.uniform(0.1, 2), 3)})
            continue
        until = round(at + rng.uniform(0.1, 4.0), 3)
        partitioned = target == "order_events" or "-" in target
        action = "partition" if partitioned else rng.choice(["crash", "slow"])
        fault = {"at_s": at, "until_s": until, "target": target, "action": action}
        if action == "slow":
            fault["value"] = round(rng.uniform(5.0, 50.0), 1)
        faults.append(fault)
    return sorted(faults, key=lambda f: f["at_s"])


@pytest.mark.parametrize("mode", ["poll", "log_tail"])
def test_no_event_lost_or_phantom_under_random_faults(mode):
    def short() -> dict[str, Any]:
        return canonical(relay={"mode": mode}, drain_s=40)
    assert failing_seeds(short, random_outbox_faults, range(1, 41), duration_s=10) == []


def test_random_faults_do_find_the_loss_of_marking_before_the_ack():
    def short() -> dict[str, Any]:
        return canonical(relay={"mark": "before_ack"}, drain_s=40)
    assert failing_seeds(short, random_outbox_faults, range(1, 13), duration_s=10) != []
