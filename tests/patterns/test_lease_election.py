"""Leader election, lease variant (Kubernetes Lease, client-go defaults): one unexpired lease
at a time, failover within lease_duration + 2 × retry_period, and when two electors both
believe they lead (a pause, a slow clock) and when they do not (a plain partition)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from patterns import catalog
from patterns.engine import invariants
from tests.helpers import run

GOLDEN = Path(__file__).resolve().parent.parent / "golden"

SLUG = "leader-election"
UNEXPIRED = "at most one unexpired lease at any instant"
FAILOVER = "failover ≤ lease_duration + 2 × retry_period"


def lease_doc(faults: list[dict[str, Any]] | None = None, *, duration_s: float = 60,
              seed: int = 7, store: dict[str, Any] | None = None,
              **params: Any) -> dict[str, Any]:
    doc = catalog.get(SLUG).lease()
    for node in doc["nodes"]:
        if node["kind"] == "lease_elector":
            node["params"].update(params)
        else:
            node["params"].update(store or {})
    if faults is not None:
        doc["scenario"] = {"duration_s": duration_s, "seed": seed, "faults": faults}
    return doc


def checks(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in summary["checks"]}


def spans(sim) -> list[tuple[float, str, str]]:
    return [(e["t"], e["k"], e["node"]) for e in sim.records
            if e["k"] in ("lease.leader", "lease.stepdown")]


def crash_failovers(sim) -> list[float]:
    starts = [e["t"] for e in sim.records if e["k"] == "lease.leader"]
    return [min(t for t in starts if t >= e["t"]) - e["t"] for e in sim.records
            if e["k"] == "lease.stepdown" and e["why"] == "crashed"]


# -- the canonical lease scenario against the static baseline ---------------------------------
def test_the_holder_crash_idles_the_job_for_about_a_lease_and_a_pause_makes_two_leaders():
    summary, sim = run(catalog.get(SLUG).lease())
    fig = summary["pattern"]
    assert all(c["ok"] for c in summary["checks"]), summary["checks"]
    crash, pause = summary["faults"]
    assert crash["target"] == "leader:lease" and crash["node"] in sim.nodes
    assert pause["node"] != crash["node"], "the role selector found the new holder"
    assert fig["failover_ms"]["count"] == 1
    assert 13_000 <= fig["failover_ms"]["max"] <= 19_000
    assert fig["singleton_ticks_missed"] >= 13, "the job idles about a lease's duration"
    # The paused holder cannot step down: its lease runs out, another elector takes it, and
    # until the pause ends both believe they lead.
    assert fig["dual_leader_ms"] > 1000
    assert fig["stepdowns"]["deadline"] == 1
    assert fig["cas_conflicts"] >= 1, "the electors raced for the lease at 0 s"

    base, _ = run(catalog.get(SLUG).lease(), baseline=True)
    assert base["pattern"]["leaderless_ms_total"] >= 20_000, "a static primary idles 20 s"
    assert base["pattern"]["lease_grants"] == 0


def test_the_raft_document_keeps_the_raft_checks():
    summary, _ = run(SLUG)
    assert UNEXPIRED not in checks(summary)
    assert "at most one leader per term" in checks(summary)


# -- at most one unexpired lease, and a store without the version check -------------------------
def test_a_store_without_the_version_check_grants_two_leases_and_the_check_catches_it():
    broken, sim = run(lease_doc([], duration_s=20, store={"check_version": False}))
    failed = checks(broken)[UNEXPIRED]
    assert not failed["ok"]
    example = failed["counterexample"]
    assert len(example["nodes"]) == 2 and example["t"] < 100, "the racers at 0 s all won"
    leaders = {e["node"] for e in sim.records if e["k"] == "lease.leader"}
    assert len(leaders) >= 2
    assert broken["pattern"]["dual_leader_ms"] > 0

    fixed, sim = run(lease_doc([], duration_s=20))
    assert checks(fixed)[UNEXPIRED]["ok"]
    assert fixed["pattern"]["cas_conflicts"] >= 1, "the same race, lost by all but one"
    assert len({e["node"] for e in sim.records if e["k"] == "lease.leader"}) == 1


def test_a_candidate_with_a_fast_clock_takes_a_lease_that_is_not_expired():
    """A candidate judges expiry by its own clock: at twice the rate it gives up on a holder
    paused for 10 s after 7.5 s, while the holder's lease had 15."""
    faults = [{"at_s": 0, "target": n, "action": "clock_skew", "rate": 2.0}
              for n in ("e1", "e2", "e3")]
    faults.append({"at_s": 10, "until_s": 20, "target": "leader:lease", "action": "pause"})
    summary, _ = run(lease_doc(faults, duration_s=30))
    assert not checks(summary)[UNEXPIRED]["ok"]
    calm, _ = run(lease_doc(faults[-1:], duration_s=30))
    assert checks(calm)[UNEXPIRED]["ok"]


