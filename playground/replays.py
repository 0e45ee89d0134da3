"""A stored run's events again: from its Redis stream, or re-simulated; verified; exported.

A run's frames stay in its Redis stream for ``RUN_STREAM_TTL_S`` after it ends. After
that, a finished or cancelled run is re-simulated from its stored document (which holds
the seed) and its recorded interventions with :func:`patterns.live.replay`: the
simulation is deterministic, so this gives the same events, byte for byte.

- :func:`verify` re-simulates a run and compares every event with the frames the worker
  stored, as their JSON bytes (the stream holds ``orjson.dumps(frame)`` of the very dicts
  the simulation produced, and orjson reproduces its own output exactly, so comparing the
  re-encoded events is comparing the stored bytes).
- :func:`refill` writes re-simulated frames to an expired stream so ``/r/<id>`` can play
  the run again through the ordinary websocket; its end message says ``resimulated``, so a
  later verification does not compare the re-simulation with itself.
- :func:`events` is what the JSONL and CSV exports stream.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

import orjson
import redis
from django.conf import settings

from patterns.live import FAST_SLICE_MS, MAX_FRAME_EVENTS, replay
from playground import streams
from playground.models import Run

# Runs that can be re-simulated: a failed run stopped somewhere a re-simulation would not.
REPLAYABLE = (Run.Status.FINISHED, Run.Status.CANCELLED)
# Verification runs in the request (re-simulating ~200k events/s, reading the stream
# about as fast): a 60 s pattern run of ~100k events takes about a second. Past this many
# events it gives up and says so rather than hold a web worker for minutes.
MAX_VERIFY_EVENTS = 2_000_000
# Simulated time per re-simulated frame when a live run is played again (the original's
# frames were cut by wall time, which a re-simulation does not have).
REPLAY_SLICE_MS = 250.0
# How long a websocket waits for a requested re-fill before it gives up on it.
REFILL_WAIT_S = 30.0
READ_BATCH = 200


def verdict_key(run_id: str) -> str:
    return f"run:{run_id}:verified"


def refill_key(run_id: str) -> str:
    return f"run:{run_id}:refill"


# ---- the stored stream ----------------------------------------------------------------------

def _entries(r: redis.Redis, run_id: str) -> Iterator[tuple[int, dict[bytes, bytes]]]:
    """(seq, fields) of every entry of the run's stream, oldest first, read in batches."""
    key = streams.stream_key(run_id)
    start = "-"
    while True:
        batch = r.xrange(key, min=start, count=READ_BATCH)
        if not batch:
            return
        for entry_id, fields in batch:
            yield int(entry_id.split(b"-")[0]), fields
        start = "(" + batch[-1][0].decode()
        if len(batch) < READ_BATCH:
            return


def stored_events(r: redis.Redis, run_id: str) -> Iterator[dict[str, Any]]:
    """Every event of the frames in the run's stream, in order (nothing when it is gone)."""
    for _, fields in _entries(r, run_id):
        if b"f" in fields:
            yield from orjson.loads(fields[b"f"])["events"]


def _stream_problem(r: redis.Redis, run_id: str) -> str:
    """Why the stream cannot be compared with a re-simulation, or "" when it can."""
    key = streams.stream_key(run_id)
    if not r.exists(key):
        return ("the run's frames are no longer stored (they are kept for "
                f"{settings.RUN_STREAM_TTL_S // 3600} h after a run ends), so there is "
                "nothing to compare a re-simulation with")
    first = r.xrange(key, count=1)
    last = r.xrevrange(key, count=1)
    if not first or first[0][0] != b"1-0":
        return "the stream was trimmed: its first frames are gone"
    if b"end" not in last[0][1]:
        return "the stream has no end"
    end = orjson.loads(last[0][1][b"end"])
    if end.get("resimulated"):
        return ("the original frames expired and were re-simulated to play the run again; "
                "comparing them with a re-simulation would prove nothing")
    top = int(last[0][0].split(b"-")[0])
    if r.xlen(key) != top:
        return "the stream has a gap: some frames are missing"
    return ""


def resimulated_events(run: Run) -> Iterator[dict[str, Any]]:
    """The run's events, simulated again from its document and recorded interventions."""
    return replay(run.document, run.interventions, run.mode)


def events(run: Run) -> Iterator[dict[str, Any]] | None:
    """The run's events for an export: from its stream while it lasts, else re-simulated;
    ``None`` when neither is possible (a failed run whose frames have expired)."""
    r = streams.client()
    if r.exists(streams.stream_key(run.id)):
        return stored_events(r, run.id)
    if run.status in REPLAYABLE:
        return resimulated_events(run)
    return None


# ---- verification ---------------------------------------------------------------------------

