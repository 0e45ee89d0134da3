"""HTML pages: the library, and the playground opened on a pattern, a saved topology or a run."""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlencode

import orjson
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import replace_url

from patterns import catalog
from patterns.engine import faults
from patterns.engine.distributions import NAMES as DIST_NAMES
from patterns.engine.node import KINDS
from patterns.params import Param
from patterns.topology import EDGE_PARAMS, validate
from playground import library as library_listing
from playground.models import Run, Scenario, Topology
from playground.runs import reap_if_orphaned
from playground.staticfinders import PLOTLY_JS


@require_GET
def library(request: HttpRequest) -> HttpResponse:
    """The library page; ``?category=`` and ``?q=`` filter it as the htmx partial does."""
    category, q = library_listing.clean_filters(request.GET)
    return render(request, "library.html", {
        "categories": library_listing.sections(category, q),
        "choices": library_listing.category_choices(), "category": category, "q": q,
        "count": len(catalog.PATTERNS),
        "scenario_count": Scenario.objects.filter(published=True).count()})


@require_GET
def library_results(request: HttpRequest) -> HttpResponse:
    """The library's results alone (htmx swaps them in); the address bar follows along."""
    category, q = library_listing.clean_filters(request.GET)
    response = render(request, "partials/library_results.html", {
        "categories": library_listing.sections(category, q), "q": q})
    query = urlencode({k: v for k, v in (("category", category), ("q", q)) if v})
    return replace_url(response, reverse("library") + (f"?{query}" if query else ""))


