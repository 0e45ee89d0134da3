"""Curated scenarios for the coordination patterns (see playground/curation.py)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from playground import curation

CURATED: curation.Curated = {
    "leader-election": (
        "Leader election: the leader crashes",
        "The leader crashes and later a follower is cut off: a new leader in a fraction of a "
        "second, never two in one term."),
    "distributed-lock": (
        "Distributed lock: the holder pauses past its lease",
        "A worker holding the lock freezes longer than its lease: fencing tokens make the "
        "store refuse its late write."),
    "consensus": (
        "Consensus: a network split, then the leader crashes",
        "Raft keeps every acknowledged write through a split and a leader crash; "
        "primary-backup loses hundreds."),
}


def add_curated(apps: Any, schema_editor: Any) -> None:
    curation.add(apps, CURATED, first_order=100)


def remove_curated(apps: Any, schema_editor: Any) -> None:
    curation.remove(apps, CURATED)


class Migration(migrations.Migration):

    dependencies = [
        ("playground", "0003_curated_scenarios"),
    ]

    operations = [
        migrations.RunPython(add_curated, remove_curated),
    ]
