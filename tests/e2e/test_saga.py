"""A saga in a real browser, tried as a new user would: open the saga, run it, crash the
orchestrator by clicking it, see where the open sagas are and the compensations under
way on the participants, watch the orchestrator read its sagas back when it returns, and
finish with every check green."""

from __future__ import annotations

import json

import pytest

from tests.e2e.steps import click_node, finish_with_checks_green, sim_time

pytestmark = pytest.mark.slow

SHOTS = "/tmp/e2e-saga-{}.png"




def test_crash_the_orchestrator_by_clicking_it_and_every_saga_still_ends(page):
    page.goto("/p/saga")
    page.wait_for_selector('[data-node-id="shipping"]')
    assert page.locator("[data-checks]").is_visible()

    page.click('[data-action="run"]')
    page.wait_for_selector('[data-run-controls][data-state="running"]', timeout=15_000)
    # Sagas under way: the participants say how many are at their step, and compensations
    # (payment declines one in five) show as sagas undoing a step.
    page.wait_for_selector('[data-node-id="payment"] [data-badge=flows]', timeout=15_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-badge=flows]')]"
        ".some((b) => /undoing/.test(b.dataset.text))", timeout=30_000)
    page.screenshot(path=SHOTS.format("1-running"))

    # Crash the orchestrator from the canvas.
    click_node(page, "saga")
    page.locator("[data-context-menu] [data-fault=crash]").click()
    page.wait_for_selector('[data-node-id="saga"].is-down', timeout=10_000)
    crashed_at = sim_time(page)
    assert crashed_at < 20, "the user's crash came before the scenario's own at 20 s"
    page.screenshot(path=SHOTS.format("2-orchestrator-down"))

    # Back after 10 s, it reads its open sagas from its log and re-sends their commands.
    page.wait_for_selector('[data-node-id="saga"]:not(.is-down)', timeout=30_000)
    page.click('[data-tab="log"]')
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-log] li')]"
        ".some((li) => /recovered \\d+ flows from the log/.test(li.textContent))",
        timeout=15_000)
    page.screenshot(path=SHOTS.format("3-recovered"))

    # Inventory can be crashed where it hurts: after its commit, before its reply.
    click_node(page, "inventory")
    point = page.locator("[data-context-menu] [data-fault=crash-point]")
    assert point.get_attribute("data-point") == "after_commit_before_reply"
    point.click()
    page.wait_for_selector('[data-node-id="inventory"].is-down', timeout=15_000)
    page.screenshot(path=SHOTS.format("3b-inventory-crashed-after-commit"))

    finish_with_checks_green(page, 4, timeout_ms=120_000)
    page.screenshot(path=SHOTS.format("4-checks-green"))

    # The crash is recorded on the run, and the summary counts no saga left half done.
    run_link = page.locator("[data-run-status] a").get_attribute("href")
    run_id = run_link.rsplit("/", 1)[-1]
    events = page.request.get(f"/api/runs/{run_id}/events.jsonl").text()
    faults = [ev for ev in map(json.loads, events.splitlines()) if ev.get("k") == "fault"]
    assert any(f["action"] == "crash" and f["target"] == "saga"
               and f["at_s"] == pytest.approx(crashed_at, abs=1.0) for f in faults)
    assert any(f.get("point") == "after_commit_before_reply" and f["target"] == "inventory"
               for f in faults)
    summary = page.request.get(f"/api/runs/{run_id}").json()["summary"]
    assert summary["pattern"]["sagas_partial"] == 0
    assert summary["pattern"]["duplicates_ignored"] >= 1, "the re-sent reservation, once"
    assert summary["pattern"]["sagas_compensated"] > 100
    assert page.errors == []  # type: ignore[attr-defined]
