"""What a user does on the playground page, shared by the browser tests."""

from __future__ import annotations


def click_node(page, node: str) -> None:
    """Click a node on the canvas and wait for its menu."""
    box = page.locator(f'[data-node-id="{node}"] .node-body').bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("[data-context-menu]:not([hidden])")


def sim_time(page) -> float:
    """The run's clock, in sim seconds."""
    return float(page.text_content("[data-clock-now]").split()[0])


def finish_with_checks_green(page, count: int, timeout_ms: float = 120_000) -> None:
    """Speed the run up to its end and see every one of its ``count`` checks pass."""
    page.select_option("[data-speed]", "10")
    page.wait_for_selector('[data-run-controls][data-state="ended"]', timeout=timeout_ms)
    assert page.locator("[data-checks] [data-check]").count() == count
    assert page.locator('[data-checks] [data-check][data-ok="true"]').count() == count
    assert f"{count}/{count} pass" in page.text_content("[data-checks-state]")
