"""A cache: LRU entries with an optional TTL, read-through to one downstream.

Every call first pays a lookup (``hit_time_ms``). A read of a key held and not expired is a
hit and is answered then. A miss reads through the cache's one outgoing edge (the database
or service behind it) and, when that read succeeds, stores the key with ``ttl_ms`` to live;
a full cache first drops its least recently used entry. A write drops the key and then
goes to the downstream (write-around: the next read of the key misses and loads the new
value). Requests carry their key from the client's key distribution (``keys``,
``key_dist``, ``key_skew``), so the hit ratio is not a parameter: it emerges from the keys,
the capacity, the TTL and the writes.

Without an outgoing edge the cache is a look-aside store, as Redis or memcached are to an
application that fills them itself: a read miss is answered at once as a success with
status 404 (a GET of an absent key returns nil), op ``set`` stores the key and op
``delete`` (or ``write``) drops it.

Entries are volatile: a crash loses them all, and the calls it was serving see a reset. An
entry past its TTL is never served; it is counted in ``expirations`` when it is found (on a
read or when LRU order reaches it), the way Redis expires keys lazily.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from patterns.components.service import _dependency_failure
from patterns.engine import messages as m
from patterns.engine.distributions import Sampler, parse
from patterns.engine.network import Call, Invocation
from patterns.engine.node import Node, register_kind
from patterns.engine.ordered import OrderedSet
from patterns.params import Param

INFINITY = float("inf")
# Why a read missed: never stored since the start (or a restart), or dropped for a reason.
COLD, EXPIRED, INVALIDATED, EVICTED = "cold", "expired", "invalidated", "evicted"
MISS_CAUSES = (COLD, EXPIRED, INVALIDATED, EVICTED)
# A look-aside read miss: a success that found nothing, as a GET of an absent key is.
NOT_FOUND = m.Reply(m.SUCCEEDED, status=404, reason="cache miss")


@register_kind
class Cache(Node):
    KIND = "cache"
    LABEL = "Cache"
    DESCRIPTION = ("LRU entries with an optional TTL; a miss reads through to the one "
                   "downstream, a write drops the key and goes on (write-around).")
    PARAMS = (
        Param("capacity", "int", 10_000, unit="entries", min=1, max=10_000_000,
              help="Entries it holds; storing one more drops the least recently used."),
        Param("ttl_ms", "float", None, unit="ms", min=0, max=86_400_000, nullable=True,
              exclusive_min=True,
              help="An entry expires this long after it is stored (null = never)."),
        Param("hit_time_ms", "dist", {"dist": "constant", "value": 0.5}, unit="ms",
              max=60_000, help="Time of one lookup: a hit is answered after it."),
    )
    MAX_OUT_EDGES = 1

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        # key → when the entry expires; order is recency, least recently used first.
        self.entries: OrderedDict[str, float] = OrderedDict()
        # key → why it was last dropped; a key absent here and from entries is cold.
        self._dropped: dict[str, str] = {}
        self._hit_time: Sampler = parse(params["hit_time_ms"]).sampler(self.rng)
        # Calls taken and not yet answered; a crash answers them all with a reset.
        self._serving: OrderedSet[Call] = OrderedSet()
        self.hits = 0
        self.misses = 0
        self.misses_by_cause = dict.fromkeys(MISS_CAUSES, 0)
        self.evictions = 0
        self.expirations = 0
        self.invalidations = 0
        self.loads = 0
        self.load_failures = 0
        self.fills = 0
        self.processed = 0
        self._last_sample = (0, 0)

    # -- serving -------------------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        self._serving.add(call)
        self.kernel.schedule(self._hit_time() * self.slow, self._looked_up, call)

    def _looked_up(self, call: Call) -> None:
        if call not in self._serving:  # the cache crashed meanwhile
            return
        failure = self.injected_failure() if self.fault_error_rate else None
        if failure is not None:
            self._answer(call, failure)
            return
        req = call.req
        op, key = req.op, req.key
        downstream = self.out_edges[0] if self.out_edges else None
        if op == "health":
            self._answer(call, m.OK)
        elif key is None:
            # Nothing to cache by: pass it through.
            self._forward(call, downstream)
        elif op in ("write", "delete"):
            self._invalidate(key)
            self._forward(call, downstream if op == "write" else None)
        elif op == "set":
            self._store(key)
            self._answer(call, m.OK)
        elif self._lookup(key):
            self._answer(call, m.OK)
        elif downstream is None:
            self._answer(call, NOT_FOUND)
        else:
            self.loads += 1
            self.net.invoke(downstream, req, self._loaded, call)

    def _forward(self, call: Call, downstream: Any) -> None:
        if downstream is None:
            self._answer(call, m.OK)
        else:
            self.net.invoke(downstream, call.req, self._forwarded, call)

    def _loaded(self, handle: Call | Invocation, reply: m.Reply) -> None:
        call: Call = handle.ctx
        if call not in self._serving:
            return
        if reply.ok:
            key = call.req.key
            assert key is not None
            # A write may have dropped the key while this load ran: the fill still lands,
            # with the value read before the write (the race cache-aside documents).
            self._store(key)
        else:
            self.load_failures += 1
        self._answer(call, reply if reply.ok else _dependency_failure(reply))

    def _forwarded(self, handle: Call | Invocation, reply: m.Reply) -> None:
        call: Call = handle.ctx
        if call in self._serving:
            self._answer(call, reply if reply.ok else _dependency_failure(reply))

    def _answer(self, call: Call, reply: m.Reply) -> None:
        self._serving.discard(call)
        self.processed += 1
        call.reply(reply)

    # -- the entries ---------------------------------------------------------------------------
    def _lookup(self, key: str) -> bool:
        """Whether ``key`` is held and fresh; counts the hit or the miss and its cause."""
        expires = self.entries.get(key)
        if expires is not None and expires <= self.kernel.now:
            del self.entries[key]
            self._drop(key, EXPIRED)
            expires = None
        if expires is not None:
            self.entries.move_to_end(key)
            self.hits += 1
            if self.trace.full:
                self.emit({"k": "cache.hit", "node": self.id, "key": key})
            return True
        cause = self._dropped.get(key, COLD)
        self.misses += 1
        self.misses_by_cause[cause] += 1
        if self.trace.full:
            self.emit({"k": "cache.miss", "node": self.id, "key": key, "cause": cause})
        return False

    def _store(self, key: str) -> None:
        ttl = self.p["ttl_ms"]
        self.entries[key] = self.kernel.now + ttl if ttl is not None else INFINITY
        self.entries.move_to_end(key)
        self.fills += 1
        if self.trace.full:
            self.emit({"k": "cache.fill", "node": self.id, "key": key})
        self._shrink_to(self.p["capacity"])

    def _shrink_to(self, capacity: int) -> None:
        entries, now = self.entries, self.kernel.now
        while len(entries) > capacity:
            key, expires = entries.popitem(last=False)
            self._drop(key, EXPIRED if expires <= now else EVICTED)

    def _invalidate(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            self._drop(key, INVALIDATED)

    def _drop(self, key: str, cause: str) -> None:
        self._dropped[key] = cause
        if cause == EXPIRED:
            self.expirations += 1
        elif cause == EVICTED:
            self.evictions += 1
        else:
            self.invalidations += 1

    # -- life and parameters -------------------------------------------------------------------
    def set_param(self, name: str, value: Any) -> None:
        self.p[name] = value
        if name == "capacity":
            self._shrink_to(int(value))
        elif name == "hit_time_ms":
            self._hit_time = parse(value).sampler(self.rng)

    def on_crash(self) -> None:
        """The entries live in memory: all are lost, and every key is cold again."""
        self.entries.clear()
        self._dropped.clear()
        calls, self._serving = self._serving, OrderedSet()
        for call in calls:
            call.reply(m.CONNECTION_RESET)

    # -- reporting -----------------------------------------------------------------------------
    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def sample(self, window_ms: float) -> dict[str, Any]:
        hits, misses = self._last_sample
        self._last_sample = (self.hits, self.misses)
        new_hits, new_misses = self.hits - hits, self.misses - misses
        lookups = new_hits + new_misses
        return {"hits": new_hits, "misses": new_misses, "entries": len(self.entries),
                "hit_ratio": round(new_hits / lookups, 4) if lookups else 0.0}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.processed, "utilisation": 0.0, "max_queue": 0,
                "hits": self.hits, "misses": self.misses,
                "hit_ratio": round(self.hit_ratio, 4),
                "misses_by_cause": dict(self.misses_by_cause),
                "evictions": self.evictions, "expirations": self.expirations,
                "invalidations": self.invalidations, "loads": self.loads,
                "load_failures": self.load_failures, "fills": self.fills,
                "entries": len(self.entries)}

