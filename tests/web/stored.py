"""Runs stored the way a worker stores them, made in the test process (no worker needed)."""

from __future__ import annotations

from typing import Any

from patterns.live import LiveRun
from patterns.run import prepare
from playground import streams
from playground.models import Run


def stored_run(slug: str = "request-response", *, duration_s: float = 4, mode: str = "live",
               speed: float = 2.0,
               controls: dict[int, list[dict[str, Any]]] | None = None) -> Run:
    """A finished (or, after a stop, cancelled) run whose frames are in its Redis stream.

    ``controls`` maps a frame number to the control messages applied before it, as the
    worker applies what browsers send between frames.
    """
    document = prepare(slug, duration_s=duration_s)
    run = Run.objects.create(pattern=slug, document=document,
                             seed=document["scenario"]["seed"], speed=speed, mode=mode,
                             status=Run.Status.RUNNING)
    live = LiveRun(document, mode, speed)
    r = streams.client()
    while not live.done:
        for message in (controls or {}).get(live.seq, []):
            live.control(message)
        if live.done:
            break
        streams.append_frame(r, run.id, live.step(50.0))
    run.status = Run.Status.CANCELLED if live.stopped else Run.Status.FINISHED
    run.interventions = live.interventions
    run.summary = live.summary()
    run.frames = live.seq
    run.save()
    streams.append_end(r, run.id, live.seq, run.status, run.summary)
    return run


def forget(run_id: str) -> None:
    """Remove every Redis key of a run (what expiry does, all at once)."""
    r = streams.client()
    r.delete(streams.stream_key(run_id), streams.control_key(run_id),
             streams.alive_key(run_id), f"run:{run_id}:verified", f"run:{run_id}:refill")
