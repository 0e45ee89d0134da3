"""Clients: where requests come from.

Open loop (``concurrency`` 0): requests arrive at ``rate_rps`` whatever happens to earlier
ones, Poisson by default; this is how a public service is loaded and how queues explode.
Closed loop (``concurrency`` N): N users each send, wait for the answer, think, and send
again, so a slow system is offered less load.

Each request carries a key drawn from ``keys`` keys (uniform, Zipf with ``key_skew``, or a
hotspot), and is a read or a write by ``read_ratio``; with ``key_seq`` it carries its key's
sequence number (``headers["seq"]``: 1, 2, 3… per key), so a consumer's order can be
checked. With ``timeout_ms`` the client gives up on a request after that long (outcome
``timed_out``) whatever the edges do.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

from patterns.engine import messages as m
from patterns.engine.distributions import parse
from patterns.engine.kernel import Entry, Kernel
from patterns.engine.network import Call, Invocation
from patterns.engine.node import Node, register_kind
from patterns.params import Param

ARRIVALS = ("poisson", "constant", "bursty")
KEY_DISTS = ("uniform", "zipf", "hotspot")


def _key_cdf(keys: int, dist: str, skew: float, hot_share: float) -> list[float] | None:
    """Cumulative key weights, or None for uniform keys."""
    if dist == "uniform" or keys == 1:
        return None
    if dist == "zipf":
        weights = [1.0 / (i ** skew) for i in range(1, keys + 1)]
    else:
        # Hotspot: 10% of the keys take ``hot_share`` of the traffic.
        hot = max(1, keys // 10)
        weights = [hot_share / hot] * hot + [(1 - hot_share) / max(1, keys - hot)] * (keys - hot)
    return list(itertools.accumulate(weights))


class _Pending:
    """What the client keeps about a request it may give up on, or a user who waits."""

    __slots__ = ("handle", "timer", "user")

    def __init__(self, user: int | None) -> None:
        self.handle: Call | Invocation | None = None
        self.timer: Entry | None = None
        self.user = user


@register_kind
class Client(Node):
    KIND = "client"
    LABEL = "Client"
    DESCRIPTION = "Sends requests: open loop at a rate, or closed loop with N users."
    PARAMS = (
        Param("rate_rps", "float", 10.0, unit="req/s", min=0, max=100_000,
              help="Open loop: mean arrival rate."),
        Param("arrival", "choice", "poisson", choices=ARRIVALS,
              help="Open loop: Poisson arrivals, evenly spaced, or bursts of burst_size."),
        Param("burst_size", "int", 10, min=1, max=10_000, help="Bursty: requests per burst."),
        Param("concurrency", "int", 0, min=0, max=100_000,
              help="Closed loop: number of users (0 = open loop at rate_rps)."),
        Param("think_time_ms", "dist", 0.0, unit="ms", max=3_600_000,
              help="Closed loop: pause between a reply and the next request."),
        Param("timeout_ms", "float", None, unit="ms", min=0, max=3_600_000, nullable=True,
              exclusive_min=True, help="Give up on a request after this long."),
        Param("keys", "int", 1000, min=1, max=1_000_000, help="Distinct keys requests use."),
        Param("key_dist", "choice", "uniform", choices=KEY_DISTS),
        Param("key_skew", "float", 0.99, min=0, max=5, help="Zipf exponent s."),
        Param("hot_share", "float", 0.9, min=0, max=1,
              help="Hotspot: traffic share of the hottest 10% of keys."),
        Param("read_ratio", "float", 1.0, min=0, max=1, help="Share of reads among requests."),
        Param("payload_bytes", "int", 1024, unit="B", min=0, max=100_000_000),
        Param("start_s", "float", 0.0, unit="s", min=0, max=3600,
              help="When the client starts sending."),
        Param("key_seq", "bool", False,
              help="Number each key's requests 1, 2, 3… in the header seq (to check "
                   "per-key order downstream)."),
    )

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        p = self.p
        self.rate_multiplier = 1.0
        self._interarrival = self.rng.expovariate
        self._cdf = _key_cdf(p["keys"], p["key_dist"], p["key_skew"], p["hot_share"])
        self._think = parse(p["think_time_ms"]).sampler(self.rng)
        self.in_flight = 0
        self.sent = 0
        self._cum_weights: list[float] = []
        # The next open-loop arrival, so the chain is never doubled (nor lost) when the
        # rate drops to 0 and comes back.
        self._next_arrival: Entry | None = None
        self._key_seqs: dict[str, int] = {}

    def start(self) -> None:
        self._cum_weights = list(itertools.accumulate(e.weight for e in self.out_edges))
        if not self.out_edges:
            return
        start_ms = self.p["start_s"] * 1000.0
        if self.p["concurrency"] > 0:
            for user in range(self.p["concurrency"]):
                self.kernel.schedule(start_ms, self._user_send, user)
        elif self.p["rate_rps"] > 0:
            self._next_arrival = self.kernel.schedule(start_ms + self._gap(), self._arrive)

    def set_rate_multiplier(self, factor: float) -> None:
        self.rate_multiplier = factor
        self._resume_arrivals()

    def set_param(self, name: str, value: Any) -> None:
        self.p[name] = value
        p = self.p
        if name in ("keys", "key_dist", "key_skew", "hot_share"):
            self._cdf = _key_cdf(p["keys"], p["key_dist"], p["key_skew"], p["hot_share"])
        elif name == "think_time_ms":
            self._think = parse(value).sampler(self.rng)
        elif name == "rate_rps":
            self._resume_arrivals()

    def _resume_arrivals(self) -> None:
        """Restart the open-loop arrivals if they stopped at a zero rate and may go on."""
        if self._next_arrival is not None or self.p["concurrency"] > 0 or not self.out_edges \
                or self.p["rate_rps"] * self.rate_multiplier <= 0 \
                or self.kernel.now >= self.sim.duration_ms:
            return
        wait = max(0.0, self.p["start_s"] * 1000.0 - self.kernel.now)
        self._next_arrival = self.kernel.schedule(wait + self._gap(), self._arrive)

    # -- generating load -----------------------------------------------------------------------
    def _gap(self) -> float:
        rate: float = self.p["rate_rps"] * self.rate_multiplier / 1000.0  # per ms
        if self.p["arrival"] == "bursty":
            rate /= self.p["burst_size"]
        if self.p["arrival"] == "constant":
            return 1.0 / rate
        return float(self._interarrival(rate))

    def _arrive(self, _: Any) -> None:
        self._next_arrival = None
        if self.kernel.now >= self.sim.duration_ms \
                or self.p["rate_rps"] * self.rate_multiplier <= 0:
            return
        self._next_arrival = self.kernel.schedule(self._gap(), self._arrive)
        if self.down:
            return
        for _i in range(self.p["burst_size"] if self.p["arrival"] == "bursty" else 1):
            self._send(None)

    def _user_send(self, user: int) -> None:
        if self.kernel.now >= self.sim.duration_ms or self.down:
            return
        self._send(user)

    def _key(self) -> str:
        keys = self.p["keys"]
        if self._cdf is None:
            index = int(self.rng.random() * keys)
        else:
            index = bisect.bisect_left(self._cdf, self.rng.random() * self._cdf[-1])
        return f"k{min(index, keys - 1)}"

    def _pick_edge(self) -> Any:
        edges = self.out_edges
        if len(edges) == 1:
            return edges[0]
        point = self.rng.random() * self._cum_weights[-1]
        return edges[bisect.bisect_right(self._cum_weights, point)]

    def _send(self, user: int | None) -> None:
        p = self.p
        op = "read" if p["read_ratio"] >= 1.0 or self.rng.random() < p["read_ratio"] else "write"
        timeout = p["timeout_ms"]
        req = self.sim.new_request(self.id, self._key(), op, timeout, p["payload_bytes"])
        if p["key_seq"]:
            key = req.key or ""
            seq = self._key_seqs[key] = self._key_seqs.get(key, 0) + 1
            req.headers = {"seq": seq}
        self.sent += 1
        self.in_flight += 1
        if timeout is None and user is None:
            self.net.invoke(self._pick_edge(), req, self._on_reply)
            return
        pending = _Pending(user)
        if timeout is not None:
            pending.timer = self.kernel.schedule(timeout, self._timed_out, pending)
        pending.handle = self.net.invoke(self._pick_edge(), req, self._on_reply, pending)

    def _on_reply(self, handle: Call | Invocation, reply: m.Reply) -> None:
        pending: _Pending | None = handle.ctx
        if pending is None:
            self.in_flight -= 1
            self.sim.request_done(handle.req, reply)
            return
        Kernel.cancel(pending.timer)
        self._finish(handle.req, reply, pending.user)

    def _timed_out(self, pending: _Pending) -> None:
        handle = pending.handle
        assert handle is not None
        handle.cancel()
        self._finish(handle.req, m.TIMEOUT, pending.user)

    def _finish(self, req: m.Request, reply: m.Reply, user: int | None) -> None:
        self.in_flight -= 1
        self.sim.request_done(req, reply)
        if user is not None:
            self.kernel.schedule(self._think(), self._user_send, user)

    # -- reporting -----------------------------------------------------------------------------
    def sample(self, window_ms: float) -> dict[str, Any]:
        return {"inflight": self.in_flight}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.sent, "utilisation": 0.0, "max_queue": 0,
                "sent": self.sent, "in_flight": self.in_flight}
