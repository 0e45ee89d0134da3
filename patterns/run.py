"""Preparing and running a scenario: what the command line, the worker and the tests share.

:func:`prepare` turns a pattern slug or a document into a validated document, applying
the command line's overrides (seed, duration, ``--set``) and, when asked, the pattern's
baseline rewrite. :func:`simulate` builds the :class:`Simulation` with the pattern's figures,
and :func:`summarise` adds the pattern's checks to the summary.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from patterns import catalog
from patterns.engine.simulation import Simulation
from patterns.engine.trace import Level
from patterns.topology import TopologyError, validate


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``node.param=value`` → (node, param, value); the value is JSON when it parses.

    The id is everything before the last dot (ids may hold dots), so ``a.b.workers=4``
    sets ``workers`` on ``a.b``; a value that is not JSON is taken as text.
    """
    target, sep, raw = text.partition("=")
    node_id, dot, param = target.rpartition(".")
    if not sep or not dot or not node_id or not param:
        raise TopologyError("--set", f"expected node.param=value, got {text!r}")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, too many digits, too deep
        value = raw
    return node_id, param, value


def apply_assignments(document: dict[str, Any], assignments: Iterable[str]) -> None:
    """Write each ``node.param=value`` into the raw document (validation comes after)."""
    items: dict[str, dict[str, Any]] = {}
    for group in ("nodes", "edges"):
        entries = document.get(group)
        # A malformed list is left for validation to name; only well-formed items are set.
        for item in entries if isinstance(entries, list) else ():
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                items.setdefault(item["id"], item)
    for text in assignments:
        node_id, param, value = parse_assignment(text)
        if node_id not in items:
            raise TopologyError("--set", f"no node or edge with id {node_id!r} (in {text!r})")
        params = items[node_id].setdefault("params", {})
        if not isinstance(params, dict):
            raise TopologyError("--set", f"{node_id!r} has params that are not an object")
        params[param] = value


def prepare(source: str | dict[str, Any], *, seed: int | None = None,
            duration_s: float | None = None, assignments: Iterable[str] = (),
            baseline: bool = False, variant: str | None = None) -> dict[str, Any]:
    """A validated document from a slug (its canonical document, or a named variant's) or a
    raw document, with the overrides applied."""
    if isinstance(source, str):
        try:
            raw = catalog.get(source).document(variant)
        except KeyError as exc:
            raise TopologyError("--variant", str(exc.args[0])) from None
    elif variant:
        raise TopologyError("--variant", "a variant is chosen with a pattern slug, not a file")
    else:
        raw = copy.deepcopy(source)
    if not isinstance(raw, dict):
        raise TopologyError("", "the document must be a JSON object")
    if baseline:
        slug = raw.get("pattern")
        if not isinstance(slug, str) or slug not in catalog.PATTERNS:
            raise TopologyError("pattern", "--baseline needs a document whose pattern is one "
                                f"of: {', '.join(sorted(catalog.PATTERNS))}")
        # The rewrite expects the pattern's own topology: check that first, so a document
        # that merely names the pattern gets a message, not a traceback.
        validate(raw)
        try:
            raw = catalog.get(slug).baseline_document(raw)
        except (KeyError, IndexError, StopIteration, TypeError, ValueError) as exc:
            raise TopologyError("pattern", f"the {slug} baseline cannot rewrite this "
                                f"document ({type(exc).__name__}: {exc})") from None
    scenario = raw.setdefault("scenario", {})
    if not isinstance(scenario, dict):
        raise TopologyError("scenario", "must be an object")
    if seed is not None:
        scenario["seed"] = seed
    if duration_s is not None:
        scenario["duration_s"] = duration_s
    apply_assignments(raw, assignments)
    return validate(raw)


def simulate(document: dict[str, Any], trace: Level = "full") -> Simulation:
    """A ready-to-run simulation of a validated document."""
    slug = document.get("pattern")
    pattern = catalog.PATTERNS.get(slug) if slug else None
    return Simulation(document, trace=trace, figures=pattern.figures if pattern else None)


def summarise(sim: Simulation) -> dict[str, Any]:
    """The end-of-run summary, with the pattern's checks."""
    out = sim.summary()
    slug = sim.document.get("pattern")
    pattern = catalog.PATTERNS.get(slug) if slug else None
    out["pattern_slug"] = slug
    out["variant"] = sim.document.get("variant") or "pattern"
    out["checks"] = pattern.checks(sim) if pattern else []
    return out
