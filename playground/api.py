"""The JSON API (DESIGN §6). Errors are ``{"error": ..., "field": ...}`` with a 4xx status."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from patterns import catalog
from patterns.engine.node import KINDS
from patterns.topology import EDGE_PARAMS, TopologyError, validate
from playground import replays
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
                   "params": [p.to_json() for p in cls.PARAMS],
                   "pausable": bool(getattr(cls, "PAUSABLE", False)),
                   "crash_points": list(cls.CRASH_POINTS)}
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


def _validated_document(data: Any) -> dict[str, Any]:
    """The body as a validated topology document (defaults filled in), or a BadRequest."""
    if not isinstance(data, dict):
        raise BadRequest("", "the request body must be a JSON object (a topology document)")
    try:
        return validate(data)
    except TopologyError as exc:
        raise BadRequest(exc.field, exc.message) from None


@require_POST
@json_errors
def topologies_create(request: HttpRequest) -> JsonResponse:
    """Store a document under a new slug; always a new one, so shared links never change.

    ``forked_from`` (beside the document's own fields) names the saved topology the page
    was opened from; it must exist. Answers ``201 {"slug", "url", "forked_from"}``.
    """
    data = _body(request)
    parent = None
    if isinstance(data, dict) and "forked_from" in data:
        data = dict(data)
        source = data.pop("forked_from")
        if source is not None:
            if not isinstance(source, str):
                raise BadRequest("forked_from", "must be the slug of a saved topology")
            parent = Topology.objects.filter(slug=source).first()
            if parent is None:
                raise BadRequest("forked_from", f"no saved topology called {source[:40]!r}")
    document = _validated_document(data)
    topology = Topology.objects.create(title=document["title"],
                                       pattern=document.get("pattern") or "",
                                       document=document, forked_from=parent)
    return JsonResponse({"slug": topology.slug, "url": f"/t/{topology.slug}",
                         "forked_from": parent.slug if parent else None}, status=201)


@require_POST
@json_errors
def topologies_validate(request: HttpRequest) -> JsonResponse:
    """A dry run of saving: the normalised document, or a 400 naming the field. Stores
    nothing (the page checks an imported file with it before loading it)."""
    return JsonResponse({"document": _validated_document(_body(request))})


@require_GET
def topology_detail(request: HttpRequest, slug: str) -> JsonResponse:
    topology = Topology.objects.filter(slug=slug).first()
    if topology is None:
        return error("no such topology", "slug", status=404)
    return JsonResponse(topology.document)


# ---- a run again: verification and exports ---------------------------------------------------

def _run_or_404(run_id: str) -> Run | JsonResponse:
    run = Run.objects.filter(id=run_id).first()
    if run is None:
        return error("no such run", "id", status=404)
    return reap_if_orphaned(run)


@require_GET
def run_verify(request: HttpRequest, run_id: str) -> JsonResponse:
    """Re-simulate the run and compare its event stream with the stored one, byte for byte.

    Synchronous: a pattern run re-simulates in about a second, and
    :data:`playground.replays.MAX_VERIFY_EVENTS` bounds the rest. The answer is
    ``{"verified": true | false | null, "events", "first_difference", "reason", "sha256"}``.
    """
    run = _run_or_404(run_id)
    if isinstance(run, JsonResponse):
        return run
    return JsonResponse(replays.verify(run))


def _export(run_id: str, suffix: str, content_type: str,
            encode: Callable[[Iterator[dict[str, Any]]], Iterator[bytes]]) -> HttpResponse:
    run = _run_or_404(run_id)
    if isinstance(run, JsonResponse):
        return run
    events = replays.events(run)
    if events is None:
        return error("the run's frames are no longer stored and a failed run is not "
                     "re-simulated", "id", status=410)
    response = StreamingHttpResponse(encode(events), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="run-{run.id}.{suffix}"'
    return response


def _jsonl(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for event in events:
        yield orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)


CSV_COLUMNS = ("t", "k", "node", "edge", "data")


def _csv(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """One row an event: its time, kind, node and edge (``e``), and the rest as JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for event in events:
        rest = {k: v for k, v in event.items() if k not in ("t", "k", "node", "e")}
        writer.writerow((event.get("t", ""), event.get("k", ""), event.get("node", ""),
                         event.get("e", ""), orjson.dumps(rest).decode() if rest else ""))
        if buffer.tell() > 64_000:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


@require_GET
def run_events_jsonl(request: HttpRequest, run_id: str) -> HttpResponse:
    """The run's events, one JSON object a line: from its stream, or re-simulated."""
    return _export(run_id, "jsonl", "application/x-ndjson", _jsonl)


@require_GET
def run_events_csv(request: HttpRequest, run_id: str) -> HttpResponse:
    """The run's events as CSV with the columns of :data:`CSV_COLUMNS`."""
    return _export(run_id, "csv", "text/csv; charset=utf-8", _csv)
