"""The keyed store (``kv_store``): get, put, compare-and-set, TTL, the fencing-token check,
durable contents across a crash, and the end-of-run digest."""

from __future__ import annotations

from typing import Any

from patterns.components.kv_store import KvStore
from patterns.engine import messages as m
from patterns.run import prepare, simulate
from tests.helpers import document


def make_store(**params: Any) -> tuple[KvStore, Any]:
    doc = prepare(document([{"id": "kv", "kind": "kv_store", "params": params}], [],
                           duration_s=100))
    sim = simulate(doc, trace="off")
    store = sim.nodes["kv"]
    assert isinstance(store, KvStore)
    return store, sim


class FakeCall:
    """Just what ``receive`` uses of a network call."""

    def __init__(self, op: str, key: str, headers: dict[str, Any]) -> None:
        self.req = m.Request(1, 0.0, key=key, op=op, client="c1", headers=headers)
        self.replies: list[m.Reply] = []

    def reply(self, reply: m.Reply) -> None:
        self.replies.append(reply)


def test_put_get_and_versions_rise_by_one():
    store, _ = make_store()
    assert store.apply("get", "a", {}).value == {"value": None, "version": 0}
    assert store.apply("put", "a", {"value": 1}).value == {"value": 1, "version": 1}
    assert store.apply("put", "a", {"value": 2}).value == {"value": 2, "version": 2}
    assert store.apply("get", "a", {}).value == {"value": 2, "version": 2}
    assert store.apply("delete", "a", {}).ok
    assert store.apply("get", "a", {}).value["value"] is None
    assert store.apply("frobnicate", "a", {}).status == 400


def test_compare_and_set_succeeds_only_on_the_expected_version():
    store, _ = make_store()
    assert store.apply("cas", "k", {"value": "x", "version": 0}).ok, "0 = must be absent"
    lost = store.apply("cas", "k", {"value": "y", "version": 0})
    assert not lost.ok and lost.status == 409 and lost.value["version"] == 1
    assert store.apply("get", "k", {}).value["value"] == "x", "a failed cas changes nothing"
    assert store.apply("cas", "k", {"value": "y", "version": 1}).ok
    assert store.value("k") == "y"
    assert store.stats(1000.0)["cas_conflicts"] == 1


def test_ttl_expires_values_on_the_stores_own_clock():
    store, sim = make_store(ttl_s=1.0)
    store.apply("put", "default", {"value": 1})
    store.apply("put", "short", {"value": 1, "ttl_ms": 100})
    store.apply("put", "forever", {"value": 1, "ttl_ms": 0})
    sim.advance(150)
    assert store.value("short") is None and store.value("default") == 1
    sim.advance(1100)
    assert store.value("default") is None and store.value("forever") == 1
    # A clock running 10x fast expires a 1 s value after 100 ms of real time.
    store.apply("put", "skewed", {"value": 1})
    store.skew_clock(0.0, 10.0)
    sim.advance(1100 + 101)
    assert store.value("skewed") is None
    assert store.stats(1000.0)["expired"] == 3


def test_fencing_refuses_an_operation_with_a_token_below_the_highest_accepted():
    store, sim = make_store(fencing=True)
    assert store.apply("put", "c", {"value": 1, "token": 7}, "w1").ok
    assert store.apply("get", "c", {"token": 8}, "w2").ok, "a read raises the high-water mark"
    stale = store.apply("put", "c", {"value": 99, "token": 7}, "w1")
    assert not stale.ok and stale.status == 409 and "7 < 8" in (stale.reason or "")
    assert store.value("c") == 1
    stale_read = store.apply("get", "c", {"token": 6}, "w0")
    assert not stale_read.ok
    assert store.apply("put", "c", {"value": 2, "token": 8}, "w2").ok, "equal token passes"
    assert store.apply("put", "c", {"value": 3}, "anyone").ok, "no token, no check"
    assert store.apply("put", "other", {"value": 1, "token": 1}).ok, "tokens are per key"
    assert store.stale_writes_rejected == 1 and store.stale_rejected == 2
    writes = [e for e in sim.records if e["k"] == "store.write"]
    assert [e["result"] for e in writes] == ["accepted", "rejected_stale", "accepted",
                                             "accepted"]


def test_without_fencing_a_stale_token_is_accepted_and_counted():
    store, sim = make_store(fencing=False)
    store.apply("get", "c", {"token": 8}, "w2")
    assert store.apply("put", "c", {"value": 5, "token": 7}, "w1").ok
    assert store.stale_writes_accepted == 1 and store.value("c") == 5
    # The high-water mark stays at the highest token: 7 did not lower it.
    assert store.tokens["c"] == 8
    last = [e for e in sim.records if e["k"] == "store.write"][-1]
    assert last["result"] == "accepted" and last["token"] == 7 and last["highest"] == 8


def test_a_crash_keeps_the_contents_and_tokens_and_loses_calls_in_flight():
    store, sim = make_store(fencing=True, op_ms=5.0)
    store.apply("put", "c", {"value": 41, "token": 3})
    digest = store.digest()
    call = FakeCall("put", "c", {"value": 42, "token": 3})
    store.receive(call)  # type: ignore[arg-type]
    store.crash()
    sim.advance(10)
    assert call.replies == [], "the reply was in memory when the process died"
    refused = FakeCall("get", "c", {})
    store.receive(refused)  # type: ignore[arg-type]
    assert refused.replies[0].outcome == m.FAILED
    store.recover()
    assert store.value("c") == 42, "the write took effect on arrival, before the crash"
    assert store.tokens["c"] == 3
    assert store.digest() != digest
    assert not store.apply("put", "c", {"value": 1, "token": 2}).ok, "fencing survives"
    served = FakeCall("get", "c", {})
    store.receive(served)  # type: ignore[arg-type]
    sim.advance(20)
    assert served.replies[0].value == {"value": 42, "version": 2}


def test_the_digest_depends_on_contents_only():
    a, _ = make_store()
    b, _ = make_store()
    for key, value in (("x", 1), ("y", [1, 2])):
        a.apply("put", key, {"value": value})
    for key, value in (("y", [1, 2]), ("x", 1)):
        b.apply("put", key, {"value": value})
    assert a.digest() == b.digest()
    b.apply("put", "x", {"value": 2})
    assert a.digest() != b.digest()
    assert a.stats(1000.0)["digest"] == a.digest()
