"""Saga: the entry's invariants on the participants' commits, the teaching fault against the
baseline, each invariant broken on purpose (an in-memory log, no inbox, parallel
compensations), crashes at named points, and every saga ending under random faults."""

from __future__ import annotations

import random
from typing import Any

import pytest

from patterns import catalog
from patterns.catalog.orchestration import truth
from tests.helpers import failed, failing_seeds, run

SLUG = "saga"
EVERY_SAGA_ENDS = "every saga ends completed or compensated"
REVERSE = "compensations run last step first"
ONCE = "each step takes effect once"


def canonical(faults: list[dict[str, Any]] | None = None, orchestrator: dict[str, Any] | None
              = None, participant: dict[str, Any] | None = None, **scenario: Any
              ) -> dict[str, Any]:
    doc = catalog.get(SLUG).canonical()
    for item in doc["nodes"]:
        if item["kind"] == "saga_orchestrator":
            item["params"].update(orchestrator or {})
        elif item["kind"] == "participant":
            item["params"].update(participant or {})
    if faults is not None:
        doc["scenario"]["faults"] = faults
    doc["scenario"].update(scenario)
    return doc


def declines(rate: float = 0.2) -> dict[str, Any]:
    return {"at_s": 0, "until_s": 60, "target": "payment", "action": "error_rate",
            "value": rate, "error_class": "business"}


# -- the teaching fault --------------------------------------------------------------------
def test_canonical_run_compensates_every_declined_saga_and_leaves_none_partial():
    summary, sim = run(SLUG)
    fig = summary["pattern"]
    assert summary["checks"] and not failed(summary)
    assert fig["sagas_partial"] == 0 and fig["sagas_open"] == 0
    # 20/s for 60 s less the starts refused while the orchestrator was down (≈ 100).
    assert 1000 <= fig["sagas_started"] <= 1120
    assert summary["requests"]["failed"] >= 80, "starts refused during the crash"
    # ≈ 20% declined at payment, each undoing inventory and orders (the entry: ≈ 220, ≈ 440).
    assert 180 <= fig["sagas_compensated"] <= 260
    assert fig["compensations"] == 2 * fig["sagas_compensated"]
    assert fig["sagas_completed"] + fig["sagas_compensated"] == fig["sagas_started"]
    assert fig["leaked_units"] == 0
    # Reserved units match completed sagas exactly.
    inventory = sim.nodes["inventory"]
    assert inventory.p["stock"] - inventory.stock_free == fig["sagas_completed"]
    # The orchestrator's own account agrees with the participants' commits.
    assert summary["flows"]["ended"] == {"COMPENSATED": fig["sagas_compensated"],
                                         "COMPLETED": fig["sagas_completed"]}


def test_baseline_leaves_declined_sagas_pending_with_their_stock_held():
    summary, _ = run(SLUG, baseline=True)
    fig = summary["pattern"]
    assert fig["compensations"] == 0
    # Every declined saga stays partial: its order pending, its unit reserved.
    assert 180 <= fig["sagas_partial"] <= 270
    assert fig["leaked_units"] >= fig["sagas_partial"] - 10
    assert EVERY_SAGA_ENDS in failed(summary)
    assert "reserved units match completed sagas" in failed(summary)
    counterexample = failed(summary)[EVERY_SAGA_ENDS]["counterexample"]
    assert "partial" in counterexample["what"] and counterexample["t"] > 0


def test_a_business_refusal_is_not_compensated_and_nothing_after_the_pivot_is():
    _, sim = run(canonical())
    for saga in truth.flows(sim):
        if saga.outcome == truth.COMPENSATED:
            assert "payment.authorize" not in saga.applied
            assert set(saga.undone) == {"orders.create", "inventory.reserve"}
        else:
            assert saga.outcome == truth.COMPLETED and not saga.undone


