"""`make run`: migrate, then start Redis (unless REDIS_URL is set), Daphne and a Celery
worker together, print the URL, and stop all of them on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from playground import embedded_redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> int:
    # Stop (and stop everything below) when whoever started us goes, `make` included.
    embedded_redis.die_with_parent()
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    port = env.get("PORT", "8000")
    host = env.get("HOST", "127.0.0.1")
    children: list[subprocess.Popen[bytes]] = []
    if not env.get("REDIS_URL"):
        redis_process, env["REDIS_URL"] = embedded_redis.start(
            int(env.get("REDIS_PORT", "6390")))
        children.append(redis_process)
        print(f"Private Redis at {env['REDIS_URL']} (set REDIS_URL to use your own)")
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run([sys.executable, "manage.py", *command, "-v", "0"],
                       cwd=ROOT, env=env, check=True)
    children.append(subprocess.Popen(
        [str(BIN / "celery"), "-A", "playground", "worker", "--loglevel", "warning",
         "--concurrency", env.get("WORKERS", "2")], cwd=ROOT, env=env,
        preexec_fn=embedded_redis.die_with_parent))
    children.append(subprocess.Popen(
        [str(BIN / "daphne"), "-b", host, "-p", port, "playground.asgi:application"],
        cwd=ROOT, env=env, preexec_fn=embedded_redis.die_with_parent))
    print(f"\n  Patterns Playground: http://{'localhost' if host == '127.0.0.1' else host}"
          f":{port}/\n  Ctrl-C stops it.\n", flush=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("A process stopped; stopping the others.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    sys.exit(main())
