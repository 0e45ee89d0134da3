"""Choreography: a crashed service only builds a backlog, nothing is lost or applied twice,
a new subscriber changes nothing for the others, a poison event stalls its flow silently
and only the monitor notices; each check shown to fail when its mechanism is removed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from patterns import catalog
from tests.helpers import failed, run

SLUG = "choreography"
LOST = "no event lost"
ONCE = "each event takes effect once per service"
FLAGGED = "the monitor flags every flow left stalled"


def canonical(faults: list[dict[str, Any]] | None = None, drop: tuple[str, ...] = (),
              **params: dict[str, Any]) -> dict[str, Any]:
    doc = catalog.get(SLUG).canonical()
    doc["nodes"] = [n for n in doc["nodes"] if n["id"] not in drop]
    doc["edges"] = [e for e in doc["edges"] if e["from"] not in drop and e["to"] not in drop]
    for item in doc["nodes"]:
        item["params"].update(params.get(item["id"], {}))
    if faults is not None:
        doc["scenario"]["faults"] = faults
    return doc


def per_second(sim: Any, node: str) -> Counter[int]:
    return Counter(int(e["t"] // 1000) for e in sim.records
                   if e["k"] == "tx.commit" and e.get("node") == node)


def test_a_crashed_service_builds_a_backlog_and_nobody_else_notices():
    summary, sim = run(SLUG)
    fig = summary["pattern"]
    assert summary["checks"] and not failed(summary)
    assert fig["user_errors"] == 0 and summary["requests"]["failed"] == 0
    assert fig["flows_completed"] == fig["flows_started"] == summary["requests"]["sent"]
    # Payment keeps its pace while inventory is down (20–40 s).
    payments = per_second(sim, "payment")
    during = sum(payments[s] for s in range(21, 40)) / 19
    assert during == pytest.approx(20, rel=0.1)
    inventory = per_second(sim, "inventory")
    assert sum(inventory[s] for s in range(21, 40)) == 0
    # Its backlog: ≈ λ·T = 400 events, drained within seconds of its return.
    assert 380 <= fig["backlog_max"] <= 520
    back = next(s for s in range(40, 80) if inventory[s])
    assert back <= 45
    caught_up = next(s for s in range(back, 80) if inventory[s] <= 30 and s > back + 1)
    assert caught_up - back <= 12
    # Events it processed again after its restart changed nothing: its inbox knew them.
    assert fig["duplicates_ignored"] > 0 and fig["events_lost"] == 0


def test_a_new_subscriber_changes_nothing_for_the_others():
    _, with_notify = run(SLUG)
    _, without = run(canonical(drop=("notify",)))

    def effects(sim: Any) -> list[tuple[Any, ...]]:
        return [(e["t"], e["node"], e["flow"], e["on"]) for e in sim.records
                if e["k"] == "tx.commit" and e.get("node") in ("payment", "inventory",
                                                               "shipping", "orders")]
    assert effects(with_notify) == effects(without)
    assert any(e["node"] == "notify" for e in with_notify.records if e["k"] == "tx.commit")


def test_a_poison_event_stalls_its_flow_silently_and_the_monitor_flags_it():
    refusals = [{"at_s": 0, "until_s": 60, "target": "inventory", "action": "error_rate",
                 "value": 0.05, "error_class": "business"}]
    summary, sim = run(canonical(refusals))
    fig = summary["pattern"]
    # ≈ 5% of the flows stop at inventory after 10 deliveries; nobody's error count moves.
    assert 0.03 <= fig["flows_stalled"] / fig["flows_started"] <= 0.07
    assert fig["user_errors"] == 0 and fig["redeliveries"] >= 9 * fig["flows_stalled"]
    assert fig["events_skipped"] >= fig["flows_stalled"]
    assert not failed(summary)
    monitor = sim.nodes["monitor"]
    stalled = [f for f in sim.flows.started if f not in sim.flows.ended]
    # Each flagged within its stall timeout (10 s) of the skip, plus one check period.
    skipped_at = {e["flow"]: e["t"] for e in sim.records if e["k"] == "event.skip"}
    for flow in stalled:
        assert flow in monitor.flagged
        assert monitor.flagged[flow] - skipped_at[flow] <= 10_000 + 1_000 + 100


def test_a_monitor_that_waits_too_long_misses_the_stalled_flows():
    refusals = [{"at_s": 0, "until_s": 60, "target": "inventory", "action": "error_rate",
                 "value": 0.05, "error_class": "business"}]
    summary, _ = run(canonical(refusals, monitor={"stall_timeout_s": 3600}))
    assert FLAGGED in failed(summary)
    assert "never said so" in failed(summary)[FLAGGED]["counterexample"]["what"]


def test_publishing_directly_after_the_commit_loses_events_at_a_crash():
    crashes = [{"at_s": s, "target": "payment", "action": "crash",
                "point": "after_commit_before_publish", "down_s": 1} for s in (10, 25, 40)]
    summary, _ = run(canonical(crashes, payment={"publish": "direct"}))
    assert summary["pattern"]["events_lost"] >= 3
    assert summary["pattern"]["flows_stalled"] >= 3
    assert LOST in failed(summary)
    assert "never reached anyone" in failed(summary)[LOST]["counterexample"]["what"]
    # With the outbox there is no such window: the event is committed with the row, the
    # point is never reached, and crashes at any instant lose nothing.
    outbox, _ = run(canonical(crashes))
    assert outbox["pattern"]["events_lost"] == 0 and not failed(outbox)
    plain = [{"at_s": f["at_s"], "until_s": f["at_s"] + 1, "target": "payment",
              "action": "crash"} for f in crashes]
    safe, _ = run(canonical(plain))
    assert safe["pattern"]["events_lost"] == 0 and not failed(safe)
    assert safe["pattern"]["duplicates_ignored"] > 0


def test_without_an_inbox_redelivered_events_take_effect_twice():
    summary, _ = run(canonical(inventory={"idempotent": False}))
    assert ONCE in failed(summary)
    assert "applied PaymentTaken" in failed(summary)[ONCE]["counterexample"]["what"]


def test_the_baseline_stops_every_participant_when_the_orchestrator_crashes():
    summary, _ = run(SLUG, baseline=True)
    # The orchestrator down 20 s: ≈ 400 orders fail at the door.
    assert 330 <= summary["requests"]["failed"] <= 450
    assert summary["pattern"]["workflows_open"] == 0
