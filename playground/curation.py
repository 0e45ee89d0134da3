"""Curated scenarios shipped by data migrations: one per pattern, written when it lands.

Each is the pattern's canonical topology with its teaching fault, a title, and a
description that ends with the observations to make. The documents come from the live
registry, called when the migration runs (never at import time), so a pattern renamed or
removed later is skipped rather than breaking a fresh install; a document that no longer
validates is skipped too, with a warning, for the same reason.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# key → (title, the card's one-line summary); the key is a pattern's slug, or
# ``slug:variant`` for one of its named variants (patterns.catalog.registry.Pattern.variants).
Curated = dict[str, tuple[str, str]]


def description(summary: str, pattern: Any) -> str:
    lines = [summary, "", pattern.SUMMARY, "", f"The fault: {pattern.TEACHING_FAULT}"]
    if pattern.OBSERVATIONS:
        lines += ["", "What to watch:"] + [f"- {text}" for text in pattern.OBSERVATIONS]
    return "\n".join(lines)


def add(apps: Any, curated: Curated, first_order: int) -> None:
    """Store the curated scenarios (published and featured), skipping what is gone."""
    from patterns import catalog
    from patterns.topology import TopologyError, validate

    Scenario = apps.get_model("playground", "Scenario")
    for offset, (key, (title, summary)) in enumerate(curated.items()):
        slug, _, variant = key.partition(":")
        pattern = catalog.PATTERNS.get(slug)
        if pattern is None or (variant and variant not in pattern.variants()):
            continue  # the pattern or its variant is gone: nothing to curate
        try:
            document = validate(pattern.document(variant))
        except TopologyError as exc:
            log.warning("curated scenario %s skipped: %s", slug, exc)
            continue
        if Scenario.objects.filter(pattern=slug, title=title).exists():
            continue
        Scenario.objects.create(pattern=slug, title=title,
                                description=description(summary, pattern),
                                document=document, featured=True, published=True,
                                order=first_order + offset * 10)


def remove(apps: Any, curated: Curated) -> None:
    Scenario = apps.get_model("playground", "Scenario")
    for key, (title, _summary) in curated.items():
        Scenario.objects.filter(pattern=key.partition(":")[0], title=title).delete()