def verify(run: Run) -> dict[str, Any]:
    """Compare the run's stored event stream with a re-simulation, event by event.

    Returns ``{"verified": true | false | null, "events": n, "first_difference": ...,
    "reason": ..., "sha256": ...}``: ``null`` when nothing can be compared (the reason
    says why); ``first_difference`` is ``{"index", "stored", "replayed"}`` at the first
    event whose bytes differ (an absent event is ``null``). A definite verdict is kept
    as long as the stream it judged.
    """
    if run.status not in REPLAYABLE:
        return _unknown(f"a {run.status} run is not re-simulated: "
                        + ("it has not ended yet" if not run.ended_for_good
                           else "it did not run to its end"))
    r = streams.client()
    cached = r.get(verdict_key(run.id))
    if cached:
        result: dict[str, Any] = orjson.loads(cached)
        return result
    problem = _stream_problem(r, run.id)
    if problem:
        return _unknown(problem)
    started = time.monotonic()
    digest = hashlib.sha256()
    pairs = itertools.zip_longest(stored_events(r, run.id), resimulated_events(run))
    count = 0
    for index, (stored, replayed) in enumerate(pairs):
        a = orjson.dumps(stored) if stored is not None else b""
        b = orjson.dumps(replayed) if replayed is not None else b""
        if a != b:
            result = {"verified": False, "events": index,
                      "first_difference": {"index": index, "stored": stored,
                                           "replayed": replayed},
                      "reason": f"event {index} differs", "sha256": None}
            break
        digest.update(a)
        count = index + 1
        if count > MAX_VERIFY_EVENTS:
            return _unknown(f"the run has more than {MAX_VERIFY_EVENTS:,} events, too many "
                            "to verify on request", events=count)
    else:
        result = {"verified": True, "events": count, "first_difference": None,
                  "reason": "", "sha256": digest.hexdigest()}
    result["seconds"] = round(time.monotonic() - started, 3)
    ttl = r.ttl(streams.stream_key(run.id))
    if ttl > 0:
        r.set(verdict_key(run.id), orjson.dumps(result), ex=ttl)
    return result


def _unknown(reason: str, events: int = 0) -> dict[str, Any]:
    return {"verified": None, "events": events, "first_difference": None, "reason": reason,
            "sha256": None}


# ---- playing an expired run again -----------------------------------------------------------

def resimulated_frames(run: Run) -> Iterator[dict[str, Any]]:
    """The re-simulated events cut into frames the page plays like the original ones.

    Frames cover ``REPLAY_SLICE_MS`` of simulated time (fast runs: the fast slice) and are
    cut early at ``MAX_FRAME_EVENTS``; a slice with no events makes no frame, the next one
    starts where the last ended. The last frame ends at the last event, or at the stop.
    """
    slice_ms = FAST_SLICE_MS if run.mode == Run.Mode.FAST else REPLAY_SLICE_MS
    seq, start, end = 0, 0.0, slice_ms
    batch: list[dict[str, Any]] = []
    last_t = 0.0
    for event in resimulated_events(run):
        t = float(event["t"])
        if t > end:
            if batch:
                seq += 1
                yield _frame(seq, start, end, batch)
                batch, start = [], end
            while t > end:
                end += slice_ms
        elif len(batch) >= MAX_FRAME_EVENTS:
            seq += 1
            yield _frame(seq, start, last_t, batch)
            batch, start = [], last_t
        batch.append(event)
        last_t = t
    stops = [float(i["t"]) for i in run.interventions if i.get("action") == "stop"]
    seq += 1
    yield _frame(seq, start, max([start, last_t, *stops]), batch)


def _frame(seq: int, t0: float, t1: float, batch: list[dict[str, Any]]) -> dict[str, Any]:
    return {"seq": seq, "t0": round(t0, 3), "t1": round(t1, 3), "events": batch}


def request_refill(run_id: str) -> bool:
    """Ask a worker, once per ``REFILL_WAIT_S``, to re-fill an expired run's stream.

    Returns whether this call asked (the websocket waits for the frames either way).
    """
    if not streams.client().set(refill_key(run_id), "1", nx=True, ex=int(REFILL_WAIT_S)):
        return False
    from playground.tasks import refill_stream

    refill_stream.delay(run_id)
    return True


def refill(run_id: str) -> int:
    """Write a finished or cancelled run's re-simulated frames to its (expired) stream.

    Does nothing when the stream exists (it was never gone, or another worker refilled
    it). Returns the number of frames written. The end message carries the stored status
    and summary, and ``resimulated: true``.
    """
    run = Run.objects.filter(id=run_id).first()
    if run is None or run.status not in REPLAYABLE:
        return 0
    r = streams.client()
    if r.exists(streams.stream_key(run_id)):
        return 0
    seq = 0
    for frame in resimulated_frames(run):
        streams.append_frame(r, run_id, frame)
        seq = frame["seq"]
    streams.append_end(r, run_id, seq, run.status, run.summary, run.error, run.attempts,
                       extra={"resimulated": True})
    return seq
