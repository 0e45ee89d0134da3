"""End to end: real Chromium (Playwright) against a real Daphne, a real Celery worker
process and a real Redis, all on the test database.

Playwright's sync API leaves an event loop running in this thread, which Django's async
safety check would mistake for async code: it is switched off once the browser starts,
in the test process only (never in the servers it starts).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from playground.embedded_redis import free_port
from tests.web.conftest import Worker

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SYSTEM_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


class Server:
    """A Daphne process serving the app on a free port."""

    def __init__(self, database: str) -> None:
        self.port = free_port()
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}",
               "DJANGO_SETTINGS_MODULE": "playground.settings"}
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        self.process = subprocess.Popen(
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port),
             "playground.asgi:application"], cwd=ROOT, env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://localhost:{self.port}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        import urllib.request

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("daphne exited: " + self.process.stderr.read().decode())
            try:
                urllib.request.urlopen(self.url + "/api/patterns", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("daphne did not answer within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def stack(transactional_db) -> Iterator[Server]:
    """Daphne and a worker on the test database (committed rows are visible to both)."""
    database = connections["default"].settings_dict["NAME"]
    worker = Worker(database)
    server = Server(database)
    yield server
    server.stop()
    worker.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        options: dict = {"args": CHROMIUM_ARGS}
        if Path(SYSTEM_CHROMIUM).exists():
            options["executable_path"] = SYSTEM_CHROMIUM
        elif not shutil.which("chromium"):
            pytest.skip("no Chromium: `make test` installs one")
        b = p.chromium.launch(**options)
        yield b
        b.close()


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  base_url=stack.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run one after another on one xdist worker (``--dist loadgroup``): two
    stacks of Daphne, a Celery worker and Chromium at once on a two-core machine make
    paced runs fall behind the wall clock the tests wait on."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group("browser"))
