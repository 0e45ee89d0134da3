"""Curated scenario for the choreographed variant of the saga (see playground/curation.py)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from playground import curation

CURATED: curation.Curated = {
    "saga:choreography": (
        "Saga by events: payment declines, inventory crashes",
        "No orchestrator: each service reacts to the last one's event, and a declined "
        "payment is undone by events travelling back (stock released, order rejected)."),
}


def add_curated(apps: Any, schema_editor: Any) -> None:
    curation.add(apps, CURATED, first_order=200)


def remove_curated(apps: Any, schema_editor: Any) -> None:
    curation.remove(apps, CURATED)


class Migration(migrations.Migration):

    dependencies = [
        ("playground", "0005_curated_flows_and_messaging"),
    ]

    operations = [
        migrations.RunPython(add_curated, remove_curated),
    ]
