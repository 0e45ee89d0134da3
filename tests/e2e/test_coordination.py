"""Coordination in a real browser, tried as a new user would: open leader election, run it,
crash the leader by clicking it, pause a follower and cut another off, and watch a new
leader take over with a higher term while the run's checks stay green. Then a broken
variant (votes kept in memory only) whose check turns red, and its counterexample, which
takes the canvas back to the moment two nodes led the same term."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.e2e.steps import click_node, finish_with_checks_green, sim_time

pytestmark = pytest.mark.slow

SHOTS = "/tmp/e2e-coordination-{}.png"


def role_of(page, node: str) -> tuple[str | None, int | None]:
    el = page.locator(f'.node[data-node-id="{node}"]')
    term = el.get_attribute("data-term")
    return el.get_attribute("data-role"), (int(term) if term else None)


def leaders(page) -> list[tuple[str, int]]:
    return page.evaluate("""() => [...document.querySelectorAll('[data-node-id][data-role=leader]')]
        .map((el) => [el.dataset.nodeId, Number(el.dataset.term)])""")




def badge(page, node: str, name: str) -> str | None:
    """The text of a node's badge (None when it has none)."""
    el = page.locator(f'[data-node-id="{node}"] [data-badge="{name}"]')
    return el.get_attribute("data-text") if el.count() else None