@require_GET
def scenario_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A curated scenario on the canvas (the library's cards and the admin's preview)."""
    scenario = library_listing.visible_scenario(request, pk)
    if scenario is None:
        raise Http404("no such scenario")
    return _playground(request, pattern=scenario.pattern,
                       boot={"scenario": scenario.pk, "pattern": scenario.pattern},
                       document=scenario.document)


@cache
def _import_map() -> str:
    """An import map from each module's plain static URL to its (possibly hashed) name.

    The modules import each other by relative path, which resolves to the plain URL; with
    ManifestStaticFilesStorage the map sends those to the hashed files. It is an inline
    script, allowed by the CSP through the request's nonce.
    """
    modules = sorted(p.name for p in (settings.BASE_DIR / "static" / "js").glob("*.js"))
    imports = {f"{settings.STATIC_URL}js/{name}": static(f"js/{name}") for name in modules}
    return orjson.dumps({"imports": imports}).decode().replace("</", "<\\/")


def _playground(request: HttpRequest, *, pattern: str | None,
                boot: dict[str, Any], document: dict[str, Any] | None = None,
                **extra: Any) -> HttpResponse:
    """The playground page; ``extra`` adds to the template's context (``doc_title``,
    ``saved``: the topology opened, ``forked_from``, ``run``). User text in it is
    rendered as text (autoescape). When the ``document`` opened schedules other faults than
    the pattern's canonical scenario (a curated variant, a saved topology), the page says
    what goes wrong in this one instead of the teaching fault."""
    describe = catalog.get(pattern).describe() if pattern in catalog.PATTERNS else None
    scenario_faults = None
    if describe is not None and document is not None:
        own = document.get("scenario", {}).get("faults", [])
        if own != _canonical_faults(str(pattern)):
            scenario_faults = [faults.describe(fault) for fault in own]
    return render(request, "playground.html", {"pattern": describe, "boot": boot,
                                               "scenario_faults": scenario_faults,
                                               "plotly_js": PLOTLY_JS,
                                               "import_map": _import_map(), **extra})


@cache
def _canonical_faults(slug: str) -> list[dict[str, Any]]:
    faults_: list[dict[str, Any]] = validate(catalog.get(slug).canonical())["scenario"]["faults"]
    return faults_


@require_GET
def pattern_page(request: HttpRequest, slug: str) -> HttpResponse:
    if slug not in catalog.PATTERNS:
        raise Http404("no such pattern")
    return _playground(request, pattern=slug, boot={"pattern": slug})


@require_GET
def topology_page(request: HttpRequest, slug: str) -> HttpResponse:
    topology = Topology.objects.filter(slug=slug).first()
    if topology is None:
        raise Http404("no such topology")
    return _playground(request, pattern=topology.pattern or None,
                       boot={"topology": slug, "pattern": topology.pattern or None,
                             "source": slug},
                       document=topology.document, doc_title=topology.title, saved=topology,
                       forked_from=topology.forked_from)


@require_GET
def run_page(request: HttpRequest, run_id: str) -> HttpResponse:
    run = Run.objects.filter(id=run_id).first()
    if run is None:
        raise Http404("no such run")
    run = reap_if_orphaned(run)
    return _playground(request, pattern=run.pattern or None,
                       boot={"run": run.id, "pattern": run.pattern or None,
                             "document": run.document,
                             "source": run.topology.slug if run.topology else None},
                       document=run.document, doc_title=run.document.get("title") or "",
                       run=run,
                       saved=run.topology)


# The parameter form (an htmx partial): built from the same declarations that validate input.

# Fields of each distribution shape, in the order the form shows them ("mixture" is edited
# as JSON: its parts nest).
DIST_FIELDS: dict[str, tuple[str, ...]] = {
    "constant": ("value",), "uniform": ("low", "high"), "exponential": ("mean",),
    "normal": ("mean", "std"), "lognormal": ("median", "p99"), "pareto": ("scale", "alpha"),
    "empirical": ("values",),
}
MAX_PARAMS_JSON = 20_000


def _num(value: Any) -> str:
    """A number as an <input type=number> shows it: no exponent, no trailing ".0"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _field(param: Param, value: Any, present: bool) -> dict[str, Any]:
    """What the template needs to draw one parameter's input, with its current value."""
    if not present:
        value = param.default
    out: dict[str, Any] = {"name": param.name, "type": param.type, "unit": param.unit,
                           "help": param.help, "min": param.min, "max": param.max,
                           "nullable": param.nullable, "choices": list(param.choices),
                           "value": value, "default": param.default, "changed": present,
                           "value_text": _num(value), "min_text": _num(param.min),
                           "max_text": _num(param.max)}
    if param.type == "dist":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            spec: dict[str, Any] = {"dist": "constant", "value": value}
        elif isinstance(value, dict):
            spec = value
        else:
            spec = {"dist": "constant", "value": 0}
        shape = spec.get("dist", "constant")
        out["dist"] = shape
        out["dist_names"] = list(DIST_NAMES)
        if shape in DIST_FIELDS:
            out["dist_fields"] = [
                {"key": key, "value": ", ".join(_num(v) for v in spec.get(key, []))
                 if key == "values" else _num(spec.get(key))}
                for key in DIST_FIELDS[shape]]
        else:
            out["dist_json"] = orjson.dumps(spec).decode()
    elif param.type == "object":
        out["enabled"] = isinstance(value, dict)
        inner = value if isinstance(value, dict) else {}
        out["fields"] = [_field(f, inner.get(f.name), f.name in inner) for f in param.fields]
    elif param.type == "list":
        out["selected"] = list(value) if isinstance(value, list) else []
        out["text"] = ", ".join(str(v) for v in out["selected"])
    return out


@require_GET
def params_form(request: HttpRequest) -> HttpResponse:
    """The parameter form of one node (``kind=<kind>``) or edge (``kind=edge``).

    ``params`` is the element's current params object as JSON; missing values show their
    declared default. The browser reads the inputs back by their ``data-*`` attributes.
    """
    kind = request.GET.get("kind", "")
    raw = request.GET.get("params", "") or "{}"
    try:
        params = orjson.loads(raw[:MAX_PARAMS_JSON])
    except orjson.JSONDecodeError:
        params = {}
    if not isinstance(params, dict):
        params = {}
    if kind == "edge":
        declared: tuple[Param, ...] = tuple(EDGE_PARAMS)
        label, description = "Edge", "A connection: the caller's calls travel along it."
    elif kind in KINDS:
        cls = KINDS[kind]
        declared = tuple(cls.PARAMS)
        label, description = cls.LABEL or kind, cls.DESCRIPTION
    else:
        return HttpResponse(f"Unknown kind: {kind}", status=400, content_type="text/plain")
    fields = [_field(p, params.get(p.name), p.name in params) for p in declared]
    return render(request, "partials/params_form.html", {
        "kind": kind, "kind_label": label, "description": description, "fields": fields,
        "element_id": request.GET.get("id", "")[:64],
        "label": request.GET.get("label", "")[:80],
        "is_edge": kind == "edge",
        "source": request.GET.get("from", "")[:64], "target": request.GET.get("to", "")[:64],
    })
