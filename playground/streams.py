"""Redis keys of a run: its frame stream, its control list and its worker heartbeat.

- ``run:<id>`` is a stream whose entry ids are ``<seq>-0``, so a reader that holds frame
  ``seq`` asks for everything after ``<seq>-0`` and misses nothing; the last entry (field
  ``end``) says how the run ended. It is capped per run and expires a while after the end.
- ``run:<id>:control`` is a list of control messages from browsers, taken by the worker
  between frames.
- ``run:<id>:alive`` is refreshed by the worker every frame; when it lapses while the run
  says "running", the worker is gone (see :func:`playground.runs.reap_if_orphaned`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
import redis
import redis.asyncio
from django.conf import settings


def stream_key(run_id: str) -> str:
    return f"run:{run_id}"


def control_key(run_id: str) -> str:
    return f"run:{run_id}:control"


def alive_key(run_id: str) -> str:
    return f"run:{run_id}:alive"


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def async_client() -> redis.asyncio.Redis:
    # One per consumer: an asyncio client is bound to the event loop that made it.
    return redis.asyncio.Redis.from_url(settings.REDIS_URL)


def last_frame(r: redis.Redis, run_id: str) -> tuple[int, float]:
    """(seq, t1) of the last frame stored, or (0, 0.0) when there is none."""
    key = stream_key(run_id)
    for entry_id, fields in r.xrevrange(key, count=2):
        if b"f" in fields:
            frame = orjson.loads(fields[b"f"])
            return int(entry_id.split(b"-")[0]), float(frame["t1"])
    return 0, 0.0


def heartbeat(r: redis.Redis, run_id: str) -> None:
    r.set(alive_key(run_id), "1", ex=settings.RUN_HEARTBEAT_S)


def append_frame(r: redis.Redis, run_id: str, frame: dict[str, Any]) -> None:
    pipe = r.pipeline()
    pipe.xadd(stream_key(run_id), {"f": orjson.dumps(frame)}, id=f"{frame['seq']}-0",
              maxlen=settings.RUN_STREAM_MAXLEN, approximate=True)
    pipe.set(alive_key(run_id), "1", ex=settings.RUN_HEARTBEAT_S)
    pipe.execute()


def append_end(r: redis.Redis, run_id: str, seq: int, status: str,
               summary: dict[str, Any] | None, error: str = "", attempts: int = 1,
               extra: dict[str, Any] | None = None) -> None:
    """Close the stream: readers learn the run ended, how, and its summary (``extra``
    adds keys to the end message, e.g. ``resimulated`` for a re-filled stream)."""
    key = stream_key(run_id)
    last = r.xrevrange(key, count=1)
    if last and b"end" in last[0][1]:
        return
    top = int(last[0][0].split(b"-")[0]) if last else 0
    end = {"type": "end", "status": status, "summary": summary, "error": error or None,
           "attempts": attempts, **(extra or {})}
    pipe = r.pipeline()
    pipe.xadd(key, {"end": orjson.dumps(end)}, id=f"{max(seq, top) + 1}-0")
    pipe.expire(key, settings.RUN_STREAM_TTL_S)
    pipe.delete(alive_key(run_id), control_key(run_id))
    pipe.execute()


def push_control(r: redis.Redis, run_id: str, message: dict[str, Any]) -> None:
    r.rpush(control_key(run_id), orjson.dumps(message))
    r.expire(control_key(run_id), settings.RUN_STREAM_TTL_S)


async def push_control_async(r: redis.asyncio.Redis, run_id: str,
                             message: dict[str, Any]) -> None:
    await r.rpush(control_key(run_id), orjson.dumps(message))
    await r.expire(control_key(run_id), settings.RUN_STREAM_TTL_S)


def take_controls(r: redis.Redis, run_id: str) -> list[dict[str, Any]]:
    """Every control message waiting, oldest first; they are removed."""
    pipe = r.pipeline()
    pipe.lrange(control_key(run_id), 0, -1)
    pipe.delete(control_key(run_id))
    raw, _ = pipe.execute()
    out = []
    for item in raw:
        try:
            message = orjson.loads(item)
        except orjson.JSONDecodeError:
            continue
        if isinstance(message, dict):
            out.append(message)
    return out


def is_alive(r: redis.Redis, run_id: str) -> bool:
    return bool(r.exists(alive_key(run_id)))
