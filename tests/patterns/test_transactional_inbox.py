"""Transactional inbox: the entry's invariants on the database's commits, the teaching fault
against the baseline, and each invariant broken on purpose (no inbox, check-then-act, the
broker's id as the key, an expired dedup record)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from patterns import catalog
from tests.helpers import failed, failing_seeds, run

SLUG = "transactional-inbox"
ONCE = "each message applied once"
LEDGER = "ledger equals the sum of distinct payments"


def canonical(ledger: dict[str, Any] | None = None, payer: dict[str, Any] | None = None,
              faults: list[dict[str, Any]] | None = None, **scenario: Any) -> dict[str, Any]:
    doc = catalog.get(SLUG).canonical()
    for item in doc["nodes"]:
        item["params"].update({"ledger": ledger, "payer": payer}.get(item["id"]) or {})
    if faults is not None:
        doc["scenario"]["faults"] = faults
    doc["scenario"].update(scenario)
    return doc


def crashes(point: str, times: tuple[float, ...] = (10, 20, 30, 40, 50)) -> list[dict]:
    return [{"at_s": at, "target": "ledger", "action": "crash", "point": point, "down_s": 1}
            for at in times]


SIMULTANEOUS = {"resend_after_ms": 0.0}  # both copies sent at once: they meet in the handler


# -- the teaching fault ----------------------------------------------------------------------
def test_canonical_run_applies_every_payment_once():
    summary, _ = run(SLUG)
    fig = summary["pattern"]
    assert summary["checks"] and not failed(summary)
    assert fig["ledger_error"] == 0 and fig["duplicates_applied"] == 0
    # ≈ 5% of ≈ 6,000 re-sent, plus the copies redelivered after each crash.
    assert 250 <= fig["duplicates_delivered"] <= 450
    assert fig["duplicates_discarded"] == fig["duplicates_delivered"]
    assert fig["deliveries"] == fig["distinct_messages"] + fig["duplicates_delivered"]
    assert fig["handler_runs"] >= fig["distinct_messages"]
    assert fig["inbox_rows_max"] == fig["distinct_messages"]  # nothing expired in 60 s


def test_baseline_applies_every_copy_and_the_ledger_ends_five_percent_high():
    summary, _ = run(SLUG, baseline=True)
    fig = summary["pattern"]
    assert fig["duplicates_discarded"] == 0
    # (2) ledger excess == surplus deliveries processed.
    assert fig["ledger_error"] == fig["duplicates_applied"] == fig["duplicates_delivered"]
    assert 0.04 * fig["distinct_messages"] <= fig["ledger_error"] \
        <= 0.07 * fig["distinct_messages"]
    assert {ONCE, LEDGER} <= set(failed(summary))
    assert "applied 2 times" in failed(summary)[ONCE]["counterexample"]["what"]


def test_with_ten_percent_duplicate_deliveries_every_effect_is_applied_exactly_once():
    # The figure: one delivery in ten is a copy (re-sent by the producer), on top of
    # the teaching crashes between commit and ack.
    summary, _ = run(canonical(payer={"duplicate_rate": 0.1}))
    fig = summary["pattern"]
    assert 0.08 * fig["distinct_messages"] <= fig["duplicates_delivered"]
    assert fig["duplicates_applied"] == 0 and fig["ledger_error"] == 0
    assert not failed(summary)
    # Without the inbox every copy is applied, and counted.
    none, _ = run(canonical(ledger={"inbox": "none"}, payer={"duplicate_rate": 0.1}))
    assert none["pattern"]["duplicates_applied"] == none["pattern"]["duplicates_delivered"]
    assert none["pattern"]["duplicates_applied"] >= 0.08 * none["pattern"]["distinct_messages"]
    assert ONCE in failed(none)


# -- (1) transactional: once, whatever the crash point ---------------------------------------
def test_a_crash_after_commit_before_ack_comes_back_as_an_inbox_hit():
    summary, _ = run(canonical(payer={"duplicate_rate": 0.0}))
    fig = summary["pattern"]
    # No producer re-sends: every duplicate is a redelivery after a crash, each discarded.
    assert 5 <= fig["duplicates_delivered"] == fig["duplicates_discarded"]
    assert fig["duplicates_applied"] == 0 and not failed(summary)


def test_transactional_survives_database_and_consumer_crashes():
    faults = [*crashes("after_commit_before_ack"),
              {"at_s": 15, "until_s": 16, "target": "ledger_db", "action": "crash"},
              {"at_s": 35, "until_s": 36, "target": "ledger", "action": "crash"}]
    summary, _ = run(canonical(faults=faults))
    assert not failed(summary)
    assert summary["pattern"]["ledger_error"] == 0


# -- (3) check_then_act double-applies -----------------------------------------------------
def test_check_then_act_applies_twice_after_a_crash_between_effect_and_record():
    summary, _ = run(canonical(ledger={"inbox": "check_then_act"},
                               payer={"duplicate_rate": 0.0},
                               faults=crashes("after_effect_before_record")))
    assert summary["pattern"]["duplicates_applied"] >= 5
    assert ONCE in failed(summary)


@pytest.mark.parametrize("inbox,applied_twice", [("check_then_act", True),
                                                 ("transactional", False)])
def test_two_copies_at_once(inbox, applied_twice):
    summary, sim = run(canonical(ledger={"inbox": inbox}, payer=SIMULTANEOUS, faults=[]))
    fig = summary["pattern"]
    assert (fig["duplicates_applied"] > 0) is applied_twice
    if inbox == "transactional":
        # Optimistic: both copies ran the handler; the unique key failed the second commit.
        assert sim.nodes["ledger"].conflicts > 0
        assert fig["handler_runs"] > fig["distinct_messages"]
        assert fig["external_effects_repeated"] > 0


def test_pessimistic_locking_runs_the_handler_once_per_message():
    summary, sim = run(canonical(ledger={"concurrency": "pessimistic"}, payer=SIMULTANEOUS,
                                 faults=[]))
    fig = summary["pattern"]
    assert not failed(summary)
    assert sim.nodes["ledger"].conflicts == 0
    assert fig["handler_runs"] == fig["distinct_messages"]
    assert fig["external_effects_repeated"] == 0


# -- (4) the producer's id, never the broker's -----------------------------------------------
def test_keying_on_the_broker_id_lets_every_resend_through():
    summary, sim = run(canonical(ledger={"dedup_key": "broker_id"}, faults=[]))
    resent = sim.nodes["payer"].resent
    assert resent > 200
    assert summary["pattern"]["duplicates_applied"] == resent
    assert ONCE in failed(summary)


# -- (5) retention -------------------------------------------------------------------------
def test_a_copy_after_the_retention_is_applied_again_exactly_those():
    ledger = {"dedup_retention_s": 2.0, "cleanup_interval_s": 0.5}
    late = run(canonical(ledger=ledger, payer={"resend_after_ms": 4000.0}, faults=[]))
    summary, sim = late
    # Every re-send arrives 4 s later, after its record (kept 2 s, cleaned every 0.5 s).
    assert summary["pattern"]["duplicates_applied"] == sim.nodes["payer"].resent
    early, _ = run(canonical(ledger=ledger, payer={"resend_after_ms": 1000.0}, faults=[]))
    assert early["pattern"]["duplicates_applied"] == 0


# -- (7) cost -----------------------------------------------------------------------------
def test_inbox_rows_level_off_at_rate_times_retention():
    summary, _ = run(canonical(ledger={"dedup_retention_s": 10.0, "cleanup_interval_s": 1.0},
                               faults=[]))
    # ≈ 100/s × (10 s + one clean-up interval).
    assert 900 <= summary["pattern"]["inbox_rows_max"] <= 1300


def test_the_inbox_costs_one_more_statement_per_message():
    def p50(inbox: str) -> float:
        summary, _ = run(canonical(ledger={"inbox": inbox}, payer={"duplicate_rate": 0.0},
                                   faults=[]))
        return summary["nodes"]["payments_q"]["end_to_end_ms"]["p50"]
    assert 0.5 <= p50("transactional") - p50("none") <= 3.0


# -- (1) under random faults ---------------------------------------------------------------
def random_inbox_faults(seed: int, duration_s: float) -> list[dict[str, Any]]:
    """Crashes of the ledger (at its named points or for a while) and of its database,
    partitions between the queue and the ledger, slow spells; never a crash of the
    in-memory queue, which loses what it stores whatever the consumer does."""
    rng = random.Random(seed)
    faults: list[dict[str, Any]] = []
    for _ in range(rng.randint(2, 6)):
        at = round(rng.uniform(0.5, duration_s - 0.5), 3)
        target = rng.choice(["ledger", "ledger", "ledger_db", "payments_q-ledger"])
        if target == "ledger" and rng.random() < 0.5:
            faults.append({"at_s": at, "target": target, "action": "crash",
                           "point": rng.choice(["after_commit_before_ack",
                                                "after_effect_before_record"]),
                           "down_s": round(rng.uniform(0.1, 2), 3)})
            continue
        until = round(at + rng.uniform(0.1, 2.5), 3)
        action = "partition" if "-" in target else rng.choice(["crash", "slow"])
        fault = {"at_s": at, "until_s": until, "target": target, "action": action}
        if action == "slow":
            fault["value"] = round(rng.uniform(5.0, 50.0), 1)
        faults.append(fault)
    return sorted(faults, key=lambda f: f["at_s"])


@pytest.mark.parametrize("concurrency", ["optimistic", "pessimistic"])
def test_each_payment_applied_once_under_random_faults(concurrency):
    def short() -> dict[str, Any]:
        return canonical(ledger={"concurrency": concurrency}, drain_s=30)
    assert failing_seeds(short, random_inbox_faults, range(1, 31), duration_s=10) == []


def test_random_faults_do_find_check_then_act_applying_twice():
    def short() -> dict[str, Any]:
        return canonical(ledger={"inbox": "check_then_act"}, drain_s=30)
    assert failing_seeds(short, random_inbox_faults, range(1, 31), duration_s=10) != []
