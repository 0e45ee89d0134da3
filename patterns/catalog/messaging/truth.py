"""What became of every message, read from the run's message ledger: the figures and checks
the messaging patterns share."""

from __future__ import annotations

from typing import Any

from patterns.engine.invariants import Verdict
from patterns.engine.ledger import Message
from patterns.engine.metrics import quantile_sorted
from patterns.engine.simulation import Simulation


def publish_lags(sim: Simulation) -> list[float]:
    """Commit → first broker ack, per committed event that was published (ms, sorted)."""
    lags = [msg.first_published - msg.committed_t for msg in sim.ledger.messages.values()
            if msg.committed and msg.committed_t is not None
            and msg.first_published is not None]
    return sorted(max(0.0, lag) for lag in lags)


def backlog_max(sim: Simulation) -> int:
    """The most events committed and not yet published at any instant."""
    changes: list[tuple[float, int]] = []
    for msg in sim.ledger.messages.values():
        if not msg.committed or msg.committed_t is None:
            continue
        changes.append((msg.committed_t, 1))
        if msg.first_published is not None:
            changes.append((max(msg.first_published, msg.committed_t), -1))
    # At one instant a publish is counted before a commit (the backlog is not inflated).
    changes.sort(key=lambda c: (c[0], c[1]))
    level = peak = 0
    for _, step in changes:
        level += step
        peak = max(peak, level)
    return peak


def lag_figures(sim: Simulation) -> dict[str, float]:
    lags = publish_lags(sim)
    mean = sum(lags) / len(lags) if lags else 0.0
    return {"publish_lag_ms_mean": round(mean, 3),
            "publish_lag_ms_p99": round(quantile_sorted(lags, 0.99), 3)}


def _first(msgs: list[Message], when: Any) -> Message:
    return min(msgs, key=when)


def no_committed_event_lost(sim: Simulation) -> Verdict:
    """After the drain, every event committed at its source was delivered, or is still
    held where it will be (an outbox row not yet relayed)."""
    lost = sim.ledger.lost()
    committed = sum(1 for msg in sim.ledger.messages.values() if msg.committed)
    if not lost:
        return Verdict(True, f"{committed} events committed, none lost")
    first = _first(lost, lambda msg: msg.committed_t or 0.0)
    t = first.committed_t or 0.0
    return Verdict(False, f"{len(lost)} of {committed} committed events lost", {
        "t": round(t, 3), "nodes": [first.producer],
        "what": f"{first.msg_id} committed at {t / 1000:.3f} s, never published "
                f"(sent {first.sends}×): event lost"})


def no_phantom_event(sim: Simulation) -> Verdict:
    """No event was published about a fact that never committed."""
    phantoms = sim.ledger.phantoms()
    if not phantoms:
        return Verdict(True, "every published event reports a committed fact")
    first = _first(phantoms, lambda msg: msg.first_published or 0.0)
    t = first.first_published or 0.0
    return Verdict(False, f"{len(phantoms)} phantom events", {
        "t": round(t, 3), "nodes": [first.producer],
        "what": f"{first.msg_id} published at {t / 1000:.3f} s, its transaction never "
                "committed: phantom event"})


def order_breaks(sim: Simulation, aggregate_of: dict[str, str]) -> int:
    """Broker acks, in the order heard, of an event committed before one of the same
    aggregate already published (a consumer would see the aggregate go back in time).
    ``aggregate_of`` maps msg_id → aggregate (an outbox table says it)."""
    newest: dict[str, float] = {}
    breaks = 0
    messages = sim.ledger.messages
    for msg_id in sim.ledger.publish_order:
        aggregate = aggregate_of.get(msg_id)
        committed = messages[msg_id].committed_t
        if aggregate is None or committed is None:
            continue
        if committed < newest.get(aggregate, committed):
            breaks += 1
        else:
            newest[aggregate] = committed
    return breaks