def commit_indexes(page) -> dict[str, int]:
    return page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('[data-node-id] [data-badge=commit]')].map((el) =>
            [el.closest('[data-node-id]').dataset.nodeId,
             Number(/^commit (\\d+)/.exec(el.dataset.text)[1])]))""")


def test_crash_the_leader_by_clicking_it_and_a_new_leader_takes_over(page):
    page.goto("/p/leader-election")
    page.wait_for_selector('[data-node-id="n5"]')
    # The cluster's peer mesh: 5 members, 10 faint links, no edges.
    assert page.locator("[data-peer]").count() == 10
    assert page.locator("[data-checks]").is_visible()

    page.click('[data-action="run"]')
    page.wait_for_selector('[data-run-controls][data-state="running"]', timeout=15_000)
    page.wait_for_function("() => document.querySelector('[data-node-id][data-role=leader]')",
                           timeout=15_000)
    ((old, old_term),) = leaders(page)
    assert old_term >= 1
    assert "at the end" in page.text_content("[data-checks-card]")
    page.wait_for_function("() => parseFloat(document.querySelector('[data-clock-now]')"
                           ".textContent) > 1.5", timeout=15_000)
    page.screenshot(path=SHOTS.format("1-leader"))

    # A click on the leader offers what can be done to it; crash it.
    click_node(page, old)
    menu = page.locator("[data-context-menu]")
    assert menu.locator("[data-fault=crash]").is_visible()
    assert menu.locator("[data-fault=pause]").is_visible()
    assert menu.locator("[data-fault=partition]").is_visible()
    crashed_at = sim_time(page)
    menu.locator("[data-fault=crash]").click()
    page.wait_for_selector(f'[data-node-id="{old}"].is-down', timeout=10_000)
    page.wait_for_function(
        "([old, term]) => [...document.querySelectorAll('[data-node-id][data-role=leader]')]"
        ".some((el) => el.dataset.nodeId !== old && Number(el.dataset.term) > term)",
        arg=[old, old_term], timeout=10_000)
    new, new_term = next((n, t) for n, t in leaders(page) if n != old)
    assert new_term > old_term
    assert page.locator(f'[data-node-id="{new}"] [data-badge=role]').get_attribute(
        "data-text") == f"leader · term {new_term}"
    assert page.locator(f'[data-node-id="{old}"] [data-badge=down]').count() == 1
    assert sim_time(page) < 10, "the user's crash came before the scenario's own at 10 s"
    page.screenshot(path=SHOTS.format("2-new-leader"))

    # Pause one follower (greyed) and cut another off (its links dashed red) for 5 s.
    followers = [f"n{i}" for i in range(1, 6) if f"n{i}" not in (old, new)]
    click_node(page, followers[0])
    menu.locator("[data-fault=pause]").click()
    page.wait_for_selector(f'[data-node-id="{followers[0]}"].is-paused', timeout=10_000)
    click_node(page, followers[1])
    menu.locator("[data-fault=partition]").click()
    page.wait_for_function("(n) => document.querySelectorAll(`[data-peer].is-cut`).length === 4"
                           " && [...document.querySelectorAll('[data-peer].is-cut')]"
                           ".every((l) => l.dataset.a === n || l.dataset.b === n)",
                           arg=followers[1], timeout=10_000)
    page.screenshot(path=SHOTS.format("3-paused-and-cut"))
    assert crashed_at < sim_time(page)

    # To the end, faster: every check green, in the panel beside the charts.
    finish_with_checks_green(page, 3, timeout_ms=90_000)
    page.screenshot(path=SHOTS.format("4-checks-green"))

    # The replay page holds the interventions: crash, pause and cut-off are recorded.
    run_link = page.locator("[data-run-status] a").get_attribute("href")
    events = page.request.get(f"/api/runs/{run_link.rsplit('/', 1)[-1]}/events.jsonl").text()
    faults = [ev for ev in map(json.loads, events.splitlines()) if ev.get("k") == "fault"]
    mine = {(f["action"], f.get("node", f["target"])) for f in faults if f["action"] != "end"}
    assert ("crash", old) in mine and ("pause", followers[0]) in mine
    assert ("partition", followers[1]) in mine

    # ... and its replay shows the same: the crashed leader, the paused follower, the cut.
    page.goto(run_link)
    page.wait_for_selector('[data-run-controls][data-state="running"]', timeout=15_000)
    page.select_option("[data-speed]", "5")
    page.wait_for_selector(f'[data-node-id="{old}"].is-down', timeout=20_000)
    page.wait_for_selector(f'[data-node-id="{followers[0]}"].is-paused', timeout=20_000)
    page.wait_for_selector("[data-peer].is-cut", timeout=20_000)
    page.screenshot(path=SHOTS.format("5-replay"))
    page.select_option("[data-speed]", "10")
    page.wait_for_selector('[data-run-controls][data-state="ended"]', timeout=60_000)
    assert page.locator('[data-checks] [data-check][data-ok="true"]').count() == 3
    assert page.errors == []  # type: ignore[attr-defined]


def two_leaders_document() -> dict[str, Any]:
    """Votes kept in memory only (``durable_vote`` false): a follower that restarts forgets
    its vote and grants a second candidate the same term (the scenario of
    tests/patterns/test_leader_election.py, with its injections as scheduled faults)."""
    from patterns import catalog
    from patterns.run import prepare, simulate

    def canonical() -> dict[str, Any]:
        doc = catalog.get("leader-election").canonical()
        for node in doc["nodes"]:
            node["params"]["durable_vote"] = False
        return doc

    cut = {"at_s": 0, "until_s": 1, "target": "raft", "action": "partition",
           "groups": [["n4", "n5"]]}
    sim = simulate(prepare(canonical() | {"scenario": {"duration_s": 4, "seed": 3,
                                                        "faults": [cut]}}), trace="off")
    sim.advance(1000)
    leader = next(e["node"] for e in sim.records if e["k"] == "raft.leader")
    follower, other = [n for n in ("n1", "n2", "n3") if n != leader]
    sim.inject({"target": follower, "action": "crash"})
    sim.inject({"target": "raft", "action": "partition", "groups": [[leader, other]]})
    timer = sim.nodes["n4"].election_timer
    while (left := timer.remaining()) is None or left < 2:
        sim.advance(sim.now + 5)
    restart = math.floor(sim.now + left - 0.5) / 1000
    doc = canonical()
    doc["title"] = "Votes kept in memory only"
    doc["scenario"] = {"duration_s": 6, "seed": 3, "faults": [
        cut,
        {"at_s": 1, "until_s": restart, "target": follower, "action": "crash"},
        {"at_s": 1, "target": "raft", "action": "partition", "groups": [[leader, other]]},
    ]}
    return doc


def test_a_broken_vote_turns_a_check_red_and_its_counterexample_shows_the_moment(page):
    doc = two_leaders_document()
    page.goto("/p/leader-election")
    page.wait_for_selector('[data-node-id="n5"]')
    page.set_input_files("[data-import-file]", files=[{
        "name": "two-leaders.json", "mimeType": "application/json",
        "buffer": json.dumps(doc).encode()}])
    page.wait_for_function("() => document.querySelector('[data-clock-total]').textContent"
                           ".startsWith('6')")
    page.select_option("[data-speed]", "5")
    page.click('[data-action="run"]')
    page.wait_for_selector('[data-run-controls][data-state="ended"]', timeout=60_000)
    failed = page.locator('[data-checks] [data-check="at most one leader per term"]')
    assert failed.get_attribute("data-ok") == "false"
    assert "/3 pass" in page.text_content("[data-checks-state]")
    button = failed.locator("[data-action=counterexample]")
    assert "term 1" in button.inner_text()
    t_ms = float(button.get_attribute("data-t"))
    nodes = json.loads(button.get_attribute("data-nodes"))
    assert len(nodes) == 2

    button.click()
    # The clock and the charts go to that moment; the two nodes are marked, both leading
    # term 1 as the state was then.
    assert sim_time(page) == pytest.approx(t_ms / 1000, abs=0.06)
    marked = page.evaluate("() => [...document.querySelectorAll('[data-node-id].is-highlighted')]"
                           ".map((el) => el.dataset.nodeId).sort()")
    assert marked == sorted(nodes)
    for node in nodes:
        assert role_of(page, node) == ("leader", 1)
    seek = page.evaluate("() => (document.querySelector('[data-chart=latency]').layout.shapes"
                         " || []).filter((s) => s.name === 'seek').map((s) => s.x0)")
    assert seek == [pytest.approx(t_ms / 1000)]
    page.screenshot(path=SHOTS.format("6-counterexample"))

    page.click("[data-action=seek-end]")
    assert page.locator("[data-node-id].is-highlighted").count() == 0
    assert page.errors == []  # type: ignore[attr-defined]


def test_consensus_survives_a_leader_crashed_by_clicking_it(page):
    page.goto("/p/consensus")
    page.wait_for_selector('[data-node-id="n5"]')
    page.select_option("[data-speed]", "2")
    page.click('[data-action="run"]')
    page.wait_for_function("() => document.querySelector('[data-node-id][data-role=leader]')",
                           timeout=15_000)
    ((old, old_term),) = leaders(page)
    click_node(page, old)
    page.locator("[data-context-menu] [data-fault=crash]").click()
    page.wait_for_function(
        "([old, term]) => [...document.querySelectorAll('[data-node-id][data-role=leader]')]"
        ".some((el) => el.dataset.nodeId !== old && Number(el.dataset.term) > term)",
        arg=[old, old_term], timeout=10_000)
    new = next(n for n, _ in leaders(page) if n != old)
    page.screenshot(path=SHOTS.format("7-consensus-new-leader"))
    # Each live member shows its commit index under it; the new leader's keeps rising.
    page.wait_for_function("(old) => [...document.querySelectorAll('[data-node-id^=n]')]"
                           ".filter((el) => el.dataset.nodeId !== old && "
                           "el.querySelector('[data-badge=commit]')).length === 4",
                           arg=old, timeout=10_000)
    before = commit_indexes(page)
    assert before[new] > 0 and all(text.startswith("commit ") for text in
                                   (badge(page, n, "commit") for n in before))
    page.wait_for_function(
        "([node, was]) => Number(/^commit (\\d+)/.exec(document.querySelector("
        "`[data-node-id=\"${node}\"] [data-badge=commit]`).dataset.text)[1]) > was",
        arg=[new, before[new]], timeout=10_000)
    page.select_option("[data-speed]", "10")
    page.wait_for_selector('[data-run-controls][data-state="ended"]', timeout=60_000)
    checks = page.locator("[data-checks] [data-check]")
    assert checks.count() >= 5
    assert page.locator('[data-checks] [data-check][data-ok="false"]').count() == 0
    page.screenshot(path=SHOTS.format("8-consensus-checks-green"))


def test_the_lock_service_shows_its_holder_and_fencing_token(page):
    page.goto("/p/distributed-lock")
    page.wait_for_selector('[data-node-id="locks"]')
    page.select_option("[data-speed]", "2")
    page.click('[data-action="run"]')
    # The service names the holder and its token; that worker holds the same token.
    page.wait_for_function(
        """() => {
            const lock = document.querySelector('[data-node-id=locks] [data-badge=lock]');
            const m = lock && /^held by (\\w+) · token (\\d+)$/.exec(lock.dataset.text);
            if (!m) return false;
            const state = document.querySelector(`[data-node-id="${m[1]}"] [data-badge=state]`);
            return state && state.dataset.text === `HOLDING(${m[2]})`;
        }""", timeout=15_000)
    held = badge(page, "locks", "lock")
    first = int(held.rsplit(" ", 1)[1])
    assert first >= 1
    page.screenshot(path=SHOTS.format("9-lock-holder"))
    # Tokens only rise as the lock passes from worker to worker.
    page.wait_for_function(
        "(first) => { const m = /token (\\d+)$/.exec(document.querySelector("
        "'[data-node-id=locks] [data-badge=lock]').dataset.text); return m && +m[1] > first; }",
        arg=first, timeout=15_000)
    page.select_option("[data-speed]", "10")
    page.wait_for_selector('[data-run-controls][data-state="ended"]', timeout=60_000)
    final = badge(page, "locks", "lock")
    assert final is not None and int(final.rsplit(" ", 1)[1]) > first
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_lock_without_fencing_turns_its_check_red_with_a_counterexample(page):
    baseline = page.request.get("/api/patterns/distributed-lock").json()["baseline"]
    saved = page.request.post("/api/topologies", data=json.dumps(baseline),
                              headers={"Content-Type": "application/json"}).json()
    page.goto(saved["url"])
    page.wait_for_selector("[data-node-id]")
    page.select_option("[data-speed]", "10")
    page.click('[data-action="run"]')
    page.wait_for_selector('[data-run-controls][data-state="ended"]', timeout=60_000)
    failed = page.locator('[data-checks] [data-check="no stale write accepted"]')
    assert failed.get_attribute("data-ok") == "false"
    assert failed.locator("[data-action=counterexample]").count() == 1
    page.screenshot(path=SHOTS.format("10-lock-unfenced-red"))
