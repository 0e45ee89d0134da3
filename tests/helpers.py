"""Small builders shared by the engine and pattern tests."""

from __future__ import annotations

import random
from typing import Any

from patterns.run import prepare, simulate, summarise


def document(nodes: list[dict[str, Any]], edges: list[dict[str, Any]], *,
             duration_s: float = 60, seed: int = 1,
             faults: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"version": 1, "nodes": nodes, "edges": edges,
            "scenario": {"duration_s": duration_s, "seed": seed, "faults": faults or []},
            **extra}


def run(source: str | dict[str, Any], *, trace: str = "off", baseline: bool = False,
        **overrides: Any) -> tuple[dict[str, Any], Any]:
    """Run to the end; returns (summary, simulation)."""
    doc = prepare(source, baseline=baseline, **overrides)
    sim = simulate(doc, trace=trace).run()  # type: ignore[arg-type]
    return summarise(sim), sim


def failed(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The summary's failed checks by name (each with its counterexample)."""
    return {c["name"]: c for c in summary["checks"] if not c["ok"]}


def events(source: str | dict[str, Any], **overrides: Any) -> list[dict[str, Any]]:
    """Every event of a full-trace run."""
    doc = prepare(source, **overrides)
    sim = simulate(doc, trace="full").run()
    return sim.trace.drain()


def failing_seeds(canonical: Any, random_faults: Any, seeds: range,
                  duration_s: float) -> list[str]:
    """Run ``canonical()`` under ``random_faults(seed, duration_s)`` for every seed; one line
    per run whose checks failed, naming the seed to replay and the first counterexample."""
    failing = []
    for seed in seeds:
        doc = canonical()
        doc["scenario"] = {**doc["scenario"], "duration_s": duration_s, "seed": seed,
                           "faults": random_faults(seed, duration_s)}
        summary, _ = run(doc)
        bad = [c for c in summary["checks"] if not c["ok"]]
        if bad:
            failing.append(f"seed {seed}: {bad[0]['name']}: {bad[0].get('counterexample')}")
    return failing


def random_cluster_faults(seed: int, duration_s: float, *, count: int, earliest_s: float,
                          clients: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``count`` random faults on a five-member cluster ``raft`` (n1…n5): crashes, pauses,
    partitions (a member, or a group split off, by drop or hold), clock skews. ``clients``
    may join a split-off group."""
    rng = random.Random(seed)
    nodes = [f"n{i}" for i in range(1, 6)]
    targets = [*nodes, "leader:raft", "follower:raft"]
    faults: list[dict[str, Any]] = []
    for _ in range(count):
        at = round(rng.uniform(earliest_s, duration_s - 1), 3)
        until = round(at + rng.uniform(0.05, 2.0), 3)
        action = rng.choice(["crash", "pause", "partition", "split", "clock_skew"])
        if action == "split":
            group = rng.sample(nodes, rng.randint(1, 2))
            if clients:
                group += rng.sample(list(clients), rng.randint(0, 1))
            faults.append({"at_s": at, "until_s": until, "target": "raft",
                           "action": "partition", "groups": [group],
                           "mode": rng.choice(["drop", "hold"])})
        elif action == "clock_skew":
            faults.append({"at_s": at, "until_s": until, "target": rng.choice(nodes),
                           "action": "clock_skew", "rate": rng.choice([0.5, 2.0, 5.0])})
        else:
            faults.append({"at_s": at, "until_s": until, "target": rng.choice(targets),
                           "action": action})
    return sorted(faults, key=lambda f: f["at_s"])
