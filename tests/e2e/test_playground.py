"""A learner's first session, in a real browser against the real stack: open a pattern,
add a service by dragging it from the palette, connect it, run, watch messages move and the
charts fill, pause and resume, and read the summary."""

import pytest

pytestmark = pytest.mark.slow


def dots_on_canvas(page) -> int:
    """How many pixels the message overlay has painted right now."""
    return page.evaluate("""() => {
        const c = document.querySelector('[data-dots]');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
    }""")


def chart_points(page, chart: str) -> int:
    return page.evaluate(
        "(name) => (document.querySelector(`[data-chart=${name}]`).data || [])"
        ".reduce((n, trace) => n + (trace.x ? trace.x.length : 0), 0)", chart)


def test_build_run_pause_resume_and_read_the_summary(page):
    page.goto("/p/request-response")
    page.wait_for_selector('[data-node-id="api"]')
    nodes_before = page.locator("[data-node-id]").count()

    # Drag a service from the palette onto the canvas, then connect api → it.
    stage = page.locator("[data-editor]")
    box = stage.bounding_box()
    page.locator('[data-palette-kind="service"]').drag_to(
        stage, target_position={"x": box["width"] * 0.6, "y": box["height"] * 0.8})
    assert page.locator("[data-node-id]").count() == nodes_before + 1
    new_node = page.locator('[data-node-id][data-kind="service"]').last
    new_id = new_node.get_attribute("data-node-id")
    assert new_id not in ("api",)
    edges_before = page.locator("[data-edge-id]").count()
    port = page.locator('[data-node-id="api"] [data-port="out"]').bounding_box()
    target = new_node.bounding_box()
    page.mouse.move(port["x"] + port["width"] / 2, port["y"] + port["height"] / 2)
    page.mouse.down()
    page.mouse.move(target["x"] + target["width"] / 2, target["y"] + target["height"] / 2,
                    steps=12)
    page.mouse.up()
    assert page.locator("[data-edge-id]").count() == edges_before + 1
    assert page.locator(f'[data-edge-id][data-from="api"][data-to="{new_id}"]').count() == 1

    # Run it, a little faster than real time.
    page.select_option("[data-speed]", "5")
    page.click('[data-action="run"]')
    page.wait_for_selector('[data-run-controls][data-state="running"]', timeout=15_000)
    page.wait_for_function("() => parseFloat(document.querySelector('[data-clock-now]')"
                           ".textContent) > 3", timeout=20_000)
    assert dots_on_canvas(page) > 0, "messages move along the edges"
    points = chart_points(page, "latency")
    assert points > 0, "the charts have points"
    page.wait_for_function(
        "(n) => document.querySelector('[data-chart=latency]').data"
        ".reduce((m, t) => m + t.x.length, 0) > n", arg=points, timeout=10_000)

    # Pause: the simulation clock stops; resume: it goes on.
    page.click('[data-action="pause"]')
    page.wait_for_timeout(400)
    held = page.text_content("[data-clock-now]")
    page.wait_for_timeout(1200)
    assert page.text_content("[data-clock-now]") == held
    page.click('[data-action="pause"]')
    page.wait_for_function("(held) => document.querySelector('[data-clock-now]').textContent"
                           " !== held", arg=held, timeout=10_000)

    # Finish quickly, then read the summary.
    page.select_option("[data-speed]", "10")
    page.wait_for_selector('[data-run-controls][data-state="ended"]', timeout=60_000)
    page.click('[data-tab="results"]')
    results = page.locator("[data-results]")
    assert "11,990" in results.inner_text() or "requests" in results.inner_text().lower()
    assert page.locator("[data-results] :text('every request ends in exactly one outcome')"
                        ).count() == 1
    page.screenshot(path="/tmp/e2e-playground.png")
    assert page.errors == []  # type: ignore[attr-defined]


def test_library_lists_the_patterns_and_opens_one(page):
    page.goto("/")
    assert page.locator('[data-pattern="circuit-breaker"]').count() == 1
    page.click('[data-pattern="circuit-breaker"] a')
    page.wait_for_selector('[data-node-id]')
    assert "/p/circuit-breaker" in page.url
