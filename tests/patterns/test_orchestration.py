"""Orchestration: the entry's invariants and figures (refusals end FAILED, a crash idles
every participant and loses nothing when durable, attempts under message loss, failures
after k attempts, the orchestrator's utilisation), and each check shown to fail."""

from __future__ import annotations

from typing import Any

import pytest

from patterns import catalog
from patterns.catalog.orchestration import orchestration as orch
from patterns.catalog.orchestration import truth
from tests.helpers import failed, run

SLUG = "orchestration"
ENDS = "every workflow ends completed or failed"
IN_ORDER = "each step only after the previous one succeeded"


def canonical(faults: list[dict[str, Any]] | None = None,
              orchestrator: dict[str, Any] | None = None, **scenario: Any) -> dict[str, Any]:
    doc = catalog.get(SLUG).canonical()
    for item in doc["nodes"]:
        if item["kind"] == "orchestrator":
            item["params"].update(orchestrator or {})
    if faults is not None:
        doc["scenario"]["faults"] = faults
    doc["scenario"].update(scenario)
    return doc


def commits(sim: Any, node: str) -> list[float]:
    return [e["t"] for e in sim.records if e["k"] == "tx.commit" and e["node"] == node]


def test_canonical_run_fails_refused_orders_with_a_reason_and_leaves_none_open():
    summary, sim = run(SLUG)
    fig = summary["pattern"]
    assert summary["checks"] and not failed(summary)
    assert fig["workflows_open"] == 0 and fig["workflows_orphaned"] == 0
    assert fig["workflows_started"] == fig["workflows_completed"] + fig["workflows_failed"]
    # ≈ 5% of the orders that reach inventory are refused, each tried once.
    assert 0.03 <= fig["workflows_failed"] / fig["workflows_started"] <= 0.07
    reasons = [e.get("reason", "") for e in sim.records
               if e["k"] == "flow.end" and e["outcome"] == "FAILED"]
    assert reasons and all(r.startswith("inventory.reserve refused") for r in reasons)
    # While the orchestrator is down nothing starts (≈ 100 refused) and nobody works.
    assert 80 <= summary["requests"]["failed"] <= 120
    for participant in orch.PARTICIPANTS:
        assert not [t for t in commits(sim, participant) if 20_100 < t < 25_000]


def test_refusals_are_tried_once_and_transient_failures_until_max_attempts():
    refused, _ = run(canonical([{"at_s": 0, "until_s": 60, "target": "inventory",
                                 "action": "error_rate", "value": 0.2,
                                 "error_class": "business"}]))
    assert refused["nodes"]["orchestrator"]["retries"] == 0
    assert 0.16 <= refused["pattern"]["workflows_failed"] / \
        refused["pattern"]["workflows_started"] <= 0.24
    # k = 2 attempts at a transient failure rate q = 0.3: FAILED ≈ q² = 0.09.
    transient, _ = run(canonical([{"at_s": 0, "until_s": 60, "target": "inventory",
                                   "action": "error_rate", "value": 0.3}],
                                 {"max_attempts": 2}))
    share = transient["pattern"]["workflows_failed"] / transient["pattern"]["workflows_started"]
    assert share == pytest.approx(0.09, abs=0.025)


def test_message_loss_costs_attempts_as_the_entry_says():
    # Each attempt needs its command and its reply through: mean attempts 1 / (1 − p)².
    faults = [{"at_s": 0, "until_s": 60, "target": f"{orch.ORCHESTRATOR}-{pid}",
               "action": "drop_rate", "value": 0.1} for pid in orch.PARTICIPANTS]
    summary, _ = run(canonical(faults))
    assert summary["pattern"]["step_attempts_mean"] == pytest.approx(1 / 0.81, abs=0.04)
    assert summary["pattern"]["step_timeouts"] > 0
    assert not failed(summary)


def test_utilisation_and_latency_follow_the_transitions():
    summary, sim = run(canonical([]))
    # λ (k + 1) · transition_ms / workers = 20 × 4 × 3 ms = 0.24.
    assert summary["pattern"]["orchestrator_utilisation"] == pytest.approx(0.24, rel=0.1)
    # A workflow lasts at least (k + 1) transitions plus k round trips and services.
    assert min(sim.flows.durations()) >= 4 * 3.0


def test_an_in_memory_orchestrator_orphans_the_workflows_in_flight_at_each_crash():
    crashes = [{"at_s": s, "until_s": s + 1, "target": "orchestrator", "action": "crash"}
               for s in range(5, 55, 5)]
    summary, _ = run(canonical(crashes, {"durable": False}))
    assert summary["pattern"]["workflows_orphaned"] >= 3
    assert ENDS in failed(summary)
    assert "orphaned" in failed(summary)[ENDS]["counterexample"]["what"]
    durable, _ = run(canonical(crashes))
    assert durable["pattern"]["workflows_orphaned"] == 0 and not failed(durable)
    assert durable["pattern"]["commands_resent"] >= 3


def test_the_order_check_catches_a_step_that_ran_before_the_previous_one():
    _, sim = run(canonical([]), trace="off")
    truths = truth.flows(sim)
    assert orch.steps_in_order(truths, sim).ok
    done = next(t for t in truths if len(t.applied) == 3)
    done.applied["shipping.schedule"] = done.applied["payment.charge"] - 1.0
    verdict = orch.steps_in_order(truths, sim)
    assert not verdict.ok
    assert "shipping.schedule took effect before inventory.reserve" in \
        verdict.counterexample["what"]
