"""The library: patterns and published scenarios by category, filtered by category and text.

:func:`sections` is the listing both the page and its htmx partial draw. A scenario is
visible to everyone once published, and to staff (who preview it from the admin) before.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from patterns import catalog
from playground.models import Scenario

MAX_QUERY = 100


def clean_filters(params: Any) -> tuple[str, str]:
    """(category, text) from a query string; an unknown category means all of them."""
    category = str(params.get("category", ""))
    if category not in catalog.CATEGORIES:
        category = ""
    return category, str(params.get("q", "")).strip()[:MAX_QUERY]


def sections(category: str = "", q: str = "") -> list[dict[str, Any]]:
    """The categories that have something to show, each with its patterns and scenarios.

    ``q`` matches a pattern's name, slug and summary, and a scenario's title, description
    and pattern name, case-insensitively. A scenario whose pattern is no longer registered
    is left out: it has no category and its pattern's figures would be missing.
    """
    needle = q.casefold()
    patterns = [p for p in catalog.PATTERNS.values()
                if (not category or category == p.CATEGORY)
                and (not needle or needle in f"{p.SLUG} {p.NAME} {p.SUMMARY}".casefold())]
    slugs = [slug for slug, p in catalog.PATTERNS.items()
             if not category or category == p.CATEGORY]
    scenarios = Scenario.objects.filter(published=True, pattern__in=slugs)
    if q:
        named = [slug for slug in slugs if needle in catalog.PATTERNS[slug].NAME.casefold()]
        scenarios = scenarios.filter(Q(title__icontains=q) | Q(description__icontains=q)
                                     | Q(pattern__in=named))
    by_category: dict[str, dict[str, list[Any]]] = {
        key: {"patterns": [], "scenarios": []} for key in catalog.CATEGORIES}
    for p in patterns:
        by_category[p.CATEGORY]["patterns"].append(p.describe())
    for s in scenarios.order_by("-featured", "order", "title", "id"):
        pattern = catalog.PATTERNS[s.pattern]
        by_category[pattern.CATEGORY]["scenarios"].append(
            {"id": s.pk, "title": s.title, "summary": s.summary, "pattern": s.pattern,
             "pattern_name": pattern.NAME, "featured": s.featured})
    return [{"key": key, "name": name, **by_category[key]}
            for key, name in catalog.CATEGORIES.items()
            if by_category[key]["patterns"] or by_category[key]["scenarios"]]


def category_choices() -> list[dict[str, str]]:
    """The categories a filter can pick: those with a registered pattern."""
    used = {p.CATEGORY for p in catalog.PATTERNS.values()}
    return [{"key": key, "name": name} for key, name in catalog.CATEGORIES.items()
            if key in used]


def visible_scenario(request: HttpRequest, pk: int) -> Scenario | None:
    """The scenario if this request may see it: published, or the user is staff."""
    scenario = Scenario.objects.filter(pk=pk).first()
    if scenario is None or not (scenario.published or request.user.is_staff):
        return None
    return scenario


@require_GET
def scenario_document(request: HttpRequest, pk: int) -> JsonResponse:
    """``GET /api/scenarios/<id>`` → the scenario's topology document (like a topology)."""
    scenario = visible_scenario(request, pk)
    if scenario is None:
        return JsonResponse({"error": "no such scenario", "field": "id"}, status=404)
    return JsonResponse(scenario.document)
