"""The pattern registry: one entry per slug, filled by :func:`register_pattern`.

A pattern module subclasses :class:`Pattern`, fills in its texts and its canonical scenario,
and says how its baseline differs (a parameter switch or a topology rewrite). Its
``figures`` are the summary's ``pattern`` object and its ``checks`` the invariants the run
evaluated, pass or fail.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from patterns.engine.simulation import Simulation

CATEGORIES: dict[str, str] = {
    "communication": "Communication",
    "integration": "Integration",
    "orchestration": "Orchestration and choreography",
    "data": "Data management",
    "reliability": "Reliability",
    "messaging": "Messaging",
    "deployment": "Deployment and infrastructure",
    "migration": "Migration",
    "performance": "Performance and scalability",
    "coordination": "Coordination",
}

PATTERNS: dict[str, Pattern] = {}

P = TypeVar("P", bound="type[Pattern]")


def check(name: str, ok: bool, detail: str = "",
          counterexample: dict[str, Any] | None = None) -> dict[str, Any]:
    """One evaluated invariant, as the summary's ``checks`` lists it; a failed one may carry
    its first counterexample (``t``, ``nodes``, ``what``), which the playground jumps to."""
    out: dict[str, Any] = {"name": name, "ok": bool(ok)}
    if detail:
        out["detail"] = detail
    if counterexample is not None:
        out["counterexample"] = counterexample
    return out


def verdict_checks(verdicts: Any) -> list[dict[str, Any]]:
    """Checks from ``(name, verdict)`` pairs, a verdict being what patterns.engine.invariants
    returns (``ok``, ``detail``, ``counterexample``)."""
    return [check(name, v.ok, v.detail, v.counterexample) for name, v in verdicts]


def on_ring(i: int, count: int, cx: float, cy: float, rx: float,
            ry: float) -> tuple[float, float]:
    """Canvas position of member ``i`` (1-based) of ``count`` around a ring, first at the top."""
    angle = 2 * math.pi * (i - 1) / count
    return cx + rx * math.sin(angle), cy - ry * math.cos(angle)


class Pattern:
    SLUG: ClassVar[str] = ""
    NAME: ClassVar[str] = ""
    CATEGORY: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""
    PROBLEM: ClassVar[str] = ""
    TRADEOFFS: ClassVar[str] = ""
    TEACHING_FAULT: ClassVar[str] = ""
    BASELINE: ClassVar[str] = ""
    OBSERVATIONS: ClassVar[tuple[str, ...]] = ()
    # For a baseline that rewrites the topology: this pattern's node ids → the baseline's, for
    # the faults that follow a node into the other topology (the same seed, load and faults).
    BASELINE_NODE_MAP: ClassVar[dict[str, str]] = {}

    def canonical(self) -> dict[str, Any]:
        """The canonical topology document, teaching fault included."""
        raise NotImplementedError

    def variants(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """Other canonical documents of the same pattern by name (a lease-based election,
        a choreographed saga), each with its own scenario."""
        return {}

    def document(self, variant: str | None = None) -> dict[str, Any]:
        """The canonical document, or the named variant's; an unknown name raises KeyError
        naming those that exist."""
        if not variant:
            return self.canonical()
        builders = self.variants()
        if variant not in builders:
            known = ", ".join(sorted(builders)) or "none"
            raise KeyError(f"{self.SLUG} has no variant {variant!r}; variants: {known}")
        return builders[variant]()

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        """The same system without the pattern: same seed, same load, same faults."""
        raise NotImplementedError

    def figures(self, sim: Simulation) -> dict[str, Any]:
        """The pattern's own figures for the summary (names as its entry gives them)."""
        return {}

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        """The invariants this run evaluated; see :func:`check`."""
        return []

    def baseline_document(self, document: dict[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = self.baseline(copy.deepcopy(document))
        doc["variant"] = "baseline"
        return doc

    def describe(self) -> dict[str, Any]:
        return {"slug": self.SLUG, "name": self.NAME, "category": self.CATEGORY,
                "category_name": CATEGORIES[self.CATEGORY], "summary": self.SUMMARY,
                "problem": self.PROBLEM, "tradeoffs": self.TRADEOFFS,
                "teaching_fault": self.TEACHING_FAULT, "baseline": self.BASELINE,
                "observations": list(self.OBSERVATIONS), "variants": sorted(self.variants())}


def register_pattern(cls: P) -> P:
    """Class decorator: add the pattern to the registry under its slug."""
    if cls.CATEGORY not in CATEGORIES:
        raise ValueError(f"{cls.__name__}: unknown category {cls.CATEGORY!r}")
    if cls.SLUG in PATTERNS:
        raise ValueError(f"pattern {cls.SLUG!r} is registered twice")
    PATTERNS[cls.SLUG] = cls()
    # Keep the registry in the catalog's order, categories as listed above and patterns in
    # the order they were registered within one, whatever order the modules load in.
    rank = {category: i for i, category in enumerate(CATEGORIES)}
    ordered = sorted(PATTERNS.items(), key=lambda item: rank[item[1].CATEGORY])
    PATTERNS.clear()
    PATTERNS.update(ordered)
    return cls


def get(slug: str) -> Pattern:
    try:
        return PATTERNS[slug]
    except KeyError:
        raise KeyError(
            f"Unknown pattern: {slug}. Available: {', '.join(sorted(PATTERNS))}") from None


def node(node_id: str, kind: str, x: float, y: float, label: str = "",
         **params: Any) -> dict[str, Any]:
    """A node of a canonical document (a small helper that keeps scenarios readable)."""
    return {"id": node_id, "kind": kind, "label": label or node_id, "x": x, "y": y,
            "params": params}


def edge(src: str, dst: str, edge_id: str | None = None, **params: Any) -> dict[str, Any]:
    return {"id": edge_id or f"{src}-{dst}", "from": src, "to": dst, "params": params}


def find(document: dict[str, Any], node_id: str) -> dict[str, Any]:
    """The node (or edge) with this id in a document."""
    item: dict[str, Any]
    for item in document["nodes"] + document["edges"]:
        if item["id"] == node_id:
            return item
    raise KeyError(node_id)
