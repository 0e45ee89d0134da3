"""The JSON API (DESIGN §6). Errors are ``{"error": ..., "field": ...}`` with a 4xx status."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from patterns import catalog
from patterns.engine.node import KINDS
from patterns.topology import EDGE_PARAMS, TopologyError, validate
from playground.models import Run, Topology
from playground.runs import BadRequest, create_run, reap_if_orphaned

View = Callable[..., HttpResponse]


def error(message: str, field: str = "", status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message, "field": field}, status=status)


def json_errors(view: View) -> View:
    """A JSON POST endpoint: bad input becomes a 4xx JSON answer naming the field.

    Only ``application/json`` bodies are taken. A cross-site form cannot send that content
    type without a CORS preflight, which this origin never grants, so these endpoints are
    safe from CSRF without a token, and scripts can call them like the page does.
    """

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.content_type != "application/json":
            return error("send the body as application/json", "", status=415)
        try:
            return view(request, *args, **kwargs)
        except BadRequest as exc:
            return error(exc.message, exc.field)
        except RequestDataTooBig:
            return error("the request body is too large", "", status=413)

    return wrapper


def _body(request: HttpRequest) -> Any:
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("", f"the body is not valid JSON: {exc}") from None


def kinds_json() -> dict[str, Any]:
    return {kind: {"label": cls.LABEL or kind, "description": cls.DESCRIPTION,
                   "params": [p.to_json() for p in cls.PARAMS]}
            for kind, cls in sorted(KINDS.items())}


@require_GET
def patterns_index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({
        "patterns": [p.describe() for p in catalog.PATTERNS.values()],
        "categories": catalog.CATEGORIES,
        "kinds": kinds_json(),
        "edge_params": [p.to_json() for p in EDGE_PARAMS],
    })


@require_GET
def pattern_detail(request: HttpRequest, slug: str) -> JsonResponse:
    if slug not in catalog.PATTERNS:
        return error(f"no pattern called {slug!r}", "slug", status=404)
    pattern = catalog.get(slug)
    canonical = pattern.canonical()
    return JsonResponse({"pattern": pattern.describe(), "topology": canonical,
                         "baseline": pattern.baseline_document(canonical)})


@require_POST
@json_errors
def runs_create(request: HttpRequest) -> JsonResponse:
    run = create_run(_body(request))
    return JsonResponse({"id": run.id, "ws_url": f"/ws/runs/{run.id}/", "url": f"/r/{run.id}"},
                        status=201)


@require_GET
def run_detail(request: HttpRequest, run_id: str) -> JsonResponse:
    run = Run.objects.filter(id=run_id).first()
    if run is None:
        return error("no such run", "id", status=404)
    return JsonResponse(reap_if_orphaned(run).as_json())


@require_POST
@json_errors
def topologies_create(request: HttpRequest) -> JsonResponse:
    data = _body(request)
    if not isinstance(data, dict):
        raise BadRequest("", "the request body must be a JSON object (a topology document)")
    try:
        document = validate(data)
    except TopologyError as exc:
        raise BadRequest(exc.field, exc.message) from None
    topology = Topology.objects.create(title=document["title"],
                                       pattern=document.get("pattern") or "",
                                       document=document)
    return JsonResponse({"slug": topology.slug, "url": f"/t/{topology.slug}"}, status=201)


@require_GET
def topology_detail(request: HttpRequest, slug: str) -> JsonResponse:
    topology = Topology.objects.filter(slug=slug).first()
    if topology is None:
        return error("no such topology", "slug", status=404)
    return JsonResponse(topology.document)
