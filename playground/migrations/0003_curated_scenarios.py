"""Ship one curated scenario per pattern implemented when this was written (see
playground/curation.py for what a curated scenario holds and why it is safe to re-run)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from playground import curation

# slug → (title, the card's one-line summary). Written for the patterns of the time.
CURATED: curation.Curated = {
    "request-response": (
        "Request-response: a database that slows down",
        "Synchronous calls hold a thread each: when the database turns 20× slower, every "
        "request waits."),
    "load-balancing": (
        "Load balancing: one backend turns slow",
        "Four backends, one turns 10× slower: see which algorithm keeps p99 down, and why "
        "health checks miss it."),
    "publisher-subscriber": (
        "Publisher-subscriber: a subscriber goes down",
        "One subscriber is down for 20 s: only its backlog grows, and the publisher never "
        "notices."),
    "circuit-breaker": (
        "Circuit breaker: payments slows to a crawl",
        "Payments turns 20× slower for 30 s: the breaker opens, probes with trial calls, and "
        "spares the callers the wait."),
    "retry": (
        "Retry: riding out an outage without a retry storm",
        "A service hangs for 10 s at 80% load: backoff, jitter and a budget keep retries from "
        "burying it."),
    "timeout": (
        "Timeout: containing a dependency's slow tail",
        "A tenth of a dependency's calls take 5 s: a 150 ms timeout keeps the failure from "
        "spreading."),
}


def add_curated(apps: Any, schema_editor: Any) -> None:
    curation.add(apps, CURATED, first_order=10)


def remove_curated(apps: Any, schema_editor: Any) -> None:
    curation.remove(apps, CURATED)


class Migration(migrations.Migration):

    dependencies = [
        ("playground", "0002_scenario"),
    ]

    operations = [
        migrations.RunPython(add_curated, remove_curated),
    ]
