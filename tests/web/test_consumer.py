"""The run websocket, with Channels' WebsocketCommunicator against a real Redis."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.testing import WebsocketCommunicator

from playground import streams
from playground.asgi import application
from playground.consumers import WINDOW
from playground.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = [(b"origin", b"http://localhost")]


@pytest.fixture
def run():
    run = Run.objects.create(pattern="request-response", document={"scenario": {}}, seed=1,
                             status=Run.Status.RUNNING)
    yield run
    streams.client().delete(streams.stream_key(run.id), streams.control_key(run.id),
                            streams.alive_key(run.id))


def store(run_id: str, first: int, last: int, end: bool = False) -> None:
    r = streams.client()
    for seq in range(first, last + 1):
        streams.append_frame(r, run_id, {"seq": seq, "t0": (seq - 1) * 50.0,
                                         "t1": seq * 50.0, "events": [{"t": seq, "k": "x"}]})
    if end:
        streams.append_end(r, run_id, last, "finished", {"requests": {"sent": 1}})


def in_own_loop(coroutine_function) -> None:
    """Run a coroutine on a fresh event loop in its own thread: the end-to-end tests'
    Playwright may already run a loop in this thread of the same test process."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine_function()).result()


def communicate(path: str, script) -> None:
    async def main():
        ws = WebsocketCommunicator(application, path, headers=ORIGIN)
        connected, code = await ws.connect()
        try:
            await script(ws, connected, code)
        finally:
            await ws.disconnect()
    in_own_loop(main)


async def frames(ws, count: int) -> list[dict]:
    return [json.loads(await ws.receive_from(timeout=3)) for _ in range(count)]


def test_it_sends_every_frame_after_the_one_asked_then_the_end(run):
    store(run.id, 1, 10, end=True)

    async def script(ws, connected, _):
        assert connected
        got = await frames(ws, 6)
        assert [f["seq"] for f in got] == [5, 6, 7, 8, 9, 10]
        end = json.loads(await ws.receive_from(timeout=3))
        assert end == {"type": "end", "status": "finished",
                       "summary": {"requests": {"sent": 1}}, "error": None, "attempts": 1}

    communicate(f"/ws/runs/{run.id}/?after=4", script)


def test_a_reconnecting_reader_loses_no_frame(run):
    store(run.id, 1, 5)
    seen = []

    async def first(ws, connected, _):
        seen.extend(f["seq"] for f in await frames(ws, 5))

    communicate(f"/ws/runs/{run.id}/", first)
    store(run.id, 6, 12, end=True)  # frames written while nobody was connected

    async def second(ws, connected, _):
        seen.extend(f["seq"] for f in await frames(ws, 7))
        assert json.loads(await ws.receive_from(timeout=3))["type"] == "end"

    communicate(f"/ws/runs/{run.id}/?after={seen[-1]}", second)
    assert seen == list(range(1, 13))


def test_frames_wait_for_the_clients_acknowledgements(run):
    store(run.id, 1, WINDOW + 20)

    async def script(ws, connected, _):
        got = await frames(ws, WINDOW)
        assert got[-1]["seq"] == WINDOW
        assert await ws.receive_nothing(timeout=0.5)  # a slow client holds the stream back
        await ws.send_to(text_data=json.dumps({"action": "ack", "seq": 10}))
        more = await frames(ws, 10)
        assert [f["seq"] for f in more] == list(range(WINDOW + 1, WINDOW + 11))
        assert await ws.receive_nothing(timeout=0.3)

    communicate(f"/ws/runs/{run.id}/", script)


def test_controls_are_handed_to_the_worker(run):
    async def script(ws, connected, _):
        await ws.send_to(text_data=json.dumps({"action": "speed", "value": 4}))
        await ws.send_to(text_data=json.dumps({"action": "pause"}))
        await asyncio.sleep(0.2)

    communicate(f"/ws/runs/{run.id}/", script)
    assert streams.take_controls(streams.client(), run.id) == [
        {"action": "speed", "value": 4}, {"action": "pause"}]


@pytest.mark.parametrize(("message", "field"), [
    ({"action": "warp"}, "action"),
    ({"action": "speed", "value": -1}, "value"),
    ({"action": "speed", "value": "fast"}, "value"),
    ("not json {", ""),
])
def test_a_bad_control_gets_an_error_naming_the_field(run, message, field):
    async def script(ws, connected, _):
        text = message if isinstance(message, str) else json.dumps(message)
        await ws.send_to(text_data=text)
        reply = json.loads(await ws.receive_from(timeout=3))
        assert reply["type"] == "error" and reply["field"] == field and reply["error"]

    communicate(f"/ws/runs/{run.id}/", script)
    assert streams.take_controls(streams.client(), run.id) == []


def test_an_unknown_run_is_refused():
    async def script(ws, connected, code):
        assert not connected
        assert code == 4404

    communicate("/ws/runs/nope/", script)


def test_a_foreign_origin_is_refused(run):
    async def main():
        ws = WebsocketCommunicator(application, f"/ws/runs/{run.id}/",
                                   headers=[(b"origin", b"http://evil.example")])
        connected, _ = await ws.connect()
        assert not connected
    in_own_loop(main)