def test_the_unexpired_lease_check_reads_only_grants_to_other_holders():
    grant = {"k": "lease.grant", "node": "s", "key": "l", "version": 1, "renew": False}
    ok = invariants.one_unexpired_lease([
        {**grant, "t": 0.0, "holder": "a", "expires_at": 15_000.0},
        {**grant, "t": 2000.0, "holder": "a", "expires_at": 17_000.0},
        {**grant, "t": 17_000.0, "holder": "b", "expires_at": 32_000.0}])
    assert ok.ok
    bad = invariants.one_unexpired_lease([
        {**grant, "t": 0.0, "holder": "a", "expires_at": 15_000.0},
        {**grant, "t": 2000.0, "holder": "a", "expires_at": 17_000.0},
        {**grant, "t": 16_000.0, "holder": "b", "expires_at": 31_000.0}])
    assert not bad.ok and bad.counterexample == {
        "t": 16_000.0, "nodes": ["a", "b"],
        "what": "s granted l to b (version 1) while a's lease expires at 17.000 s"}


# -- failover after a holder crash ---------------------------------------------------------------
def test_failover_over_twenty_holder_crashes_lands_in_the_entrys_range():
    # Each holder stays down 25 s, longer than its lease, so another elector must take over.
    faults = [{"at_s": round(10 + 40 * k + 0.37 * k, 3), "until_s": 35 + 40 * k,
               "target": "leader:lease", "action": "crash"} for k in range(20)]
    summary, sim = run(lease_doc(faults, duration_s=820))
    failovers = crash_failovers(sim)
    assert len(failovers) == 20
    assert all(13_000 <= f <= 19_000 for f in failovers), failovers
    assert 14_500 <= statistics.fmean(failovers) <= 17_000, statistics.fmean(failovers)
    assert checks(summary)[FAILOVER]["ok"]
    assert "20 holder crashes" in checks(summary)[FAILOVER]["detail"]


def test_candidates_with_slow_clocks_miss_the_failover_bound_and_the_check_catches_it():
    faults = [{"at_s": 0, "target": n, "action": "clock_skew", "rate": 0.5}
              for n in ("e1", "e2", "e3")]
    faults.append({"at_s": 10, "target": "leader:lease", "action": "crash"})
    summary, _ = run(lease_doc(faults, duration_s=60))
    failed = checks(summary)[FAILOVER]
    assert not failed["ok"] and failed["counterexample"]["t"] == 10_000
    assert summary["pattern"]["failover_ms"]["max"] > 19_000


def test_a_holder_that_never_comes_back_and_no_successor_fails_the_failover_check():
    faults = [{"at_s": 5, "target": "leader:lease", "action": "crash"}]
    doc = lease_doc(faults, duration_s=40)
    doc["scenario"]["faults"] += [{"at_s": 5, "target": n, "action": "crash"}
                                  for n in ("e1", "e2", "e3")]
    summary, _ = run(doc)
    assert not checks(summary)[FAILOVER]["ok"]
    assert "nobody took over" in checks(summary)[FAILOVER]["counterexample"]["what"]


# -- the renew deadline: who believes it leads, and when ---------------------------------------
def test_a_cut_off_holder_steps_down_at_its_renew_deadline_before_anyone_takes_over():
    faults = [{"at_s": 10, "until_s": 40, "target": "leader:lease", "action": "partition"}]
    summary, sim = run(lease_doc(faults))
    fig = summary["pattern"]
    (first, down, second) = spans(sim)[:3]
    assert down[1] == "lease.stepdown" and down[2] == first[2]
    assert second[1] == "lease.leader" and second[2] != first[2]
    assert 8_000 <= down[0] - 10_000 <= 10_000, "10 s after its last renewal, ≤ 2 s before"
    assert second[0] - down[0] >= 4_000, "renew deadline 10 s < lease 15 s"
    assert fig["dual_leader_ms"] == 0 and fig["singleton_ticks_doubled"] == 0
    assert fig["stepdowns"]["deadline"] == 1


def test_a_slow_clock_on_the_cut_off_holder_makes_two_electors_believe_they_lead():
    faults = [{"at_s": 10, "until_s": 40, "target": "leader:lease", "action": "partition"},
              {"at_s": 10, "until_s": 40, "target": "leader:lease", "action": "clock_skew",
               "rate": 0.5}]
    summary, _ = run(lease_doc(faults))
    fig = summary["pattern"]
    # 10 of its seconds last 20: it steps down ≈ 26 s, after another took over at ≈ 24 s.
    assert 500 <= fig["dual_leader_ms"] <= 5_000
    assert checks(summary)[UNEXPIRED]["ok"], "the store never granted two leases"


def test_a_paused_holder_is_told_on_its_next_renewal_that_the_lease_is_gone():
    faults = [{"at_s": 10, "until_s": 30, "target": "leader:lease", "action": "pause"}]
    summary, sim = run(lease_doc(faults, duration_s=40))
    fig = summary["pattern"]
    paused = summary["faults"][0]["node"]
    downs = [e for e in sim.records if e["k"] == "lease.stepdown" and e["node"] == paused]
    assert downs and 30_000 <= downs[0]["t"] <= 32_000
    assert fig["dual_leader_ms"] > 3_000
    assert all(c["ok"] for c in summary["checks"])
