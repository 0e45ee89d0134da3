"""Runs: creating one from a request, executing it on a worker, and noticing a lost worker.

The web process only validates, stores and enqueues (:func:`create_run`); the worker
executes (:func:`execute`): it cuts the simulation into frames, paces them to the wall
clock in live mode, appends them to the run's Redis stream, and applies controls between
frames. A task delivered again after its worker died continues from the last frame stored:
the simulation is deterministic, so it fast-forwards to that instant (re-applying the
recorded interventions) and goes on, and no reader sees a gap or a duplicate.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from patterns.engine.kernel import Stalled
from patterns.live import MAX_SPEED, MODES, ControlError, LiveRun
from patterns.run import prepare
from patterns.topology import TopologyError
from playground import streams
from playground.models import Run, Topology

log = logging.getLogger(__name__)

FRAME_WALL_MS = 50.0


class BadRequest(ValueError):
    """Invalid input from a client; ``field`` names it (a 400, never a 500)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def document_from(data: Any) -> tuple[dict[str, Any], Topology | None]:
    """The validated document a run request names: a topology, a saved slug or a pattern."""
    if not isinstance(data, dict):
        raise BadRequest("", "the request body must be a JSON object")
    overrides: dict[str, Any] = {}
    seed = data.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise BadRequest("seed", "must be a whole number ≥ 0")
        overrides["seed"] = seed
    baseline = data.get("baseline", False)
    if not isinstance(baseline, bool):
        raise BadRequest("baseline", "must be true or false")
    topology = None
    if "topology" in data:
        source: Any = data["topology"]
        prefix = "topology"
    elif "slug" in data:
        slug = data["slug"]
        if not isinstance(slug, str):
            raise BadRequest("slug", "must be text")
        topology = Topology.objects.filter(slug=slug).first()
        if topology is not None:
            source, prefix = topology.document, "topology"
        else:
            from patterns import catalog

            if slug not in catalog.PATTERNS:
                raise BadRequest("slug", f"no saved topology or pattern called {slug!r}")
            source, prefix = slug, "slug"
    else:
        raise BadRequest("topology", "give a topology document or a slug")
    try:
        document = prepare(source, baseline=baseline, **overrides)
    except TopologyError as exc:
        field = f"{prefix}.{exc.field}" if exc.field and prefix == "topology" else \
            (exc.field or prefix)
        raise BadRequest(field, exc.message) from None
    return document, topology


def create_run(data: Any) -> Run:
    """Validate a run request, store the run and enqueue it. Nothing is stored on error."""
    document, topology = document_from(data)
    speed = data.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) \
            or not 0 < speed <= MAX_SPEED:
        raise BadRequest("speed", f"must be a number above 0 and at most {MAX_SPEED:g}")
    mode = data.get("mode", "live")
    if mode not in MODES:
        raise BadRequest("mode", f"must be one of: {', '.join(MODES)}")
    run = Run.objects.create(
        topology=topology, pattern=document.get("pattern") or "", document=document,
        seed=document["scenario"]["seed"], speed=float(speed), mode=mode)
    from playground.tasks import simulate_run

    transaction.on_commit(lambda: simulate_run.delay(run.id))
    return run


def execute(run_id: str, task_id: str = "") -> None:
    """Run a stored run on this worker; safe to call again for the same run."""
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(id=run_id).first()
        if run is None or run.ended_for_good:
            return
        run.status = Run.Status.RUNNING
        run.started = run.started or timezone.now()
        run.attempts += 1
        run.task_id = task_id
        run.save(update_fields=["status", "started", "attempts", "task_id"])
    r = streams.client()
    live = LiveRun(run.document, run.mode, run.speed)
    try:
        _resume_where_stored(r, run, live)
        _stream(r, run, live)
        status = Run.Status.CANCELLED if live.stopped else Run.Status.FINISHED
        _end(r, run, status, live.seq, live.summary())
    except SoftTimeLimitExceeded:
        _end(r, run, Run.Status.FAILED, live.seq, None,
             "the run took longer than the worker's time limit")
    except Stalled as exc:
        _end(r, run, Run.Status.FAILED, live.seq, None, str(exc))
    except Exception:
        log.exception("run %s failed", run_id)
        _end(r, run, Run.Status.FAILED, live.seq, None, traceback.format_exc(limit=3))


def _resume_where_stored(r: Any, run: Run, live: LiveRun) -> None:
    """After a redelivery: catch up, silently, to the last frame a previous attempt stored."""
    seq, t1 = streams.last_frame(r, run.id)
    if seq == 0:
        return
    for intervention in sorted(run.interventions, key=lambda i: (i["t"], i["seq"])):
        if intervention["t"] > t1:
            break
        live.sim.advance(intervention["t"])
        if intervention["action"] == "inject":
            live.sim.inject(intervention["fault"])
        live.interventions.append(intervention)
    live.sim.advance(t1)
    live.sim.trace.drain()
    live.seq = seq


def _stream(r: Any, run: Run, live: LiveRun) -> None:
    next_tick = time.monotonic()
    while not live.done:
        for message in streams.take_controls(r, run.id):
            try:
                recorded = live.control(message)
            except ControlError as exc:
                log.info("run %s: control refused: %s", run.id, exc)
                continue
            if recorded is not None:
                run.interventions.append(recorded)
                Run.objects.filter(id=run.id).update(interventions=run.interventions)
        if live.paused or live.done:
            streams.heartbeat(r, run.id)
            time.sleep(FRAME_WALL_MS / 1000.0)
            next_tick = time.monotonic()
            continue
        frame = live.step(FRAME_WALL_MS)
        streams.append_frame(r, run.id, frame)
        if live.mode == "live":
            next_tick += FRAME_WALL_MS / 1000.0
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_tick = time.monotonic()


def _end(r: Any, run: Run, status: str, seq: int, summary: dict[str, Any] | None,
         error: str = "") -> None:
    updated = Run.objects.filter(id=run.id, status=Run.Status.RUNNING).update(
        status=status, summary=summary, error=error, ended=timezone.now(), frames=seq)
    if updated:
        streams.append_end(r, run.id, seq, status, summary, error, run.attempts)


def reap_if_orphaned(run: Run) -> Run:
    """A run marked running whose worker stopped beating is failed, not left running."""
    if run.status != Run.Status.RUNNING:
        return run
    r = streams.client()
    if streams.is_alive(r, run.id):
        return run
    started = run.started or run.created
    if (timezone.now() - started).total_seconds() < settings.RUN_HEARTBEAT_S:
        return run
    message = "the worker running it was lost; the run did not finish"
    updated = Run.objects.filter(id=run.id, status=Run.Status.RUNNING).update(
        status=Run.Status.FAILED, error=message, ended=timezone.now(),
        attempts=F("attempts"))
    if updated:
        seq, _ = streams.last_frame(r, run.id)
        streams.append_end(r, run.id, seq, Run.Status.FAILED, None, message, run.attempts)
    run.refresh_from_db()
    return run
