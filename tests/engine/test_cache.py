"""The generic cache: LRU with a TTL in front of a database; the hit ratio emerges.

The expected figures come from the independent reference model (IRM: each request's key is
drawn independently) with the loads made instantaneous (zero latency, zero database time),
so the cache's own logic is all that is measured:
- LRU under IRM: Che's approximation (Che, Tung & Wang 2002; Fricker, Robert & Roberts
  2012 show it is accurate for Zipf popularity): the characteristic time t_C solves
  Σ (1 − e^(−p_i t_C)) = C, and the hit ratio is Σ p_i (1 − e^(−p_i t_C)).
- Uniform keys, LRU capacity C over K keys: C/K.
- A TTL T with no capacity limit (Jung, Berger & Balakrishnan 2003): key i at λ_i reads/s
  hits with probability λ_i T / (1 + λ_i T).
- Writes that invalidate (write-around), no TTL: a read hits when the previous request for
  its key was a read, so the hit ratio among reads is the read share.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from patterns.components.cache import Cache
from patterns.engine import messages as m
from patterns.run import prepare, simulate
from tests.helpers import document

RATE_RPS = 3000
DURATION_S = 20
WARMUP_MS = 4000.0  # hits and misses before this are not counted: the cache fills up first


def cached_db(*, keys: int, capacity: int, key_dist: str = "uniform", skew: float = 0.99,
              ttl_ms: float | None = None, read_ratio: float = 1.0, rate_rps: float = RATE_RPS,
              duration_s: float = DURATION_S, seed: int = 5, instant: bool = True,
              faults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """users → cache → db; ``instant`` makes every hop and the database take no time."""
    zero = {"latency_ms": 0} if instant else {}
    db: dict[str, Any] = {"pool_size": 100}
    if instant:
        db.update(read_time_ms=0, write_time_ms=0)
    return document(
        [{"id": "users", "kind": "client", "params": {
            "rate_rps": rate_rps, "keys": keys, "key_dist": key_dist, "key_skew": skew,
            "read_ratio": read_ratio}},
         {"id": "cache", "kind": "cache", "params": {
             "capacity": capacity, "ttl_ms": ttl_ms, "hit_time_ms": 0 if instant else 0.5}},
         {"id": "db", "kind": "database", "params": db}],
        [{"id": "e1", "from": "users", "to": "cache", "params": zero},
         {"id": "e2", "from": "cache", "to": "db", "params": zero}],
        duration_s=duration_s, seed=seed, faults=faults)


def steady_hit_ratio(doc: dict[str, Any]) -> tuple[float, Cache]:
    """Hit ratio after the warm-up, and the cache at the end of the run."""
    sim = simulate(prepare(doc), trace="off")
    sim.advance(WARMUP_MS)
    cache = sim.nodes["cache"]
    assert isinstance(cache, Cache)
    hits, misses = cache.hits, cache.misses
    sim.run()
    new_hits, new_misses = cache.hits - hits, cache.misses - misses
    return new_hits / (new_hits + new_misses), cache


def che_lru_hit_ratio(popularity: list[float], capacity: int) -> float:
    """Che's approximation of LRU's hit ratio under IRM."""
    def filled(t: float) -> float:
        return sum(1 - math.exp(-p * t) for p in popularity)
    low, high = 0.0, 1.0
    while filled(high) < capacity:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if filled(mid) < capacity else (low, mid)
    return sum(p * (1 - math.exp(-p * low)) for p in popularity)


def zipf(keys: int, skew: float) -> list[float]:
    weights = [1 / i**skew for i in range(1, keys + 1)]
    total = sum(weights)
    return [w / total for w in weights]


def test_zipf_hit_ratio_rises_with_capacity_as_lru_theory_says():
    keys, skew = 1000, 0.99
    measured = []
    for capacity in (25, 100, 400):
        ratio, cache = steady_hit_ratio(cached_db(keys=keys, capacity=capacity,
                                                  key_dist="zipf", skew=skew))
        expected = che_lru_hit_ratio(zipf(keys, skew), capacity)
        assert ratio == pytest.approx(expected, abs=0.015), capacity
        assert len(cache.entries) == capacity
        assert cache.evictions > 0
        measured.append(ratio)
    assert measured[0] < measured[1] - 0.1 < measured[2] - 0.2


def test_a_cache_holding_every_key_misses_each_key_once():
    summary_cache = _run_cache(cached_db(keys=500, capacity=500, key_dist="zipf"))
    requests = summary_cache["processed"]
    assert requests > 50_000
    # Each key seen misses exactly once (cold), then always hits: nothing is evicted.
    assert summary_cache["misses"] == summary_cache["entries"] <= 500
    assert summary_cache["misses_by_cause"]["cold"] == summary_cache["misses"]
    assert summary_cache["evictions"] == summary_cache["expirations"] == 0
    assert summary_cache["hit_ratio"] == pytest.approx(
        1 - summary_cache["entries"] / requests, abs=1e-4)


def test_uniform_keys_hit_in_proportion_to_capacity():
    ratio, cache = steady_hit_ratio(cached_db(keys=1000, capacity=250))
    assert ratio == pytest.approx(250 / 1000, abs=0.01)
    assert cache.misses_by_cause["evicted"] > 0.9 * cache.misses


@pytest.mark.parametrize(("ttl_ms", "expected"), [(50.0, 0.6), (100.0, 0.75)])
def test_a_ttl_lowers_the_hit_ratio_as_the_renewal_model_says(ttl_ms, expected):
    keys = 100  # uniform: each key is read λ = 30 times a second
    rate_per_key = RATE_RPS / keys / 1000  # per ms
    assert expected == pytest.approx(rate_per_key * ttl_ms / (1 + rate_per_key * ttl_ms))
    ratio, cache = steady_hit_ratio(cached_db(keys=keys, capacity=keys, ttl_ms=ttl_ms))
    assert ratio == pytest.approx(expected, abs=0.015)
    assert cache.evictions == 0
    # Every miss after the first of each key is an expired entry, counted as it is found.
    assert cache.expirations == cache.misses_by_cause["expired"] == cache.misses - keys


def test_an_expired_entry_is_never_served():
    ttl_ms = 50.0
    sim = simulate(prepare(cached_db(keys=20, capacity=20, ttl_ms=ttl_ms, duration_s=5,
                                     instant=False)), trace="full").run()
    filled_at: dict[str, float] = {}
    hits = 0
    for ev in sim.trace.drain():
        if ev["k"] == "cache.fill":
            filled_at[ev["key"]] = ev["t"]
        elif ev["k"] == "cache.hit":
            hits += 1
            assert ev["t"] - filled_at[ev["key"]] < ttl_ms + 0.001
    assert hits > 1000


def test_writes_invalidate_then_go_to_the_database():
    read_ratio = 0.8
    ratio, cache = steady_hit_ratio(cached_db(keys=100, capacity=100, read_ratio=read_ratio))
    # A read hits when the previous request for its key was a read (not a write).
    assert ratio == pytest.approx(read_ratio, abs=0.01)
    assert cache.misses_by_cause["invalidated"] > 0.9 * cache.misses
    db = cache.sim.nodes["db"]
    writes = cache.processed - cache.hits - cache.misses
    assert writes > 0.15 * cache.processed
    # Write-around: the database sees every write and one load per miss, nothing else.
    assert db.summary(0)["processed"] == writes + cache.loads
    assert cache.loads == cache.misses


def test_a_crash_loses_every_entry():
    doc = cached_db(keys=100, capacity=100, duration_s=10, faults=[
        {"at_s": 5, "until_s": 5.5, "target": "cache", "action": "crash"}])
    stats = _run_cache(doc)
    # Every key is cold twice: at the start and after the restart.
    assert stats["misses_by_cause"]["cold"] == 200
    assert stats["entries"] == 100


def test_a_failed_load_is_not_cached():
    doc = cached_db(keys=10, capacity=10, duration_s=4, faults=[
        {"at_s": 0, "until_s": 2, "target": "db", "action": "error_rate", "value": 1.0}])
    sim = simulate(prepare(doc), trace="off").run()
    stats = sim.nodes["cache"].summary(sim.duration_ms)
    assert stats["load_failures"] > 1000  # every read failed while the database did
    assert sim.outcomes["failed"] == stats["load_failures"]
    assert stats["misses"] == stats["load_failures"] + 10  # then each key loaded once


def test_without_a_downstream_it_is_a_look_aside_store():
    doc = document([{"id": "app", "kind": "client", "params": {"rate_rps": 0}},
                    {"id": "cache", "kind": "cache", "params": {"capacity": 2}}],
                   [{"id": "e", "from": "app", "to": "cache"}], duration_s=1)
    sim = simulate(prepare(doc), trace="off")
    edge = sim.network.edges["e"]
    replies: list[tuple[str, m.Reply]] = []

    def call(op: str, key: str) -> None:
        req = m.Request(0, sim.now, key, op)
        sim.network.call(edge, req, lambda handle, reply: replies.append((op, reply)))
        sim.advance(sim.now + 50)

    call("read", "a")
    call("set", "a")
    call("read", "a")
    call("delete", "a")
    call("read", "a")
    for key in ("b", "c", "d"):
        call("set", key)
    call("read", "b")
    statuses = [(op, reply.outcome, reply.status) for op, reply in replies]
    assert statuses == [("read", "succeeded", 404), ("set", "succeeded", None),
                        ("read", "succeeded", None), ("delete", "succeeded", None),
                        ("read", "succeeded", 404)] + [("set", "succeeded", None)] * 3 + [
                        ("read", "succeeded", 404)]
    cache = sim.nodes["cache"]
    assert cache.summary(0)["misses_by_cause"] == {"cold": 1, "expired": 0, "invalidated": 1,
                                                   "evicted": 1}
    assert list(cache.entries) == ["c", "d"]


def _run_cache(doc: dict[str, Any]) -> dict[str, Any]:
    sim = simulate(prepare(doc), trace="off").run()
    return sim.nodes["cache"].summary(sim.duration_ms)
