"""The run websocket: frames from the run's Redis stream, at the client's pace; controls back.

``/ws/runs/<id>/?after=<seq>`` sends every frame after ``seq`` in order, then
``{"type": "end", ...}``. The client acknowledges frames (``{"action": "ack", "seq": n}``);
at most ``WINDOW`` frames are sent ahead of the last acknowledgement, so a slow browser
makes the consumer read the stream more slowly instead of growing the server's memory.
Control messages (pause, resume, speed, stop, inject) are checked here, so a bad one gets
an error naming its field at once, and are handed to the worker through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from patterns.live import MAX_SPEED, ControlError, validate_live_fault
from playground import replays, streams
from playground.models import Run
from playground.runs import reap_if_orphaned

WINDOW = 32
BLOCK_MS = 1000
CONTROLS = ("pause", "resume", "speed", "stop", "inject")


@database_sync_to_async
def _load_run(run_id: str) -> Run | None:
    run = Run.objects.filter(id=run_id).first()
    return reap_if_orphaned(run) if run is not None else None


def _check_control(message: Any, run: Run) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise ControlError("action", "a control message is a JSON object")
    action = message.get("action")
    if action not in CONTROLS:
        raise ControlError("action", f"must be one of: ack, {', '.join(CONTROLS)}")
    if action == "speed":
        value = message.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 < value <= MAX_SPEED:
            raise ControlError("value", f"must be a number above 0 and at most {MAX_SPEED:g}")
    if action == "inject":
        # Checked against the document now; the worker applies it at its next frame.
        validate_live_fault(message.get("fault"), run.document, 0.0)
    return {k: message[k] for k in ("action", "value", "fault") if k in message}


class RunConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.run_id: str = self.scope["url_route"]["kwargs"]["run_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            self.after = max(0, int(query.get("after", ["0"])[0]))
        except ValueError:
            self.after = 0
        run = await _load_run(self.run_id)
        if run is None:
            await self.close(code=4404)
            return
        self.run = run
        self.redis = streams.async_client()
        self.sent_seq = self.after
        self.acked_seq = self.after
        self.credit = asyncio.Event()
        self.credit.set()
        await self.accept()
        self.pump = asyncio.create_task(self._pump())

    async def disconnect(self, code: int) -> None:
        pump = getattr(self, "pump", None)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        r = getattr(self, "redis", None)
        if r is not None:
            await r.aclose()

    async def _pump(self) -> None:
        key = streams.stream_key(self.run_id)
        last_id = f"{self.after}-0"
        while True:
            await self.credit.wait()
            room = WINDOW - (self.sent_seq - self.acked_seq)
            result = await self.redis.xread({key: last_id}, count=max(1, room), block=BLOCK_MS)
            if not result:
                if await self._ended_without_stream():
                    return
                continue
            for entry_id, fields in result[0][1]:
                last_id = entry_id.decode()
                if b"end" in fields:
                    await self.send(text_data=fields[b"end"].decode())
                    await self.close()
                    return
                await self.send(text_data=fields[b"f"].decode())
                self.sent_seq = int(last_id.split("-")[0])
            if self.sent_seq - self.acked_seq >= WINDOW:
                self.credit.clear()

    async def _ended_without_stream(self) -> bool:
        """A run that ended and whose stream is gone (expired) is played again: a worker
        re-simulates it into the stream (:func:`playground.replays.refill`) and the pump
        reads that as usual. A failed run, or a re-fill that never comes, still says how
        the run ended."""
        run = await _load_run(self.run_id)
        if run is None or not run.ended_for_good:
            return False
        if await self.redis.exists(streams.stream_key(self.run_id)):
            return False
        if run.status in replays.REPLAYABLE:
            asked = getattr(self, "refill_asked", None)
            if asked is None:
                self.refill_asked = time.monotonic()
                await database_sync_to_async(replays.request_refill)(self.run_id)
                return False
            if time.monotonic() - asked < replays.REFILL_WAIT_S:
                return False
        await self.send(text_data=orjson.dumps({
            "type": "end", "status": run.status, "summary": run.summary,
            "error": run.error or None, "attempts": run.attempts}).decode())
        await self.close()
        return True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = orjson.loads(text_data or bytes_data or b"")
        except orjson.JSONDecodeError:
            await self._error("", "a message must be JSON")
            return
        if isinstance(message, dict) and message.get("action") == "ack":
            seq = message.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self.acked_seq = max(self.acked_seq, min(seq, self.sent_seq))
                self.credit.set()
            return
        try:
            control = _check_control(message, self.run)
        except ControlError as exc:
            await self._error(exc.field, exc.message)
            return
        await streams.push_control_async(self.redis, self.run_id, control)

    async def _error(self, field: str, message: str) -> None:
        await self.send(text_data=orjson.dumps(
            {"type": "error", "error": message, "field": field}).decode())