# -- each invariant, broken on purpose ------------------------------------------------------
def test_an_in_memory_saga_log_leaves_the_sagas_in_flight_at_a_crash_partial():
    faults = [{"at_s": s, "until_s": s + 1, "target": "saga", "action": "crash"}
              for s in (10, 20, 30, 40)]
    summary, _ = run(canonical(faults, orchestrator={"durable": False}))
    fig = summary["pattern"]
    assert fig["sagas_partial"] >= 4, "≈ λ·W sagas lost per crash"
    assert EVERY_SAGA_ENDS in failed(summary)
    durable, _ = run(canonical(faults))
    assert durable["pattern"]["sagas_partial"] == 0 and not failed(durable)
    assert durable["pattern"]["commands_resent"] >= 4


def test_without_an_inbox_a_resent_command_takes_effect_twice():
    # A participant crashes after committing and before replying: the orchestrator, told
    # the connection was reset, re-sends the command.
    faults = [{"at_s": s, "target": "inventory", "action": "crash",
               "point": "after_commit_before_reply", "down_s": 0.5} for s in (5, 15, 25, 35)]
    summary, _ = run(canonical(faults, participant={"idempotent": False}))
    assert ONCE in failed(summary)
    assert "applied 2 times" in failed(summary)[ONCE]["counterexample"]["what"]
    guarded, sim = run(canonical(faults))
    assert not failed(guarded)
    assert sim.nodes["inventory"].duplicates_ignored >= 4


def test_without_an_inbox_a_compensation_applied_twice_drifts_the_stock_and_is_caught():
    faults = [declines(0.5), {"at_s": 5, "target": "inventory", "action": "crash",
                              "point": "after_commit_before_reply", "down_s": 0.5}]
    summary, _ = run(canonical(faults, participant={"idempotent": False}, duration_s=20))
    bad = failed(summary)
    assert ONCE in bad and "reserved units match completed sagas" in bad


def test_parallel_compensations_break_the_reverse_order():
    summary, _ = run(canonical([declines(0.3)], orchestrator={"compensation_order": "parallel"}))
    assert REVERSE in failed(summary)
    assert failed(summary)[REVERSE]["counterexample"]["what"].count("undone") == 1
    assert not failed(run(canonical([declines(0.3)]))[0])


def without_deadlines(doc: dict[str, Any]) -> dict[str, Any]:
    """Commands no longer carry their deadline: one the orchestrator gave up on may still
    commit late, which is what compensate_unknown and tombstones are for."""
    for item in doc["edges"]:
        item["params"].pop("deadline_propagation", None)
    return doc


def test_a_timed_out_step_that_committed_late_is_compensated():
    # Inventory is slow beyond the step timeout for a while: reservations the orchestrator
    # gave up on still commit, and only compensating unknown outcomes undoes them.
    faults = [declines(), {"at_s": 10, "until_s": 14, "target": "inventory", "action": "slow",
                           "value": 200.0}]
    summary, sim = run(without_deadlines(canonical(faults, orchestrator={"max_attempts": 1})))
    assert not failed(summary)
    assert summary["nodes"]["saga"]["step_timeouts"] > 0
    late = [e for e in sim.records if e["k"] == "tx.commit" and e["node"] == "inventory"
            and e["effect"] == "applied" and any(
                f["k"] == "flow.step" and f["flow"] == e["flow"] and f["status"] == "timed_out"
                and f["t"] <= e["t"] for f in sim.records)]
    assert late, "some reservations committed after their step timed out"
    broken, _ = run(without_deadlines(canonical(
        faults, orchestrator={"max_attempts": 1, "compensate_unknown": False})))
    assert broken["pattern"]["sagas_partial"] > 0 and broken["pattern"]["leaked_units"] > 0
    assert EVERY_SAGA_ENDS in failed(broken)


