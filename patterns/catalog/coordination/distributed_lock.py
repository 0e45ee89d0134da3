"""Distributed lock: a lease with a TTL, and fencing tokens checked by the resource.

Covers: 3 ``lock_worker``s take a lease on the lock ``job`` from a ``lock_service`` (TTL
10 s, renewed every TTL/3) and increment a counter in a ``fenced_store`` with a
read-modify-write, passing their fencing token with every operation.
Scenario: at 10 s the holder (``holder:job``, resolved when the fault fires) is paused for
15 s, like a stop-the-world GC. Its lease expires; the others take the lock with higher
tokens and go on counting; at 25 s it wakes and writes the value it read before the pause.
Fencing refuses that write (nothing lost). The baseline turns fencing off: the stale write is
accepted and the counter drops back by every increment made meanwhile, which the check
"no stale write accepted" catches with its counterexample.
"""

from __future__ import annotations

from typing import Any

from patterns.catalog.registry import Pattern, check, edge, node, register_pattern
from patterns.components.kv_store import ACCEPTED, KvStore
from patterns.components.lock import COUNTER, LockWorker
from patterns.engine.invariants import Events, Verdict
from patterns.engine.metrics import quantile_sorted
from patterns.engine.simulation import Simulation

LOCK = "job"
WORKERS = 3
LINK_MS = 1.0  # one way, constant: a LAN


def workers(sim: Simulation) -> list[LockWorker]:
    return [n for n in sim.nodes.values() if isinstance(n, LockWorker)]


def store(sim: Simulation) -> KvStore | None:
    return next((n for n in sim.nodes.values() if isinstance(n, KvStore)), None)


