"""The fault vocabulary: what can be done to a node or an edge, at a time, until a time.

Each action has an *apply* and, when the fault has ``until_s``, a *revert*. Faults come
from the document's ``scenario.faults`` or are injected live; every one is an event
(``fault``), so a replay of the stream shows what happened and when.

A target is a node, an edge, a cluster (a ``partition`` into ``groups``), or a role
selector, ``<role>:<cluster>`` (``leader:raft``), which the simulation resolves to a node
when the fault fires and records on the fault event, so a replay hits the same node.

``partition`` cuts links. Aimed at a node it isolates it (every edge touching it and its
peer links); at an edge, that edge; at a cluster, it splits the cluster into ``groups``
(node ids; members listed in no group form one more group) and cuts every peer link and
edge between nodes of different groups. ``mode`` says what a cut does to a message:
``drop`` it (default) or ``hold`` it until the heal. ``direction`` is ``both`` (default),
``outbound`` (only what leaves the node, or the first group, is cut) or ``inbound`` (only
what reaches it). ``pause`` freezes a pausable node (memory kept) until ``until_s``;
``clock_skew`` moves a node's clock by ``offset_ms`` and sets its ``rate``. ``crash`` with a
``point`` (one the node's kind declares in ``CRASH_POINTS``) arms the node: it crashes the
next time it reaches that point, and recovers ``down_s`` later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from patterns.engine import messages as m

if TYPE_CHECKING:
    from patterns.engine.network import Edge
    from patterns.engine.node import Node
    from patterns.engine.simulation import Simulation

NODE_ACTIONS = ("crash", "recover", "hang", "error_rate", "slow", "rate", "set", "pause",
                "clock_skew")
PARTITION_MODES = ("drop", "hold")
DIRECTIONS = ("both", "outbound", "inbound")
MAX_CLOCK_OFFSET_MS = 86_400_000.0  # a day
CLOCK_RATE_BOUNDS = (0.001, 1000.0)
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
# How long a node crashed at a named point stays down unless the fault says (``down_s``).
DEFAULT_DOWN_S = 1.0

Revert = Callable[[], None]


def is_selector(target: str) -> bool:
    """Whether a target is a role selector (``leader:<cluster>``), not an id."""
    return ":" in target


def apply(sim: Simulation, fault: dict[str, Any]) -> Revert | None:
    """Apply ``fault`` now; returns what undoes it (None when nothing can)."""
    action = fault["action"]
    target = fault["target"]
    value = fault.get("value")
    if action == "partition":
        return _partition(sim, fault)
    if target in sim.nodes:
        return _apply_node(sim, fault, action, target, value)
    return _apply_edge(sim, action, target, value)


def _partition(sim: Simulation, fault: dict[str, Any]) -> Revert:
    """Cut links as the module docstring says; the revert heals exactly these cuts."""
    target: str = fault["target"]
    hold = fault.get("mode") == "hold"
    direction = fault.get("direction") or "both"
    if target in sim.clusters:
        cluster = sim.clusters[target]
        groups = [list(g) for g in fault.get("groups") or []]
        listed = {n for g in groups for n in g}
        rest = [n.id for n in cluster.members if n.id not in listed]
        if rest:
            groups.append(rest)
        side = {n: i for i, g in enumerate(groups) for n in g}

        def blocked(a: str, b: str) -> bool:
            if a not in side or b not in side or side[a] == side[b]:
                return False
            if direction == "outbound":
                return side[a] == 0
            if direction == "inbound":
                return side[b] == 0
            return True
        members = list(side)
    elif target in sim.nodes:
        def blocked(a: str, b: str) -> bool:
            if direction == "outbound":
                return a == target
            if direction == "inbound":
                return b == target
            return target in (a, b)
        members = [target]
    else:
        edge = sim.network.edges[target]
        request, reply = direction != "inbound", direction != "outbound"
        edge.add_cut(request, reply, hold)
        return lambda: edge.remove_cut(request, reply, hold, sim.network)
    return _cut(sim, members, blocked, hold)


def _cut(sim: Simulation, members: Iterable[str], blocked: Callable[[str, str], bool],
         hold: bool) -> Revert:
    """Cut every peer link and edge leg from a to b where ``blocked(a, b)``."""
    ids = set(members)
    links = []
    for cluster in sim.clusters.values():
        for src, out in cluster.links.items():
            for dst, link in out.items():
                if (src in ids or dst in ids) and blocked(src, dst):
                    link.add_cut(hold)
                    links.append(link)
    edges: list[tuple[Edge, bool, bool]] = []
    for edge in sim.network.edges.values():
        a, b = edge.src.id, edge.dst.id
        request, reply = blocked(a, b), blocked(b, a)
        if request or reply:
            edge.add_cut(request, reply, hold)
            edges.append((edge, request, reply))

    def heal() -> None:
        for link in links:
            link.remove_cut(hold)
        for edge, request, reply in edges:
            edge.remove_cut(request, reply, hold, sim.network)
    return heal


def _apply_node(sim: Simulation, fault: dict[str, Any], action: str, target: str,
                value: Any) -> Revert | None:
    node = sim.nodes[target]
    if action == "crash" and fault.get("point"):
        point = fault["point"]
        node.arm_crash(point, float(fault.get("down_s") or DEFAULT_DOWN_S) * 1000.0)
        return lambda: node.disarm_crash(point)
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
        def set_errors(errors: tuple[float, str]) -> None:
            node.fault_error_rate, node.fault_error_class = errors
        return _layer(node, "error_rate", (node.fault_error_rate, node.fault_error_class),
                      (float(value), fault.get("error_class") or m.TRANSIENT), set_errors)
    if action == "slow":
        def set_slow(factor: float) -> None:
            node.slow = factor
        return _layer(node, "slow", node.slow, float(value), set_slow)
    if action == "rate":
        set_rate = getattr(node, "set_rate_multiplier", None)
        if set_rate is None:
            raise ValueError(f"{target} is a {node.KIND}: only clients take 'rate'")
        set_rate(float(value))
        return lambda: set_rate(1.0)
    if action == "pause":
        node.pause()
        return node.resume
    if action == "clock_skew":
        return _skew(node, float(fault.get("offset_ms") or 0.0), float(fault.get("rate") or 1.0))
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


# Faults of one action on one target may overlap (slow ×20 from 6 s to 9.5 s, ×57 from 7 s to
# 9.7 s): each holder (a node or an edge) keeps its active layers per action in
# ``fault_layers``, the newest in force, and a revert removes its own layer and puts back the
# newest left, or the value before them all.
def _layer(holder: Node | Edge, action: str, before: Any, value: Any,
           setter: Callable[[Any], None]) -> Revert:
    layers = holder.fault_layers
    base, stack = layers.setdefault(action, (before, []))
    entry = [value]
    stack.append(entry)
    setter(value)

    def revert() -> None:
        if entry in stack:
            stack.remove(entry)
        setter(stack[-1][0] if stack else base)
        if not stack:
            del layers[action]
    return revert


def _skew(node: Node, offset_ms: float, rate: float) -> Revert:
    before = node.clock.rate
    node.skew_clock(offset_ms, rate)
    # The revert takes the offset back and restores the rate; what the clock gained or lost
    # by running at another rate stays (as after an NTP fix that only stops the drift).
    return lambda: node.skew_clock(-offset_ms, before)


def _apply_edge(sim: Simulation, action: str, target: str, value: Any) -> Revert | None:
    edge = sim.network.edges[target]
    if action == "drop_rate":
        def set_drop(rate: float) -> None:
            edge.drop_rate = rate
        return _layer(edge, "drop_rate", edge.drop_rate, float(value), set_drop)
    if action == "slow":
        base = edge.latency_dist

        def set_latency(factor: float) -> None:
            edge.latency = (base.scaled(factor) if factor != 1.0 else base).sampler(edge.rng)
        return _layer(edge, "slow", 1.0, float(value), set_latency)
    raise ValueError(f"action {action!r} does not apply to edge {target}")


def describe(fault: dict[str, Any]) -> str:
    """One sentence for people: what the fault does."""
    action, target, value = fault["action"], fault["target"], fault.get("value")
    until = fault.get("until_s")
    span = f" until {until:g} s" if until is not None else ""
    if action == "crash" and fault.get("point"):
        down = fault.get("down_s") or DEFAULT_DOWN_S
        return (f"{target} will crash at {fault['point']} (down {down:g} s)"
                + (f", armed{span}" if span else ""))
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
        how = " (messages held until the heal)" if fault.get("mode") == "hold" else ""
        way = {"outbound": " one way (outbound)", "inbound": " one way (inbound)"}.get(
            fault.get("direction") or "both", "")
        if fault.get("groups"):
            parts = " | ".join("{" + ", ".join(g) + "}" for g in fault["groups"])
            return f"{target} is split: {parts} and the rest{way}{how}{span}"
        return f"{target} is cut off{way}{how}{span}"
    if action == "pause":
        return f"{target} is paused (stop-the-world, memory kept){span}"
    if action == "clock_skew":
        offset, rate = fault.get("offset_ms") or 0.0, fault.get("rate") or 1.0
        return f"{target}'s clock jumps {offset:+g} ms and runs at {rate:g}× {span}".rstrip()
    if action == "rate":
        return f"{target} sends {value:g}× its load{span}"
    return f"{target}.{fault.get('param')} set to {value}{span}"
