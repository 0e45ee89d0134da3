"""Real processes for the web tests: a Celery worker on the test database and test Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class Worker:
    """A `celery worker` process (prefork, one child) on the test database."""

    def __init__(self, database: str) -> None:
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}",
               "DJANGO_SETTINGS_MODULE": "playground.settings"}
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the e2e tests' browser only
        self.process = subprocess.Popen(
            [str(BIN / "celery"), "-A", "playground", "worker", "--loglevel", "warning",
             "--concurrency", "1", "--without-mingle", "--without-gossip",
             "--hostname", f"test-{os.getpid()}-{time.monotonic_ns()}@%h"],
            cwd=ROOT, env=env, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        from playground.celery import app

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the celery worker exited at start")
            replies = app.control.ping(timeout=0.5)
            if any(f"test-{os.getpid()}" in name for reply in replies for name in reply):
                return
        raise RuntimeError("the celery worker did not answer ping within 30 s")

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                             text=True)
        return [int(pid) for pid in out.stdout.split()]

    def kill_child(self) -> None:
        """What an out-of-memory kill of the process running the task looks like."""
        for pid in self.children():
            os.kill(pid, signal.SIGKILL)

    def kill_all(self) -> None:
        """The whole worker machine gone at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def worker_factory(transactional_db) -> Iterator:
    database = connections["default"].settings_dict["NAME"]
    workers: list[Worker] = []

    def start() -> Worker:
        workers.append(Worker(database))
        return workers[-1]

    yield start
    for w in workers:
        w.stop()


@pytest.fixture
def worker(worker_factory) -> Worker:
    return worker_factory()
