"""Curated scenarios for the flow, messaging and streaming patterns, and the lease variant of
leader election (see playground/curation.py)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from playground import curation

CURATED: curation.Curated = {
    "event-streaming": (
        "Event streaming: a consumer crashes, a late group replays",
        "A billing consumer crashes: its partitions stall until the session times out, "
        "then move; per-account order holds, and analytics replays the whole log."),
    "orchestration": (
        "Orchestration: refused orders, the orchestrator crashes",
        "Inventory refuses one order in twenty and the orchestrator crashes for 5 s: every "
        "refused order ends FAILED with its reason, and none is left open."),
    "choreography": (
        "Choreography: inventory crashes, nobody else notices",
        "Services react to each other's events: inventory down for 20 s only builds a "
        "backlog, drained once it is back; no order fails and no event is lost."),
    "saga": (
        "Saga: payment declines, the orchestrator crashes",
        "One order in five is declined at payment and the orchestrator crashes for 5 s: "
        "every saga ends completed or compensated, none half done."),
    "transactional-outbox": (
        "Transactional outbox: the broker is cut off, the service crashes",
        "Orders and their events commit together and a relay publishes them: through a "
        "broker outage and crashes between commit and publish, no event is lost."),
    "transactional-inbox": (
        "Transactional inbox: duplicates and crashes before the ack",
        "One message in twenty arrives twice and the ledger crashes between its commit and "
        "its ack: every payment is applied exactly once."),
    "leader-election:lease": (
        "Leader election with a lease: the holder crashes, then pauses",
        "Three electors compete for a lease in a store, as Kubernetes controllers do: a "
        "crashed holder is replaced within lease duration + 2 retry periods."),
}


def add_curated(apps: Any, schema_editor: Any) -> None:
    curation.add(apps, CURATED, first_order=130)


def remove_curated(apps: Any, schema_editor: Any) -> None:
    curation.remove(apps, CURATED)


class Migration(migrations.Migration):

    dependencies = [
        ("playground", "0004_curated_coordination"),
    ]

    operations = [
        migrations.RunPython(add_curated, remove_curated),
    ]
