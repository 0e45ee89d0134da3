"""Leader election (Raft style): the entry's invariants, its failover figure, split votes,
pre-vote, and safety under random faults."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from patterns import catalog
from patterns.engine import invariants
from patterns.run import prepare, simulate
from tests.helpers import events, failing_seeds, random_cluster_faults, run

SLUG = "leader-election"


def canonical(**params: Any) -> dict[str, Any]:
    doc = catalog.get(SLUG).canonical()
    for node in doc["nodes"]:
        node["params"].update(params)
    return doc


def leaders(sim) -> list[dict[str, Any]]:
    return [e for e in sim.records if e["k"] == "raft.leader"]


# -- the teaching fault against the baseline ---------------------------------------------------
def test_the_leader_crash_costs_one_quick_election_and_at_most_one_tick():
    summary, sim = run(SLUG)
    fig = summary["pattern"]
    assert all(c["ok"] for c in summary["checks"])
    crash = summary["faults"][0]
    assert crash["target"] == "leader:raft" and crash["node"] in sim.nodes
    assert fig["failover_ms"]["count"] == 1 and fig["failover_ms"]["max"] <= 305
    after = [e for e in leaders(sim) if e["t"] > 10_000]
    before = [e for e in leaders(sim) if e["t"] < 10_000]
    assert after[0]["term"] == before[-1]["term"] + 1, "the term steps by one"
    assert after[0]["node"] != crash["node"]
    assert fig["singleton_ticks_missed"] <= 1
    assert fig["max_leaders_per_term"] == 1 and fig["dual_leader_ms"] == 0
    assert fig["disruptive_elections"] == 0, "with pre-vote the cut-off follower rejoins quietly"

    base, _ = run(SLUG, baseline=True)
    assert base["pattern"]["singleton_ticks_missed"] >= 10, "a static primary idles the job"
    assert base["pattern"]["leaderless_ms_total"] >= 10_000
    assert fig["leaderless_ms_total"] < 1000


def test_without_pre_vote_the_cut_off_follower_comes_back_terms_ahead_and_deposes_the_leader():
    with_pre, _ = run(canonical())
    without, sim = run(canonical(pre_vote=False))
    partitioned = without["faults"][1]["node"]
    term_at_heal = max(e["to"] for e in sim.records
                       if e["k"] == "raft.term" and e["node"] == partitioned
                       and e["t"] <= 35_000)
    assert term_at_heal >= 15, "its term climbed while it was alone (≈ 5 s / 225 ms)"
    assert without["pattern"]["disruptive_elections"] >= 1
    assert with_pre["pattern"]["disruptive_elections"] == 0
    assert with_pre["pattern"]["terms"] == 2


# -- Election Safety, and a broken vote that breaks it ----------------------------------------
def _two_leaders_scenario(durable_vote: bool, seed: int = 3):
    """{n4, n5} are cut off for the first second, so {n1, n2, n3} elect a leader in term 1
    (with pre-vote the minority stays at term 0). At 1 s a follower of that leader crashes
    and the partition moves: {leader, other follower} | {that follower, n4, n5}. The
    follower restarts just before n4 next asks for pre-votes for term 1: with a volatile
    ``voted_for`` it has forgotten its vote in term 1 and grants n4 one."""
    doc = prepare(canonical(durable_vote=durable_vote) | {"scenario": {
        "duration_s": 4, "seed": seed, "faults": [
            {"at_s": 0, "until_s": 1, "target": "raft", "action": "partition",
             "groups": [["n4", "n5"]]}]}})
    sim = simulate(doc, trace="off")
    sim.advance(1000)
    (first,) = leaders(sim)
    assert first["term"] == 1, "precondition: the majority elected in term 1"
    leader = first["node"]
    follower, other = [n for n in ("n1", "n2", "n3") if n != leader]
    sim.inject({"target": follower, "action": "crash"})
    sim.inject({"target": "raft", "action": "partition", "groups": [[leader, other]]})
    n4 = sim.nodes["n4"]
    assert n4.current_term == 0 and n4.role == "pre-candidate"
    left = n4.election_timer.remaining()
    while left is None or left < 2:
        sim.advance(sim.now + 5)
        left = n4.election_timer.remaining()
    sim.advance(sim.now + left - 0.5)
    sim.inject({"target": follower, "action": "recover"})
    sim.run()
    return sim


def test_a_volatile_voted_for_gives_two_leaders_in_one_term_and_the_check_catches_it():
    sim = _two_leaders_scenario(durable_vote=False)
    verdict = invariants.one_leader_per_term(sim.records)
    assert not verdict.ok
    example = verdict.counterexample
    assert example is not None and len(example["nodes"]) == 2
    assert "term 1" in example["what"] and example["t"] > 1000
    assert not invariants.one_vote_per_term(sim.records).ok
    checks = {c["name"]: c for c in catalog.get(SLUG).checks(sim)}
    failed = checks["at most one leader per term"]
    assert not failed["ok"] and failed["counterexample"] == example


def test_a_durable_voted_for_keeps_one_leader_per_term_in_the_same_scenario():
    sim = _two_leaders_scenario(durable_vote=True)
    assert invariants.one_leader_per_term(sim.records).ok
    assert invariants.one_vote_per_term(sim.records).ok
    assert len({e["term"] for e in leaders(sim)}) >= 2, "n4's side elected in a later term"


# -- failover time (Ongaro's thesis) ------------------------------------------------------------
def test_failover_over_100_leader_crashes_lands_in_the_entrys_range():
    faults = [{"at_s": 2 + 2 * k, "until_s": 2.8 + 2 * k, "target": "leader:raft",
               "action": "crash"} for k in range(100)]
    doc = canonical()
    doc["scenario"] = {"duration_s": 203, "seed": 11, "faults": faults}
    summary, sim = run(doc)
    failovers = []
    starts = [e["t"] for e in leaders(sim)]
    for ev in sim.records:
        if ev["k"] == "raft.stepdown" and ev["why"] == "crashed":
            failovers.append(min(t for t in starts if t >= ev["t"]) - ev["t"])
    assert len(failovers) == 100
    mean = statistics.fmean(failovers)
    # T_min + (T_max − T_min)/(s+1) − heartbeat/2 + 3·latency + 2·latency (pre-vote)
    # = 150 + 150/5 − 25 + 5 = 160 ms.
    assert 145 <= mean <= 175, mean
    split_free = [f for f in failovers if f <= 305]
    assert len(split_free) >= 90, "most elections end in one term, within T_max + 5 latency"
    assert all(c["ok"] for c in summary["checks"])


def test_with_zero_spread_split_votes_repeat_and_no_leader_is_elected():
    summary, sim = run(canonical(election_timeout_ms=[150, 150]), duration_s=5)
    fig = summary["pattern"]
    assert leaders(sim) == []
    assert fig["split_votes"] >= 20 and fig["terms"] >= 20
    spread, _ = run(canonical(election_timeout_ms=[150, 300]), duration_s=5)
    assert spread["pattern"]["split_votes"] <= 1 and spread["pattern"]["terms"] <= 2


# -- safety under random faults -----------------------------------------------------------------
def random_faults(seed: int, duration_s: float) -> list[dict[str, Any]]:
    return random_cluster_faults(seed, duration_s, count=12, earliest_s=0.2)


def safety_failures(seeds: range, duration_s: float = 20) -> list[str]:
    return failing_seeds(canonical, random_faults, seeds, duration_s)


def test_safety_holds_under_random_crashes_pauses_partitions_and_clock_faults():
    failing = safety_failures(range(12))
    assert failing == [], "replay with the printed seed:\n" + "\n".join(failing)


@pytest.mark.slow
def test_safety_holds_over_200_random_fault_seeds():
    failing = safety_failures(range(1000, 1200), duration_s=30)
    assert failing == [], "replay with the printed seed:\n" + "\n".join(failing)


def test_the_random_faults_do_make_elections_happen():
    doc = canonical()
    doc["scenario"] = {"duration_s": 20, "seed": 5, "faults": random_faults(5, 20)}
    summary, _ = run(doc)
    assert summary["pattern"]["terms"] >= 3


# -- the etcd timer preset and the vote fsync ---------------------------------------------------
def crash_failovers(doc: dict[str, Any], crashes: int, every_s: float,
                    down_s: float) -> tuple[list[float], dict[str, Any]]:
    doc["scenario"] = {"duration_s": 2 + every_s * crashes, "seed": 11, "faults": [
        {"at_s": 2 + every_s * k, "until_s": 2 + every_s * k + down_s,
         "target": "leader:raft", "action": "crash"} for k in range(crashes)]}
    summary, sim = run(doc)
    starts = [e["t"] for e in leaders(sim)]
    failovers = [min(t for t in starts if t >= ev["t"]) - ev["t"] for ev in sim.records
                 if ev["k"] == "raft.stepdown" and ev["why"] == "crashed"]
    return failovers, summary


def test_the_etcd_preset_puts_failover_near_one_point_one_seconds():
    failovers, summary = crash_failovers(canonical(timers="etcd"), 40, 6, 4)
    assert len(failovers) == 40
    mean = statistics.fmean(failovers)
    # T_min + (T_max − T_min)/(s+1) − heartbeat/2 + 5·latency = 1000 + 200 − 50 + 5 = 1155 ms.
    assert 1050 <= mean <= 1260, mean
    # The earliest: T_min − one heartbeat (the last one just before the crash) + latencies.
    assert min(failovers) >= 900 and sum(f <= 2005 for f in failovers) >= 36, failovers
    assert all(c["ok"] for c in summary["checks"])
    heartbeats = [e for e in events(canonical(timers="etcd"), duration_s=3)
                  if e["k"] == "peer.send" and e["type"] == "append"]
    gaps = {round(b["t"] - a["t"]) for a, b in zip(heartbeats, heartbeats[4:], strict=False)
            if a["from"] == b["from"]}
    assert gaps == {100}, "the leader's heartbeat every 100 ms"


def test_a_vote_waits_for_its_fsync_and_failover_grows_by_about_one_fsync():
    stream = events(canonical(vote_fsync_ms=20.0), duration_s=1)
    grants = [e for e in stream if e["k"] == "vote.grant" and e["node"] != e["candidate"]]
    assert grants
    for grant in grants:
        answer = next(e for e in stream if e["k"] == "peer.send" and e["type"] == "vote.resp"
                      and e["from"] == grant["node"] and e["to"] == grant["candidate"]
                      and e["t"] >= grant["t"])
        assert answer["t"] - grant["t"] == pytest.approx(20.0)
    base, _ = crash_failovers(canonical(), 40, 2, 0.8)
    synced, summary = crash_failovers(canonical(vote_fsync_ms=20.0), 40, 2, 0.8)
    assert 12 <= statistics.fmean(synced) - statistics.fmean(base) <= 30
    assert all(c["ok"] for c in summary["checks"])
