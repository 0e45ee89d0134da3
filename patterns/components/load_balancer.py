"""Load balancers: one entry point that spreads calls over backends (its outgoing edges).

Each call is forwarded to one backend chosen by ``algorithm`` and the backend's reply is
relayed unchanged; the balancer counts, per backend, the calls routed to it and the calls in
flight (forwarded, not yet answered), which is what the load-aware algorithms read:

- ``round_robin``: backends in turn (nginx's default), so counts never differ by more than 1;
- ``weighted_round_robin``: smooth weighted round robin as nginx does it, by each outgoing
  edge's ``weight`` (weights 5, 1, 1 give a a b a c a a); a weight of 0 drains a backend;
- ``random``: uniformly at random (with Poisson arrivals, N independent M/M/c queues);
- ``least_connections``: fewest calls in flight; ties go to the first tied backend after the
  one picked last (a rotating start, so an idle pool is served round robin, as nginx does);
- ``power_of_two``: two distinct backends sampled at random, the one with fewer in flight
  (Mitzenmacher's "power of two choices"; Envoy's LEAST_REQUEST); a tie keeps the first;
- ``consistent_hash``: a ring of ``virtual_nodes`` points per backend, keyed on the request's
  key (its id when it has none); a key goes to the first point clockwise whose backend is
  healthy, so removing a backend remaps only its own keys, ≈ 1/N of them.

Weights are read only by ``weighted_round_robin``.

Active health checks (``health_check_interval_ms``, off when null): every interval each
backend gets a probe, a request with ``op="health"`` that a service answers at once without
queueing. A probe fails when it is refused (a down backend), fails, or gets no answer within
``health_check_timeout_ms`` (a hung one). ``unhealthy_threshold`` consecutive failures eject a
backend and ``healthy_threshold`` consecutive successes bring it back (HAProxy's fall/rise).
An ejected backend receives no call; when every backend is ejected the balancer answers 503.
Slowness is not seen by probes, since a probe skips the queue: only the load-aware algorithms
route around a slow backend. Passive outlier ejection is not modelled.

With deadline propagation on the incoming edge, a caller that gives up makes the balancer
cancel the forwarded call too (a proxy resets the upstream stream), and the backend hears of
it if its own edge propagates deadlines.

Each ejection or return is a ``note`` and moves the balancer's state (HEALTHY, DEGRADED,
NO_BACKENDS); ``stats`` lists them with per-backend counts. Probes carry negative request
ids so the event stream tells them from client requests.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from patterns.engine import messages as m
from patterns.engine.distributions import Sampler, parse
from patterns.engine.kernel import Entry, Kernel
from patterns.engine.network import Call, Invocation
from patterns.engine.node import Node, register_kind
from patterns.engine.ordered import OrderedSet
from patterns.engine.randomness import stable_hash
from patterns.params import Param

ALGORITHMS = ("round_robin", "weighted_round_robin", "random", "least_connections",
              "power_of_two", "consistent_hash")
LOAD_AWARE = ("least_connections", "power_of_two")

NO_BACKEND = m.Reply(m.REJECTED, status=503, reason="no healthy backend")
PROBE_BYTES = 64


class HashRing:
    """A consistent-hash ring: ``virtual_nodes`` points per member, placed by a stable hash.

    A key belongs to the member owning the first point at or after the key's hash (wrapping
    around). Removing a member hands only its own keys to the next points clockwise, spread
    over the others because its points are scattered, so ≈ 1/N of all keys move.
    """

    def __init__(self, members: Iterable[str], virtual_nodes: int) -> None:
        self.virtual_nodes = virtual_nodes
        self._points: list[int] = []
        self._owners: list[str] = []
        for member in members:
            self.add(member)

    @property
    def members(self) -> list[str]:
        return sorted(set(self._owners))

    def add(self, member: str) -> None:
        for i in range(self.virtual_nodes):
            point = stable_hash(f"{member}#{i}")
            at = bisect.bisect_left(self._points, point)
            self._points.insert(at, point)
            self._owners.insert(at, member)

    def remove(self, member: str) -> None:
        kept = [(p, o) for p, o in zip(self._points, self._owners, strict=True) if o != member]
        self._points = [p for p, _ in kept]
        self._owners = [o for _, o in kept]

    def owner(self, key: str, eligible: Callable[[str], bool] | None = None) -> str | None:
        """The member that serves ``key`` among the eligible ones (None if there is none)."""
        points = self._points
        if not points:
            return None
        start = bisect.bisect_left(points, stable_hash(key))
        count = len(points)
        for step in range(count):
            member = self._owners[(start + step) % count]
            if eligible is None or eligible(member):
                return member
        return None

    def moved_on_removal(self, keys: list[str], member: str) -> float:
        """Share of ``keys`` whose owner changes when ``member`` leaves the ring."""
        if not keys:
            return 0.0
        moved = sum(1 for k in keys
                    if self.owner(k) != self.owner(k, lambda o: o != member))
        return moved / len(keys)


def modulo_moved_on_removal(keys: list[str], members: list[str], member: str) -> float:
    """The same share for naive ``hash(key) mod N`` placement, for comparison (≈ (N−1)/N)."""
    if not keys:
        return 0.0
    rest = [x for x in members if x != member]
    moved = sum(1 for k in keys if members[stable_hash(k) % len(members)]
                != rest[stable_hash(k) % len(rest)])
    return moved / len(keys)


class Backend:
    """What the balancer knows about one outgoing edge."""

    __slots__ = ("edge", "failed", "fails", "healthy", "id", "in_flight", "max_in_flight",
                 "oks", "probing", "routed", "routed_at_sample", "routed_while_ejected",
                 "swrr_current")

    def __init__(self, edge: Any) -> None:
        self.edge = edge
        self.id: str = edge.dst.id
        self.healthy = True
        self.in_flight = 0
        self.max_in_flight = 0
        self.routed = 0
        self.routed_at_sample = 0
        self.failed = 0
        # Consecutive probe results, and whether a probe is out.
        self.fails = 0
        self.oks = 0
        self.probing = False
        # Smooth weighted round robin's running score.
        self.swrr_current = 0.0
        # A witness for the checks: must stay 0.
        self.routed_while_ejected = 0


class _Forward:
    """A call the balancer has forwarded and must relay the answer to."""

    __slots__ = ("backend", "call", "done", "handle")

    def __init__(self, call: Call, backend: Backend) -> None:
        self.call = call
        self.backend = backend
        self.done = False
        self.handle: Call | Invocation | None = None


@register_kind
class LoadBalancer(Node):
    KIND = "load_balancer"
    LABEL = "Load balancer"
    DESCRIPTION = "Spreads calls over its backends by an algorithm; ejects unhealthy ones."
    PARAMS = (
        Param("algorithm", "choice", "round_robin", choices=ALGORITHMS,
              help="How a backend is chosen for each call (nginx's default: round robin)."),
        Param("virtual_nodes", "int", 160, min=1, max=10_000,
              help="Consistent hash: points per backend on the ring (ketama: 160)."),
        Param("health_check_interval_ms", "float", None, unit="ms", min=1, max=3_600_000,
              nullable=True, help="Probe every backend this often (null = no health checks; "
              "HAProxy: 2000)."),
        Param("health_check_timeout_ms", "float", 1000.0, unit="ms", min=0, max=3_600_000,
              exclusive_min=True, help="A probe not answered within this long failed."),
        Param("unhealthy_threshold", "int", 3, min=1, max=100,
              help="Consecutive failed probes that eject a backend (HAProxy fall: 3)."),
        Param("healthy_threshold", "int", 2, min=1, max=100,
              help="Consecutive good probes that bring it back (HAProxy rise: 2)."),
        Param("service_time_ms", "dist", 0.0, unit="ms", max=3_600_000,
              help="The proxy's own time per call before forwarding it."),
    )

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.backends: list[Backend] = []
        self.ring = HashRing((), params["virtual_nodes"])
        self._service_time: Sampler = parse(params["service_time_ms"]).sampler(self.rng)
        self._proxy_delay = parse(params["service_time_ms"]).mean > 0
        self._next = 0  # round robin's and least connections' rotating start
        self._pending: OrderedSet[_Forward] = OrderedSet()
        self._in_proxy: OrderedSet[Call] = OrderedSet()  # calls in the proxy's own service time
        self._by_id: dict[str, Backend] = {}
        self._probe_timer: Entry | None = None
        self._probe_seq = 0
        self.forwarded = 0
        self.relayed = 0
        self.reset = 0  # forwarded calls whose answer was lost in a crash of the proxy
        self.cancelled = 0  # forwarded calls reset because their caller gave up
        self.no_backend = 0
        self.ejections: list[dict[str, Any]] = []

    def start(self) -> None:
        self.backends = [Backend(edge) for edge in self.out_edges]
        self._by_id = {b.id: b for b in self.backends}
        self.ring = HashRing((b.id for b in self.backends), self.p["virtual_nodes"])
        self.set_state("HEALTHY", f"{len(self.backends)} backends")
        self._schedule_probes()

    def set_param(self, name: str, value: Any) -> None:
        self.p[name] = value
        if name == "service_time_ms":
            self._service_time = parse(value).sampler(self.rng)
            self._proxy_delay = parse(value).mean > 0
        elif name == "virtual_nodes":
            self.ring = HashRing((b.id for b in self.backends), int(value))
        elif name == "health_check_interval_ms":
            Kernel.cancel(self._probe_timer)
            self._probe_timer = None
            self._schedule_probes()

    # -- serving -------------------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        if call.req.op == "health":
            call.reply(m.OK)
        elif self._proxy_delay:
            self._in_proxy.add(call)
            self.kernel.schedule(self._service_time() * self.slow, self._proxied, call)
        else:
            self._route(call)

    def _proxied(self, call: Call) -> None:
        if call in self._in_proxy:  # else it died with the proxy, and on_crash answered it
            self._in_proxy.discard(call)
            self._route(call)

    def _route(self, call: Call) -> None:
        propagate = call.edge.deadline_propagation
        if propagate and call.expired:
            call.reply(m.DEADLINE_EXCEEDED)  # the caller is gone: nothing to forward
            return
        backend = self.pick(call.req)
        if backend is None:
            self.no_backend += 1
            call.reply(NO_BACKEND)
            return
        if not backend.healthy:
            backend.routed_while_ejected += 1
        backend.routed += 1
        backend.in_flight += 1
        if backend.in_flight > backend.max_in_flight:
            backend.max_in_flight = backend.in_flight
        self.forwarded += 1
        forward = _Forward(call, backend)
        self._pending.add(forward)
        forward.handle = self.net.invoke(backend.edge, call.req, self._relay, forward)
        if propagate and not forward.done:
            call.on_abandon = partial(self._abandoned, forward)

    def _relay(self, handle: Call | Invocation, reply: m.Reply) -> None:
        forward: _Forward = handle.ctx
        if forward.done:
            return
        forward.done = True
        self._pending.discard(forward)
        forward.backend.in_flight -= 1
        if not reply.ok:
            forward.backend.failed += 1
        self.relayed += 1
        forward.call.on_abandon = None
        forward.call.reply(reply)

    def _abandoned(self, forward: _Forward, call: Call) -> None:
        """The caller gave up (deadline propagation): reset the forwarded call too, as a
        proxy resets the upstream stream when the downstream one goes away."""
        if forward.done:
            return
        forward.done = True
        self._pending.discard(forward)
        forward.backend.in_flight -= 1
        self.cancelled += 1
        if forward.handle is not None:
            forward.handle.cancel()

    # -- choosing a backend --------------------------------------------------------------------
    def pick(self, req: m.Request) -> Backend | None:
        """The backend this request goes to, among the healthy ones (None: there is none)."""
        algorithm = self.p["algorithm"]
        if algorithm == "round_robin":
            return self._round_robin()
        if algorithm == "least_connections":
            return self._least_connections()
        if algorithm == "consistent_hash":
            return self._consistent_hash(req)
        if algorithm == "weighted_round_robin":
            return self._smooth_weighted()
        healthy = [b for b in self.backends if b.healthy]
        if not healthy:
            return None
        if algorithm == "random" or len(healthy) == 1:
            return healthy[int(self.rng.random() * len(healthy))]
        # power_of_two: two distinct backends, the less loaded one.
        n = len(healthy)
        i = int(self.rng.random() * n)
        j = int(self.rng.random() * (n - 1))
        if j >= i:
            j += 1
        first, second = healthy[i], healthy[j]
        return second if second.in_flight < first.in_flight else first

    def _round_robin(self) -> Backend | None:
        backends = self.backends
        n = len(backends)
        for step in range(n):
            backend = backends[(self._next + step) % n]
            if backend.healthy:
                self._next = (self._next + step + 1) % n
                return backend
        return None

    def _least_connections(self) -> Backend | None:
        backends = self.backends
        n = len(backends)
        best: Backend | None = None
        best_at = 0
        for step in range(n):
            at = (self._next + step) % n
            backend = backends[at]
            if backend.healthy and (best is None or backend.in_flight < best.in_flight):
                best, best_at = backend, at
        if best is not None:
            self._next = (best_at + 1) % n
        return best

    def _smooth_weighted(self) -> Backend | None:
        """nginx's smooth weighted round robin: raise every score by its weight, pick the
        highest, lower it by the total. Picks are spread out, not in runs."""
        total = 0.0
        best: Backend | None = None
        for backend in self.backends:
            weight = backend.edge.weight
            if not backend.healthy or weight <= 0:
                continue
            backend.swrr_current += weight
            total += weight
            if best is None or backend.swrr_current > best.swrr_current:
                best = backend
        if best is not None:
            best.swrr_current -= total
        return best

    def _consistent_hash(self, req: m.Request) -> Backend | None:
        by_id = self._by_id
        key = req.key if req.key is not None else f"req{req.id}"
        owner = self.ring.owner(key, lambda member: by_id[member].healthy)
        return by_id[owner] if owner is not None else None

    # -- health checks -------------------------------------------------------------------------
    def _schedule_probes(self) -> None:
        interval = self.p["health_check_interval_ms"]
        if interval is not None and self.backends:
            self._probe_timer = self.kernel.schedule(interval, self._probe_all)

    def _probe_all(self, _: Any) -> None:
        self._probe_timer = None
        if not self.down:
            for backend in self.backends:
                if not backend.probing:
                    self._probe(backend)
        self._schedule_probes()

    def _probe(self, backend: Backend) -> None:
        self._probe_seq += 1
        probe = m.Request(-self._probe_seq, self.kernel.now, op="health", size=PROBE_BYTES,
                          client=self.id)
        backend.probing = True
        self.net.call(backend.edge, probe, self._probed, backend,
                      timeout_ms=self.p["health_check_timeout_ms"])

    def _probed(self, handle: Call, reply: m.Reply) -> None:
        backend: Backend = handle.ctx
        backend.probing = False
        if self.down:
            return
        if reply.ok:
            backend.oks += 1
            backend.fails = 0
            if not backend.healthy and backend.oks >= self.p["healthy_threshold"]:
                self._mark(backend, True, f"{backend.oks} health checks passed")
        else:
            backend.fails += 1
            backend.oks = 0
            if backend.healthy and backend.fails >= self.p["unhealthy_threshold"]:
                why = reply.reason or reply.outcome
                self._mark(backend, False, f"{backend.fails} health checks failed ({why})")

    def _mark(self, backend: Backend, healthy: bool, reason: str) -> None:
        backend.healthy = healthy
        backend.swrr_current = 0.0
        self.ejections.append({"t": round(self.kernel.now, 3), "backend": backend.id,
                               "to": "healthy" if healthy else "ejected", "reason": reason})
        verb = "returns to the pool" if healthy else "ejected"
        self.note(f"backend {backend.id} {verb}: {reason}")
        up = sum(1 for b in self.backends if b.healthy)
        state = "HEALTHY" if up == len(self.backends) else "DEGRADED" if up else "NO_BACKENDS"
        self.set_state(state, f"{backend.id} {verb}; {up}/{len(self.backends)} healthy")

    # -- life ----------------------------------------------------------------------------------
    def on_crash(self) -> None:
        """Forwarded calls die with the proxy: callers see a reset, late replies are dropped."""
        pending, self._pending = self._pending, OrderedSet()
        waiting, self._in_proxy = self._in_proxy, OrderedSet()
        for forward in sorted(pending, key=lambda f: f.call.mid):
            forward.done = True
            if forward.handle is not None:
                forward.handle.cancel()  # the upstream connections die with the proxy
        self.reset += len(pending)
        for backend in self.backends:
            backend.in_flight = 0
            backend.probing = False
        # Answer in a stable order (sets iterate by hash), so a replay is byte for byte.
        calls = [f.call for f in pending] + list(waiting)
        for call in sorted(calls, key=lambda c: c.mid):
            call.reply(m.CONNECTION_RESET)

    def on_recover(self) -> None:
        """A restarted proxy trusts every backend until its probes say otherwise."""
        for backend in self.backends:
            backend.healthy = True
            backend.fails = backend.oks = 0
        self.set_state("HEALTHY", "restarted")

    # -- reporting -----------------------------------------------------------------------------
    def sample(self, window_ms: float) -> dict[str, Any]:
        routed = {}
        for b in self.backends:
            routed[b.id] = b.routed - b.routed_at_sample
            b.routed_at_sample = b.routed
        return {"inflight": sum(b.in_flight for b in self.backends),
                "in_flight_by": {b.id: b.in_flight for b in self.backends},
                "routed": routed,
                "healthy": sum(1 for b in self.backends if b.healthy)}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {
            "processed": self.forwarded, "utilisation": 0.0, "max_queue": 0,
            "algorithm": self.p["algorithm"], "relayed": self.relayed,
            "reset": self.reset, "cancelled": self.cancelled,
            "no_backend": self.no_backend,
            "backends": {b.id: {"routed": b.routed, "failed": b.failed,
                                "max_in_flight": b.max_in_flight, "healthy": b.healthy,
                                "routed_while_ejected": b.routed_while_ejected}
                         for b in self.backends},
            "ejections": self.ejections,
        }