def test_a_step_arriving_after_its_compensation_is_refused_by_the_tombstone():
    # Inventory is down, then its link holds messages: reservations the orchestrator already
    # compensated (no-ops) arrive afterwards. Without the tombstone they are applied.
    faults = [{"at_s": 0, "until_s": 8, "target": "orders", "action": "error_rate",
               "value": 0.15, "error_class": "business"},
              {"at_s": 2.472, "until_s": 5.4, "target": "inventory", "action": "crash"},
              {"at_s": 5.329, "until_s": 7.934, "target": "saga-inventory",
               "action": "partition", "mode": "hold"}]
    doc = without_deadlines(canonical(faults, duration_s=8, seed=18, drain_s=40))
    summary, sim = run(doc)
    assert not failed(summary)
    assert sim.nodes["inventory"].late_refused > 0, "a late reservation met its tombstone"
    broken, _ = run(without_deadlines(canonical(faults, participant={"tombstones": False},
                                                duration_s=8, seed=18, drain_s=40)))
    assert EVERY_SAGA_ENDS in failed(broken)


def test_the_orchestrator_crashing_at_its_named_point_loses_no_saga():
    faults = [declines()] + [{"at_s": s, "target": "saga", "action": "crash",
                              "point": "after_persist_before_send", "down_s": 1.0}
                             for s in range(5, 55, 5)]
    summary, _ = run(canonical(faults))
    fired = [n for n in summary["faults"] if n.get("point")]
    assert len(fired) == 10
    assert not failed(summary)
    assert summary["pattern"]["commands_resent"] >= 10


# -- random faults: every saga ends ----------------------------------------------------------
def random_saga_faults(seed: int, duration_s: float) -> list[dict[str, Any]]:
    """Failing steps, slow spells, lost and held messages, participant crashes, and
    orchestrator crashes mid-saga and mid-compensation (random instants, and the named
    points)."""
    rng = random.Random(seed)
    participants = ["orders", "inventory", "payment", "shipping"]
    crash_at = round(rng.uniform(0.5, duration_s - 0.5), 3)
    faults: list[dict[str, Any]] = [
        {"at_s": 0, "until_s": duration_s, "target": rng.choice(participants[:3]),
         "action": "error_rate", "value": round(rng.uniform(0.1, 0.5), 2),
         "error_class": "business"},
        # Every run crashes the orchestrator at least once, at a random instant or right
        # after it persisted a step or a compensation and before sending it.
        {"at_s": crash_at, "target": "saga",
         "action": "crash", **({"point": "after_persist_before_send",
                                "down_s": round(rng.uniform(0.1, 2.0), 3)}
                               if rng.random() < 0.5 else
                               {"until_s": round(crash_at + rng.uniform(0.1, 3.0), 3)})},
    ]
    for _ in range(rng.randint(2, 6)):
        at = round(rng.uniform(0.2, duration_s - 0.2), 3)
        until = round(at + rng.uniform(0.05, 3.0), 3)
        target = rng.choice(["saga", *participants])
        link = f"saga-{rng.choice(participants)}"
        what = rng.choice(["crash", "point", "slow", "errors", "drop", "partition"])
        if what == "crash":
            faults.append({"at_s": at, "until_s": until, "target": target, "action": "crash"})
        elif what == "point":
            point = ("after_persist_before_send" if target == "saga"
                     else "after_commit_before_reply")
            faults.append({"at_s": at, "target": target, "action": "crash", "point": point,
                           "down_s": round(rng.uniform(0.1, 2.0), 3)})
        elif what == "slow":
            faults.append({"at_s": at, "until_s": until, "target": rng.choice(participants),
                           "action": "slow", "value": round(rng.uniform(5.0, 100.0), 1)})
        elif what == "errors":
            faults.append({"at_s": at, "until_s": until, "target": rng.choice(participants),
                           "action": "error_rate", "value": round(rng.uniform(0.1, 0.9), 2)})
        elif what == "drop":
            faults.append({"at_s": at, "until_s": until, "target": link, "action": "drop_rate",
                           "value": round(rng.uniform(0.1, 0.6), 2)})
        else:
            faults.append({"at_s": at, "until_s": until, "target": link,
                           "action": "partition", "mode": rng.choice(["hold", "drop"]),
                           "direction": rng.choice(["both", "outbound", "inbound"])})
    return sorted(faults, key=lambda f: f["at_s"])


def short_canonical() -> dict[str, Any]:
    doc = canonical()
    doc["scenario"]["drain_s"] = 60
    return doc


