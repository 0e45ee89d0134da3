"""Streaming benchmark: the real pipeline, from `POST /api/runs` to a websocket client.

Starts its own stack on this machine (a private Redis unless REDIS_URL is set, a Celery
worker with one process, Daphne, and a throwaway SQLite database), warms the worker with
one run, then measures, as medians over repeated runs:

1. events/s delivered to one websocket client in fast mode: 150 services behind a load
   balancer under a light load (100 req/s), so each simulated second carries ~150 metric
   events and the pipeline, not the simulation, is what is measured; the client
   acknowledges every frame as the page does. Counted from the first frame to the end.
2. the same for a live run at the top speed (1000×), where every message is an event.
3. the time from `POST /api/runs` to the first frame on an already open page: POST, then
   connect to the run's websocket and wait for a frame (the run is stopped right after).

Usage: python bench/stream.py [--repeat N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"


def wide_topology(services: int, duration_s: float) -> dict[str, Any]:
    nodes = [{"id": "users", "kind": "client", "params": {"rate_rps": 100}},
             {"id": "lb", "kind": "load_balancer", "params": {"algorithm": "round_robin"}}]
    edges = [{"id": "users-lb", "from": "users", "to": "lb"}]
    for i in range(services):
        nodes.append({"id": f"s{i}", "kind": "service", "params": {"workers": 4}})
        edges.append({"id": f"lb-s{i}", "from": "lb", "to": f"s{i}"})
    return {"title": "Wide fan-out", "nodes": nodes, "edges": edges,
            "scenario": {"duration_s": duration_s, "seed": 1}}


def busy_topology(duration_s: float) -> dict[str, Any]:
    return {"title": "Busy chain", "nodes": [
        {"id": "users", "kind": "client", "params": {"rate_rps": 2000}},
        {"id": "api", "kind": "service", "params": {"workers": 64}},
        {"id": "db", "kind": "database", "params": {"pool_size": 64}}],
        "edges": [{"id": "users-api", "from": "users", "to": "api"},
                  {"id": "api-db", "from": "api", "to": "db"}],
        "scenario": {"duration_s": duration_s, "seed": 1}}


class Stack:
    """Redis (private unless REDIS_URL is set), a warm worker and Daphne."""

    def __init__(self) -> None:
        from playground import embedded_redis

        self.tmp = tempfile.mkdtemp(prefix="bench-stream-")
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "playground.settings",
                    "DATABASE_URL": f"sqlite:///{self.tmp}/bench.sqlite3"}
        self.children: list[subprocess.Popen[bytes]] = []
        if not self.env.get("REDIS_URL"):
            redis_process, self.env["REDIS_URL"] = embedded_redis.start()
            self.children.append(redis_process)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT,
                       env=self.env, check=True)
        self.children.append(subprocess.Popen(
            [str(BIN / "celery"), "-A", "playground", "worker", "--loglevel", "error",
             "--concurrency", "1", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.port = embedded_redis.free_port()
        self.children.append(subprocess.Popen(
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port),
             "playground.asgi:application"], cwd=ROOT, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.http + "/api/patterns", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def post_run(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(self.http + "/api/runs", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            return dict(json.load(response))

    def stop(self) -> None:
        for child in reversed(self.children):
            child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


async def consume(stack: Stack, ws_url: str) -> tuple[int, int, float]:
    """Read a run to its end, acknowledging every frame; (frames, events, seconds)."""
    frames = events = 0
    first = 0.0
    async with websockets.connect(stack.ws + ws_url, origin=f"http://127.0.0.1:{stack.port}",
                                  max_size=None) as ws:
        async for text in ws:
            message = json.loads(text)
            if message.get("type") == "end":
                break
            if not frames:
                first = time.perf_counter()
            frames += 1
            events += len(message["events"])
            await ws.send(json.dumps({"action": "ack", "seq": message["seq"]}))
    return frames, events, time.perf_counter() - first


async def first_frame(stack: Stack) -> float:
    """Seconds from POST /api/runs to the first frame on the run's websocket."""
    start = time.perf_counter()
    run = stack.post_run({"slug": "request-response", "mode": "live", "speed": 1})
    async with websockets.connect(stack.ws + run["ws_url"],
                                  origin=f"http://127.0.0.1:{stack.port}") as ws:
        json.loads(await ws.recv())
        elapsed = time.perf_counter() - start
        await ws.send(json.dumps({"action": "stop"}))
        async for text in ws:
            if json.loads(text).get("type") == "end":
                break
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="short runs, 1 repeat")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    duration = 60 if args.quick else 600
    stack = Stack()
    try:
        warm = stack.post_run({"slug": "request-response", "mode": "fast"})
        asyncio.run(consume(stack, warm["ws_url"]))

        rows: dict[str, list[float]] = {"fast": [], "live_1000x": [], "first_frame_ms": []}
        for _ in range(repeat):
            run = stack.post_run({"topology": wide_topology(150, duration), "mode": "fast"})
            _, events, seconds = asyncio.run(consume(stack, run["ws_url"]))
            rows["fast"].append(events / seconds)
            run = stack.post_run({"topology": busy_topology(duration / 10), "mode": "live",
                                  "speed": 1000})
            _, events, seconds = asyncio.run(consume(stack, run["ws_url"]))
            rows["live_1000x"].append(events / seconds)
        for _ in range(5 if args.quick else 20):
            rows["first_frame_ms"].append(asyncio.run(first_frame(stack)) * 1000)
    finally:
        stack.stop()

    medians = {name: statistics.median(values) for name, values in rows.items()}
    print(f"{'measure':<40}{'median':>14}{'runs':>6}")
    print(f"{'events/s to one client, fast mode':<40}{medians['fast']:>14,.0f}"
          f"{len(rows['fast']):>6}")
    print(f"{'events/s to one client, live at 1000x':<40}{medians['live_1000x']:>14,.0f}"
          f"{len(rows['live_1000x']):>6}")
    print(f"{'POST /api/runs to first frame (ms)':<40}{medians['first_frame_ms']:>14,.1f}"
          f"{len(rows['first_frame_ms']):>6}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stream.json").write_text(json.dumps({"medians": medians, "runs": rows},
                                                    indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
