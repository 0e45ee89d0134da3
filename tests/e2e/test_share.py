"""Sharing in a real browser against the real stack: a link saved in one browser opens the
same topology in another and runs to the same summary; a fork says where it came from;
files go out and come in; and markup in a title or label is shown as text, never run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patterns.run import prepare
from playground.models import Scenario

pytestmark = pytest.mark.slow

MARKUP_TITLE = '<img src=x onerror="window.__xss=1">'
MARKUP_LABEL = "<script>window.__xss=1</script>"


def new_page(browser, stack):
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  base_url=stack.url, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return context, page


def download_topology(page) -> dict:
    page.click("[data-file-menu] summary")
    with page.expect_download() as info:
        page.click('[data-action="export-topology"]')
    return json.loads(Path(info.value.path()).read_text())


def normalised(page, doc: dict) -> dict:
    response = page.request.post("/api/topologies/validate", data=json.dumps(doc),
                                 headers={"Content-Type": "application/json"})
    assert response.ok, response.text()
    return response.json()["document"]


def canvas(page) -> tuple[list, list]:
    nodes = page.eval_on_selector_all("[data-node-id]", "els => els.map(e => e.dataset.nodeId)")
    edges = page.eval_on_selector_all(
        "[data-edge-id]", "els => els.map(e => [e.dataset.from, e.dataset.to])")
    return sorted(nodes), sorted(edges)


def run_to_end(page) -> dict:
    """Run what is on the canvas (fast playback) and return GET /api/runs/<id>."""
    page.select_option("[data-speed]", "10")
    page.click('[data-action="run"]')
    page.wait_for_selector('[data-run-controls][data-state="ended"]', timeout=60_000)
    href = page.get_attribute("[data-run-status] a", "href")
    return page.request.get(f"/api/runs/{href.rsplit('/', 1)[1]}").json()


def test_a_saved_link_opens_the_same_topology_elsewhere_and_runs_the_same(browser, stack):
    context_a, a = new_page(browser, stack)
    a.goto("/p/request-response")
    a.wait_for_selector('[data-node-id="api"]')
    # Change a parameter, the seed and the duration through the page.
    a.click('[data-node-id="api"]')
    a.fill('[data-params-form] [data-param="workers"]', "7")
    a.press('[data-params-form] [data-param="workers"]', "Tab")
    a.click('[data-tab="about"]')
    a.fill('[data-scenario-field="seed"]', "1234")
    a.press('[data-scenario-field="seed"]', "Tab")
    a.fill('[data-scenario-field="duration_s"]', "8")
    a.press('[data-scenario-field="duration_s"]', "Tab")
    doc_a = download_topology(a)
    assert doc_a["scenario"]["seed"] == 1234 and doc_a["scenario"]["duration_s"] == 8
    assert next(n for n in doc_a["nodes"] if n["id"] == "api")["params"]["workers"] == 7

    a.click('[data-action="save"]')
    link = a.wait_for_selector("[data-saved-link]").get_attribute("href")
    assert link.startswith("/t/") and len(link) >= 3 + 22

    context_b, b = new_page(browser, stack)  # a fresh browser: no shared state
    b.goto(link)
    b.wait_for_selector('[data-node-id="api"]')
    b.wait_for_function("() => document.querySelector('[data-scenario-field=seed]').value")
    assert canvas(b) == canvas(a)
    assert b.input_value('[data-scenario-field="seed"]') == "1234"
    b.click('[data-node-id="api"]')
    assert b.input_value('[data-params-form] [data-param="workers"]') == "7"
    # The same document, once defaults are filled in (a saved one is stored validated).
    doc_b = normalised(b, download_topology(b))
    doc_a = normalised(a, doc_a)
    assert doc_b["nodes"] == doc_a["nodes"] and doc_b["edges"] == doc_a["edges"]
    assert doc_b["scenario"] == doc_a["scenario"]

    run_a, run_b = run_to_end(a), run_to_end(b)
    assert run_a["id"] != run_b["id"] and run_a["status"] == run_b["status"] == "finished"
    assert run_a["seed"] == run_b["seed"] == 1234
    assert run_a["summary"] == run_b["summary"]

    # The run's own page replays it and says it is verified.
    b.goto(f"/r/{run_b['id']}")
    # The verdict shows in the Pattern tab and in the Results tab, whichever is open (the
    # page opens Results when a replay ends, which may come before or after the verdict).
    b.wait_for_selector('[data-verify] [data-verified="true"]:visible', timeout=30_000)
    assert "byte-identical" in b.text_content("[data-verify]")

    # Fork from the opened link: a new link that says where it came from.
    b.goto(link)
    b.wait_for_selector('[data-node-id="api"]')
    b.click('[data-action="save"]')
    fork = b.wait_for_selector("[data-saved-link]").get_attribute("href")
    assert fork != link
    assert "Forked" in b.text_content("[data-banner]")
    b.goto(fork)
    assert b.get_attribute("[data-forked-from] a", "href") == link
    assert not a.errors and not b.errors
    context_a.close()
    context_b.close()


def test_files_out_and_in(browser, stack, tmp_path):
    context, page = new_page(browser, stack)
    page.goto("/p/request-response")
    page.wait_for_selector('[data-node-id="api"]')
    nodes = canvas(page)

    # A bad file changes nothing and says what is wrong.
    for name, text, expected in [
        ("broken.json", "{nope", "not JSON"),
        ("bad.json", json.dumps({"nodes": [{"id": "a", "kind": "warp"}]}), "nodes[0].kind"),
    ]:
        path = tmp_path / name
        path.write_text(text)
        page.set_input_files("[data-import-file]", str(path))
        page.wait_for_selector("[data-banner].tone-error")
        assert expected in page.text_content("[data-banner]")
        assert canvas(page) == nodes
        page.click('[data-banner] [data-action="close-banner"]')

    # A good one replaces the canvas.
    good = tmp_path / "two.json"
    good.write_text(json.dumps({"title": "Two", "nodes": [
        {"id": "c", "kind": "client", "x": 100, "y": 100},
        {"id": "s", "kind": "service", "x": 400, "y": 100}],
        "edges": [{"id": "e1", "from": "c", "to": "s"}],
        "scenario": {"duration_s": 3, "seed": 5}}))
    page.set_input_files("[data-import-file]", str(good))
    page.wait_for_selector("[data-banner].tone-ok")
    assert canvas(page) == (["c", "s"], [["c", "s"]])
    assert page.input_value('[data-scenario-field="seed"]') == "5"

    # A run's events and a chart go out as files.
    page.select_option("[data-speed]", "5")
    page.click('[data-action="run"]')
    page.wait_for_selector('[data-run-controls][data-state="ended"]', timeout=30_000)
    page.click("[data-file-menu] summary")
    with page.expect_download() as info:
        page.click('[data-export="csv"]')
    assert info.value.suggested_filename.endswith(".csv")
    header = Path(info.value.path()).read_text().splitlines()[0]
    assert header == "t,k,node,edge,data"
    page.hover("[data-chart=latency]")
    with page.expect_download() as info:
        page.click('[data-chart-name="latency"]')
    assert info.value.suggested_filename.endswith(".png")
    assert Path(info.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not page.errors
    context.close()


def assert_text_not_markup(page, text: str) -> None:
    page.wait_for_timeout(300)  # an onerror would have fired by now
    assert page.evaluate("() => window.__xss") is None
    assert page.get_by_text(text, exact=False).first.is_visible()


def test_markup_in_titles_and_labels_is_shown_as_text_and_never_runs(browser, stack):
    document = prepare("request-response")
    document["title"] = MARKUP_TITLE
    document["nodes"][1]["label"] = MARKUP_LABEL
    Scenario.objects.create(pattern="request-response", title=MARKUP_TITLE,
                            description=MARKUP_LABEL, document=document, published=True)
    context, page = new_page(browser, stack)
    saved = page.request.post("/api/topologies", data=json.dumps(document),
                              headers={"Content-Type": "application/json"}).json()
    run = page.request.post("/api/runs", data=json.dumps({"slug": saved["slug"], "speed": 10}),
                            headers={"Content-Type": "application/json"}).json()

    page.goto("/")
    assert_text_not_markup(page, MARKUP_TITLE)
    assert_text_not_markup(page, MARKUP_LABEL)  # the card's summary

    for url in (saved["url"], run["url"]):
        page.goto(url)
        page.wait_for_selector("[data-node-id]")
        assert page.text_content("[data-title]") == MARKUP_TITLE
        assert_text_not_markup(page, MARKUP_TITLE)
        node = document["nodes"][1]["id"]
        label = page.text_content(f'[data-node-id="{node}"] .node-label')
        assert label.startswith("<script>")  # drawn as text (clipped to fit the node)
        page.click(f'[data-node-id="{node}"]')
        assert page.input_value('[data-params-form] [data-field="label"]') == MARKUP_LABEL
        assert page.evaluate("() => window.__xss") is None

    # A label typed into the playground is text too.
    page.goto("/p/request-response")
    page.click('[data-node-id="api"]')
    page.fill('[data-params-form] [data-field="label"]', MARKUP_TITLE)
    page.press('[data-params-form] [data-field="label"]', "Tab")
    page.wait_for_function(
        "() => document.querySelector('[data-node-id=api] .node-label').textContent"
        ".startsWith('<img')")
    assert page.evaluate("() => window.__xss") is None
    assert not page.errors
    context.close()
