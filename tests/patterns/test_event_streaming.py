"""Event streaming: the log's partitioning, group coordination and the teaching fault in numbers.

Scenario (canonical): 300 events/s keyed by 100 accounts → orders_log (6 partitions) → group
billing (c0–c2, 5 ms) and, from 60 s, group analytics (a0, 1 ms, earliest); c2 down 30–60 s.
Each test says which broken log or consumer it would catch.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from patterns.catalog import get
from patterns.catalog.communication import event_streaming as es
from patterns.catalog.registry import find
from patterns.components import event_log
from patterns.components.event_log import murmur2, partition_for
from tests.helpers import failed, run

SLUG = "event-streaming"
LOG = "orders_log"
BILLING = ("c0", "c1", "c2")
SESSION_S, HEARTBEAT_S = 10.0, 3.0
RATE_RPS = 300


def canonical(*, faults: bool = True, duration_s: float = 120,
              **consumer_params: Any) -> dict[str, Any]:
    doc = copy.deepcopy(get(SLUG).canonical())
    doc["scenario"]["duration_s"] = duration_s
    if not faults:
        doc["scenario"]["faults"] = []
    for member in BILLING:
        find(doc, member)["params"].update(consumer_params)
    return doc


@pytest.fixture(scope="module")
def eager() -> dict[str, Any]:
    summary, _ = run(SLUG)
    return summary


@pytest.fixture(scope="module")
def cooperative() -> dict[str, Any]:
    summary, _ = run(canonical(assignor="cooperative_sticky"))
    return summary


# -- the partitioner ---------------------------------------------------------------------------

def test_murmur2_is_kafkas():
    # Kafka's own vectors (UtilsTest.testMurmur2): the same key lands in the same partition
    # as with the Java client.
    vectors = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
               "a-little-bit-longer-string": -1486304829, "abc": 479470107,
               "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    for key, expected in vectors.items():
        assert murmur2(key.encode()) == expected, key
    assert partition_for("21", 6) == (-973932308 & 0x7FFFFFFF) % 6


def test_each_account_lives_in_one_partition_and_offsets_follow_appends(eager):
    log = eager["nodes"][LOG]
    assert sum(log["end_offsets"]) == log["appended"] == eager["requests"]["sent"]
    # 100 accounts hashed over 6 partitions: all used, unevenly (murmur2 is not a balancer).
    assert min(log["end_offsets"]) > 0.05 * log["appended"]
    # Σ lag at the end = appended − committed, per group.
    for group, committed in log["committed"].items():
        assert eager["pattern"]["lag_end_total"][group] == log["appended"] - sum(committed)


# -- the teaching fault, eager (range) ---------------------------------------------------------

def test_the_crashed_members_partitions_stall_for_about_a_session(eager):
    figures = eager["pattern"]
    stalled = figures["stalled_partitions"]["billing"]
    assert sorted(stalled) == ["p4", "p5"]  # c2's, by the range assignor
    for stall in stalled.values():
        # ≥ session − heartbeat, ≤ session + heartbeat + one join/sync.
        assert SESSION_S - HEARTBEAT_S <= stall <= SESSION_S + HEARTBEAT_S + 1.0
    assert 1000 <= figures["lag_max"]["billing"] <= 1800
    assert 40 <= figures["lag_peak_s"]["billing"] <= 60
    assert 60 <= figures["lag_back_s"]["billing"] <= 72
    assert figures["lag_p99"]["billing"] < figures["lag_max"]["billing"]


def test_new_owners_restart_at_the_commit_and_reprocess_what_was_not_committed(eager):
    figures = eager["pattern"]
    # c2's uncommitted records: its two partitions' rate × up to one commit interval.
    assert 50 <= figures["duplicates"]["billing"] <= 500
    assert figures["duplicates"]["analytics"] == 0
    assert figures["order_violations"] == {"billing": 0, "analytics": 0}
    # Six partitions read by several members at once: no order across partitions.
    assert figures["cross_partition_inversions"]["billing"] > 1000
    assert not failed(eager), failed(eager)


def test_eager_rebalancing_pauses_every_partition(eager):
    figures = eager["pattern"]
    assert figures["rebalances"]["billing"] == 2  # c2 removed, c2 back
    # Removal: c0's and c1's four partitions revoked (c2's two were lost); c2's return: six.
    assert figures["partitions_paused"]["billing"] == 10
    assert 0 < figures["rebalance_pause_ms"]["billing"] <= (HEARTBEAT_S + 1.0) * 1000
    states = [s["reason"] for s in eager["nodes"][LOG]["states"] if s["to"] == "STABLE"]
    assert sum(r.startswith("eager rebalance: 6 partitions paused") for r in states) == 2


def test_cooperative_rebalancing_pauses_only_moved_partitions(eager, cooperative):
    figures = cooperative["pattern"]
    # c2's partitions go to the others without anyone revoking; when c2 is back, one of c0's
    # and one of c1's move (revoked first, handed over in a second rebalance).
    assert figures["partitions_paused"]["billing"] == 2
    assert figures["rebalances"]["billing"] > eager["pattern"]["rebalances"]["billing"]
    assert figures["stalled_partitions"]["billing"].keys() == {"p4", "p5"}
    assert figures["order_violations"]["billing"] == 0
    assert not failed(cooperative), failed(cooperative)


# -- late groups -------------------------------------------------------------------------------

def test_a_late_group_with_earliest_replays_the_log(eager):
    figures = eager["pattern"]
    before_join = RATE_RPS * 60
    assert figures["records_replayed"]["analytics"] == pytest.approx(before_join, rel=0.05)
    assert figures["processed"]["analytics"] == eager["requests"]["sent"]  # all, exactly once
    assert 80 <= figures["caught_up_s"]["analytics"] <= 95
    assert figures["lag_max"]["analytics"] == pytest.approx(before_join / 4, rel=0.3)


def test_a_late_group_with_latest_gets_no_past_records():
    doc = canonical(faults=False)
    find(doc, "a0")["params"]["auto_offset_reset"] = "latest"
    summary, _ = run(doc)
    figures = summary["pattern"]
    assert figures["records_replayed"]["analytics"] == 0
    # It starts at the end once its group formed (60 s + the 3 s initial delay).
    assert figures["processed"]["analytics"] == pytest.approx(RATE_RPS * 57, rel=0.05)


def test_a_stalled_group_slows_neither_the_producer_nor_another_group(eager):
    healthy, _ = run(canonical(faults=False))
    assert eager["latency_ms"] == healthy["latency_ms"]
    for figure in ("processed", "records_replayed", "lag_max", "caught_up_s", "duplicates"):
        assert eager["pattern"][figure]["analytics"] == healthy["pattern"][figure]["analytics"]
    assert healthy["pattern"]["duplicates"]["billing"] == 0  # no crash, no reprocessing


def test_members_beyond_the_partition_count_are_idle():
    doc = canonical(faults=False, duration_s=30)
    find(doc, LOG)["params"]["partitions"] = 2
    summary, _ = run(doc)
    assert summary["pattern"]["idle_consumers"] == 1
    assert sorted(summary["nodes"][m]["processed"] == 0 for m in BILLING) == [False, False, True]
    assert not failed(summary)


# -- zombies and fencing -----------------------------------------------------------------------

def zombie(fence: bool) -> dict[str, Any]:
    """c1 paused 20–35 s (longer than its session): removed, it wakes up as a zombie."""
    doc = canonical(faults=False, duration_s=60)
    doc["scenario"]["faults"] = [{"at_s": 20, "until_s": 35, "target": "c1",
                                  "action": "pause"}]
    find(doc, LOG)["params"]["fence_commits"] = fence
    summary, _ = run(doc)
    return summary


def test_a_zombies_commit_is_rejected():
    summary = zombie(fence=True)
    figures = summary["pattern"]
    assert figures["stale_commits_rejected"] >= 1
    assert figures["stale_commits_accepted"] == 0
    assert summary["nodes"]["c1"]["commits_rejected"] >= 1
    assert figures["duplicates"]["billing"] > 0  # it processed what it had fetched
    assert not failed(summary), failed(summary)


def test_without_fencing_the_zombies_commit_is_caught_by_the_check():
    summary = zombie(fence=False)
    assert summary["pattern"]["stale_commits_accepted"] >= 1
    bad = failed(summary)
    assert list(bad) == ["a stale-generation commit is rejected"]
    example = bad["a stale-generation commit is rejected"]["counterexample"]
    assert example["nodes"] == ["c1"] and 35_000 <= example["t"] <= 40_000


# -- the checks fail when the behaviour is removed ---------------------------------------------

def test_without_the_revoke_round_two_members_own_a_partition(monkeypatch):
    # A cooperative coordinator that hands a partition over while its owner still has it.
    monkeypatch.setattr(event_log, "withhold_owned", lambda target, owned: target)
    summary, _ = run(canonical(assignor="cooperative_sticky", duration_s=75))
    bad = failed(summary)
    assert "at most one owner per partition per group" in bad
    example = bad["at most one owner per partition per group"]["counterexample"]
    assert example["t"] > 60_000 and "still owned it" in example["what"]


def test_a_consumer_that_forgets_committed_offsets_skips_records(monkeypatch):
    # A broker that loses committed offsets: the next owner resets to the end (latest).
    real = event_log.EventLog._sync

    def forgetful(self, call, headers):
        self.committed.clear()
        real(self, call, headers)
    monkeypatch.setattr(event_log.EventLog, "_sync", forgetful)
    summary, _ = run(canonical(duration_s=50))
    bad = failed(summary)
    assert "offsets gap-free per partition, resumed at the committed offset" in bad
    assert "never processed" in \
        bad["offsets gap-free per partition, resumed at the committed offset"][
            "counterexample"]["what"]


def test_the_queue_baseline_reorders_and_gets_no_history():
    summary, _ = run(SLUG, baseline=True)
    figures = summary["pattern"]
    # Competing consumers and c2's unacked messages returning at ≈ 60 s reorder accounts.
    assert figures["order_violations"]["billing"] > 50
    assert figures["backlog_max"]["billing-queue"] < 100  # but nothing stalls
    assert summary["nodes"]["billing-queue"]["end_to_end_ms"]["max"] >= 29_000
    # The analytics queue is created at 60 s: nothing from before reaches it.
    assert figures["records_replayed"]["analytics"] <= 5
    assert figures["never_delivered"]["analytics-queue"] == pytest.approx(RATE_RPS * 60,
                                                                          rel=0.05)
    bad = failed(summary)
    assert "billing: per-key order kept" in bad
    assert bad["billing: per-key order kept"]["counterexample"]["nodes"][0] in BILLING


def test_key_order_check_names_the_first_reordered_event():
    records = [{"k": "log.reorder", "group": "g", "member": "c0", "key": "k1", "seq": 3,
                "after": 5, "t": 12.0}]
    verdict = es.key_order_kept(records, "g")
    assert not verdict.ok
    assert verdict.counterexample == {"t": 12.0, "nodes": ["c0"],
                                      "what": "c0 processed k1 #3 after #5 (g)"}
    assert es.key_order_kept(records, "other").ok


# -- resetting a group's offsets ---------------------------------------------------------------

def reset(to: str, **extra: Any) -> dict[str, Any]:
    doc = canonical(faults=False, duration_s=70)
    doc["scenario"]["faults"] = [{"at_s": 40, "target": LOG, "action": "set",
                                  "param": "reset_offsets",
                                  "value": {"group": "billing", "to": to, **extra}}]
    summary, _ = run(doc)
    return summary


def test_resetting_a_group_to_earliest_reprocesses_the_log():
    summary = reset("earliest")
    figures = summary["pattern"]
    # Everything appended before the reset is processed again, in order, from the start.
    assert figures["duplicates"]["billing"] >= 0.9 * RATE_RPS * 37
    assert figures["order_violations"]["billing"] == 0
    assert figures["duplicates"]["analytics"] == 0  # the other group is not touched
    assert not failed(summary), failed(summary)


def test_resetting_a_group_to_a_time_rewinds_only_that_far():
    earliest = reset("earliest")["pattern"]["duplicates"]["billing"]
    summary = reset("time", time_s=20)
    duplicates = summary["pattern"]["duplicates"]["billing"]
    assert duplicates == pytest.approx(RATE_RPS * 20, rel=0.15)
    assert duplicates < earliest
    assert not failed(summary), failed(summary)
