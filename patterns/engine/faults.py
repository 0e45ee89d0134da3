"""The fault vocabulary: what can be done to a node or an edge, at a time, until a time.

Each action has an *apply* and, when the fault has ``until_s``, a *revert*. Faults come
from the document's ``scenario.faults`` or are injected live; every one is an event
(``fault``), so a replay of the stream shows what happened and when.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from patterns.engine import messages as m

if TYPE_CHECKING:
    from patterns.engine.simulation import Simulation

NODE_ACTIONS = ("crash", "recover", "hang", "error_rate", "slow", "rate", "set")
EDGE_ACTIONS = ("drop_rate", "partition", "slow")
ACTIONS = tuple(dict.fromkeys(NODE_ACTIONS + EDGE_ACTIONS))
# Actions whose value is a number, with its bounds.
VALUE_BOUNDS: dict[str, tuple[float, float]] = {
    "error_rate": (0.0, 1.0),
    "slow": (0.0, 10_000.0),
    "drop_rate": (0.0, 1.0),
    "rate": (0.0, 1_000.0),
}
ERROR_CLASSES = (m.TRANSIENT, m.BUSINESS)

Revert = Callable[[], None]


def apply(sim: Simulation, fault: dict[str, Any]) -> Revert | None:
    """Apply ``fault`` now; returns what undoes it (None when nothing can)."""
    action = fault["action"]
    target = fault["target"]
    value = fault.get("value")
    if target in sim.nodes:
        return _apply_node(sim, fault, action, target, value)
    return _apply_edge(sim, action, target, value)


def _apply_node(sim: Simulation, fault: dict[str, Any], action: str, target: str,
                value: Any) -> Revert | None:
    node = sim.nodes[target]
    if action == "crash":
        node.crash()
        return node.recover
    if action == "recover":
        node.recover()
        return None
    if action == "hang":
        node.hung = True

        def unhang() -> None:
            node.hung = False
        return unhang
    if action == "error_rate":
        before = (node.fault_error_rate, node.fault_error_class)
        node.fault_error_rate = float(value)
        node.fault_error_class = fault.get("error_class") or m.TRANSIENT

        def clear() -> None:
            node.fault_error_rate, node.fault_error_class = before
        return clear
    if action == "slow":
        before_slow = node.slow
        node.slow = float(value)

        def unslow() -> None:
            node.slow = before_slow
        return unslow
    if action == "rate":
        set_rate = getattr(node, "set_rate_multiplier", None)
        if set_rate is None:
            raise ValueError(f"{target} is a {node.KIND}: only clients take 'rate'")
        set_rate(float(value))
        return lambda: set_rate(1.0)
    if action == "set":
        name = fault["param"]
        old = node.p[name]
        node.set_param(name, value)
        return lambda: node.set_param(name, old)
    # Edge actions aimed at a node act on every edge touching it (e.g. isolate it).
    edges = [e.id for e in node.in_edges + node.out_edges]
    reverts = [r for r in (_apply_edge(sim, action, e, value) for e in edges) if r]

    def undo_all() -> None:
        for revert in reverts:
            revert()
    return undo_all


def _apply_edge(sim: Simulation, action: str, target: str, value: Any) -> Revert | None:
    edge = sim.network.edges[target]
    if action == "partition":
        edge.cut = True

        def heal() -> None:
            edge.cut = False
        return heal
    if action == "drop_rate":
        before = edge.drop_rate
        edge.drop_rate = float(value)

        def restore() -> None:
            edge.drop_rate = before
        return restore
    if action == "slow":
        before_dist = edge.latency_dist
        edge.latency = before_dist.scaled(float(value)).sampler(edge.rng)

        def unslow() -> None:
            edge.latency = before_dist.sampler(edge.rng)
        return unslow
    raise ValueError(f"action {action!r} does not apply to edge {target}")


def describe(fault: dict[str, Any]) -> str:
    """One sentence for people: what the fault does."""
    action, target, value = fault["action"], fault["target"], fault.get("value")
    until = fault.get("until_s")
    span = f" until {until:g} s" if until is not None else ""
    if action == "crash":
        return f"{target} crashed{span}"
    if action == "recover":
        return f"{target} recovered"
    if action == "hang":
        return f"{target} hangs (takes calls, never answers){span}"
    if action == "error_rate":
        return f"{target} fails {value:.0%} of its work{span}"
    if action == "slow":
        return f"{target} is {value:g}× slower{span}"
    if action == "drop_rate":
        return f"{target} drops {value:.0%} of messages{span}"
    if action == "partition":
        return f"{target} is cut off{span}"
    if action == "rate":
        return f"{target} sends {value:g}× its load{span}"
    return f"{target}.{fault.get('param')} set to {value}{span}"
