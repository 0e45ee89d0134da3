"""Ship one curated scenario per pattern implemented when this was written.

Each is the pattern's canonical topology with its teaching fault, a title, and a
description that ends with the observations to make. The documents come from the live
registry, called inside the function (never at import time), so a pattern renamed or
removed later is skipped rather than breaking a fresh install; a document that no longer
validates is skipped too, with a warning, for the same reason.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import migrations

log = logging.getLogger(__name__)

# slug → (title, the card's one-line summary). Written for the patterns of the time.
CURATED: dict[str, tuple[str, str]] = {
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


def _description(summary: str, pattern: Any) -> str:
    lines = [summary, "", pattern.SUMMARY, "", f"The fault: {pattern.TEACHING_FAULT}"]
    if pattern.OBSERVATIONS:
        lines += ["", "What to watch:"] + [f"- {text}" for text in pattern.OBSERVATIONS]
    return "\n".join(lines)


def add_curated(apps: Any, schema_editor: Any) -> None:
    from patterns import catalog
    from patterns.topology import TopologyError, validate

    Scenario = apps.get_model("playground", "Scenario")
    for order, (slug, (title, summary)) in enumerate(CURATED.items()):
        pattern = catalog.PATTERNS.get(slug)
        if pattern is None:
            continue  # the pattern is gone: nothing to curate
        try:
            document = validate(pattern.canonical())
        except TopologyError as exc:
            log.warning("curated scenario %s skipped: %s", slug, exc)
            continue
        if Scenario.objects.filter(pattern=slug, title=title).exists():
            continue
        Scenario.objects.create(pattern=slug, title=title,
                                description=_description(summary, pattern),
                                document=document, featured=True, published=True,
                                order=(order + 1) * 10)


def remove_curated(apps: Any, schema_editor: Any) -> None:
    Scenario = apps.get_model("playground", "Scenario")
    for slug, (title, _summary) in CURATED.items():
        Scenario.objects.filter(pattern=slug, title=title).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("playground", "0002_scenario"),
    ]

    operations = [
        migrations.RunPython(add_curated, remove_curated),
    ]