@register_pattern
class DistributedLock(Pattern):
    SLUG = "distributed-lock"
    NAME = "Distributed lock (leases and fencing tokens)"
    CATEGORY = "coordination"
    SUMMARY = ("Workers take a lease on a lock before a read-modify-write; every grant "
               "carries a rising fencing token that the store checks.")
    PROBLEM = ("Several processes update a shared resource, and only one may do so at a "
               "time. A lock that can be held for ever stalls everyone when its holder dies, "
               "so locks are leases that expire; but a holder that pauses past its expiry "
               "does not know, and writes after the next holder.")
    TRADEOFFS = ("A lease alone gives no mutual exclusion at the resource: a pause, a slow "
                 "network or a fast clock lets two workers believe they hold the lock. "
                 "Fencing tokens make the resource refuse the stale one, but the resource "
                 "must check them; a short TTL fails over fast and expires more often.")
    TEACHING_FAULT = ("The holder of the lock is paused for 15 s at 10 s (a GC pause), "
                      "longer than its 10 s lease.")
    BASELINE = "Fencing off: the store accepts any token."
    OBSERVATIONS = (
        "With fencing, the counter and the sections-completed line coincide; without it "
        "they split at ≈ 25 s, when the paused worker writes its stale value.",
        "The store's rejected-writes counter shows the one refused write.",
        "Two workers believe they hold the lock at once in both runs: fencing does not "
        "prevent that, it makes the store ignore the stale one.",
        "Fencing tokens strictly increase and at most one lease is live at any instant, "
        "checked on the run's events.",
    )

    def canonical(self) -> dict[str, Any]:
        nodes = [node(f"w{i}", "lock_worker", 100, 100 + 140 * (i - 1), f"Worker {i}",
                      cluster=LOCK, peer_latency_ms=LINK_MS)
                 for i in range(1, WORKERS + 1)]
        nodes += [node("locks", "lock_service", 380, 140, "Lock service", lease_ttl_s=10.0),
                  node("store", "fenced_store", 380, 320, "Counter store")]
        edges = [edge(w["id"], dst, latency_ms=LINK_MS, timeout_ms=1000.0)
                 for w in nodes[:WORKERS] for dst in ("locks", "store")]
        return {
            "version": 1,
            "title": "Three workers, a lease lock and a fenced counter; the holder pauses",
            "pattern": self.SLUG,
            "nodes": nodes,
            "edges": edges,
            "scenario": {"duration_s": 60, "seed": 42, "faults": [
                {"at_s": 10, "until_s": 25, "target": f"holder:{LOCK}", "action": "pause"},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        document["title"] = "Fencing off: the store accepts any token"
        for item in document["nodes"]:
            if item["kind"] in ("fenced_store", "kv_store"):
                item["params"]["fencing"] = False
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        return lock_figures(sim)

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        out = []
        for name, verdict in (
            ("at most one live lease per lock", one_lease_at_a_time(sim.records)),
            ("fencing tokens strictly increase", tokens_increase(sim.records)),
            ("no stale write accepted", no_stale_write(sim.records)),
            ("no update lost", no_lost_update(sim.records)),
        ):
            out.append(check(name, verdict.ok, verdict.detail, verdict.counterexample))
        return out


# -- figures -----------------------------------------------------------------------------------
def holding_spans(sim: Simulation) -> list[tuple[float, float, str]]:
    """When each worker believed it held the lock: (start, end, worker)."""
    spans = []
    for worker in workers(sim):
        since: float | None = None
        for change in worker.states:
            holding = change["to"].startswith("HOLDING")
            if holding and since is None:
                since = change["t"]
            elif not holding and since is not None:
                spans.append((since, change["t"], worker.id))
                since = None
        if since is not None:
            spans.append((since, sim.end_ms, worker.id))
    return spans


def overlap_ms(spans: list[tuple[float, float, str]]) -> float:
    """Milliseconds during which two or more spans overlap."""
    points = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    total, depth, since = 0.0, 0, 0.0
    for t, step in points:
        if depth >= 2:
            total += t - since
        depth += step
        since = t
    return total


def lock_figures(sim: Simulation) -> dict[str, Any]:
    records = sim.records
    grants = [e for e in records if e["k"] == "lock.grant"]
    writes = [e for e in records if e["k"] == "store.write" and e["result"] == ACCEPTED]
    kv = store(sim)
    counter = int(kv.value(COUNTER) or 0) if kv is not None else 0
    # A section completed when its write took effect at the store (acknowledged or not: a
    # write whose reply was lost still counts up the counter).
    sections = kv.writes if kv is not None else 0
    waits = sorted(x for w in workers(sim) for x in w.waits)
    return {
        "grants": len(grants),
        "max_token": max((e["token"] for e in grants), default=0),
        "leases_expired": sum(1 for e in records if e["k"] == "lock.expire"),
        "stale_writes_accepted": kv.stale_writes_accepted if kv is not None else 0,
        "stale_writes_rejected": kv.stale_writes_rejected if kv is not None else 0,
        "lost_updates": sections - counter,
        "holder_overlap_ms": round(overlap_ms(holding_spans(sim)), 3),
        "lock_wait_ms_p99": round(quantile_sorted(waits, 0.99), 3) if waits else None,
        "sections_completed": sections,
        "counter": counter,
        # The furthest an accepted write set the counter back (a stale value over newer).
        "max_counter_rollback": max((int(e["prev"] or 0) + 1 - e["value"] for e in writes),
                                    default=0),
        "fenced_writes_accepted": len(writes),
    }


# -- checks (on the run's records) ----------------------------------------------------------
def _ce(t: float, nodes: list[str], what: str) -> dict[str, Any]:
    return {"t": t, "nodes": nodes, "what": what}


def one_lease_at_a_time(events: Events) -> Verdict:
    """A grant only when the lock's previous lease was released or expired."""
    live: dict[str, dict[str, Any]] = {}
    grants = 0
    for ev in events:
        k = ev["k"]
        if k == "lock.grant":
            grants += 1
            other = live.get(ev["lock"])
            if other is not None:
                return Verdict(False, "two live leases on one lock", _ce(
                    ev["t"], [other["worker"], ev["worker"]],
                    f"{ev['worker']} was granted {ev['lock']} (token {ev['token']}) while "
                    f"{other['worker']}'s lease (token {other['token']}) was live"))
            live[ev["lock"]] = ev
        elif k in ("lock.release", "lock.expire"):
            held = live.get(ev["lock"])
            if held is not None and held["token"] == ev["token"]:
                del live[ev["lock"]]
    return Verdict(True, f"{grants} grants, never two live leases on a lock")


def tokens_increase(events: Events) -> Verdict:
    """Each grant's token is above every earlier one."""
    top: dict[str, Any] | None = None
    for ev in events:
        if ev["k"] != "lock.grant":
            continue
        if top is not None and ev["token"] <= top["token"]:
            return Verdict(False, "a token did not rise", _ce(
                ev["t"], [top["worker"], ev["worker"]],
                f"{ev['worker']} got token {ev['token']} after {top['worker']} got "
                f"{top['token']}"))
        top = ev
    return Verdict(True, f"tokens rose to {top['token'] if top else 0}")


def no_stale_write(events: Events) -> Verdict:
    """The store accepts no write whose token is below one it already accepted on the key."""
    highest: dict[str, tuple[int, str]] = {}
    accepted = 0
    for ev in events:
        if ev["k"] not in ("store.read", "store.write") or ev["result"] != ACCEPTED:
            continue
        key, token = ev["key"], ev["token"]
        top = highest.get(key)
        if top is not None and token < top[0]:
            if ev["k"] == "store.write":
                return Verdict(False, "a stale write was accepted", _ce(
                    ev["t"], [ev["by"], top[1]],
                    f"the store accepted {ev['by']}'s write of {ev['value']} with token "
                    f"{token} after {top[1]} used token {top[0]}"))
            continue
        accepted += ev["k"] == "store.write"
        highest[key] = (token, ev["by"])
    return Verdict(True, f"{accepted} fenced writes accepted, none with a stale token")


def no_lost_update(events: Events) -> Verdict:
    """Every accepted increment builds on the value before it (the counter = increments)."""
    count = 0
    for ev in events:
        if ev["k"] != "store.write" or ev["result"] != ACCEPTED:
            continue
        count += 1
        prev = int(ev["prev"] or 0)
        if ev["value"] != prev + 1:
            return Verdict(False, "an update was lost", _ce(
                ev["t"], [ev["by"]],
                f"{ev['by']} wrote {ev['value']} over {prev}: {prev + 1 - ev['value']} "
                "increments lost"))
    return Verdict(True, f"{count} increments, each on the value before it")