def short_canonical_without_deadlines() -> dict[str, Any]:
    return without_deadlines(short_canonical())


@pytest.mark.parametrize("canonical_doc", [short_canonical, short_canonical_without_deadlines])
def test_every_saga_ends_under_random_faults(canonical_doc):
    assert failing_seeds(canonical_doc, random_saga_faults, range(1, 16), duration_s=8) == []


@pytest.mark.slow
@pytest.mark.parametrize("canonical_doc", [short_canonical, short_canonical_without_deadlines])
def test_every_saga_ends_under_300_random_fault_seeds(canonical_doc):
    # 150 seeds each way: 300 in all.
    assert failing_seeds(canonical_doc, random_saga_faults, range(100, 250),
                         duration_s=8) == []


# -- the choreographed variant -----------------------------------------------------------------
def test_the_choreographed_saga_compensates_by_events_and_leaves_none_partial():
    summary, sim = run(SLUG, variant="choreography")
    fig = summary["pattern"]
    assert not any(n.KIND == "saga_orchestrator" for n in sim.nodes.values())
    assert summary["checks"] and not failed(summary)
    assert fig["sagas_partial"] == 0 and fig["sagas_open"] == 0
    assert 180 <= fig["sagas_compensated"] <= 280
    assert fig["compensations"] == 2 * fig["sagas_compensated"]
    # Inventory's crash (20–25 s) only delays: its redelivered events are ignored once.
    assert fig["duplicates_ignored"] > 0 and summary["requests"]["failed"] == 0
    inventory = sim.nodes["inventory"]
    assert inventory.p["stock"] - inventory.stock_free == fig["sagas_completed"]


def test_the_choreographed_baseline_without_compensating_reactions_leaks_units():
    summary, _ = run(SLUG, variant="choreography", baseline=True)
    fig = summary["pattern"]
    assert fig["compensations"] == 0 and fig["sagas_partial"] >= 150
    assert fig["leaked_units"] == fig["sagas_partial"]
    assert {EVERY_SAGA_ENDS, "reserved units match completed sagas"} <= set(failed(summary))


def random_choreographed_faults(seed: int, duration_s: float) -> list[dict[str, Any]]:
    """Declines, slow spells, crashes and pauses of any service, and partitions between a
    service and the log that hold messages until they heal (TCP retransmits; a lost join
    reply would leave a consumer waiting its join timeout, 305 s, as in Kafka)."""
    rng = random.Random(seed)
    services = ["orders", "inventory", "payment", "shipping"]
    faults: list[dict[str, Any]] = [
        {"at_s": 0, "until_s": duration_s, "target": "payment", "action": "error_rate",
         "value": round(rng.uniform(0.1, 0.5), 2), "error_class": "business"}]
    for _ in range(rng.randint(2, 5)):
        at = round(rng.uniform(0.2, duration_s - 0.2), 3)
        until = round(at + rng.uniform(0.05, 3.0), 3)
        target = rng.choice(services)
        what = rng.choice(["crash", "crash", "slow", "partition", "pause"])
        if what in ("crash", "pause"):
            faults.append({"at_s": at, "until_s": until, "target": target, "action": what})
        elif what == "slow":
            faults.append({"at_s": at, "until_s": until, "target": target, "action": "slow",
                           "value": round(rng.uniform(2.0, 20.0), 1)})
        else:
            faults.append({"at_s": at, "until_s": until, "target": f"{target}-saga_events",
                           "action": "partition", "mode": "hold"})
    return sorted(faults, key=lambda f: f["at_s"])


def short_choreographed() -> dict[str, Any]:
    doc = catalog.get(SLUG).document("choreography")
    doc["scenario"]["drain_s"] = 90
    return doc


def test_every_choreographed_saga_ends_under_random_faults():
    assert failing_seeds(short_choreographed, random_choreographed_faults, range(1, 11),
                         duration_s=8) == []


@pytest.mark.slow
def test_every_choreographed_saga_ends_under_100_random_fault_seeds():
    assert failing_seeds(short_choreographed, random_choreographed_faults, range(100, 200),
                         duration_s=8) == []
