"""Publisher-subscriber: the topic's broker semantics and the teaching fault in numbers.

Scenario (canonical): 50 events/s → topic → email (5 ms), analytics (20 ms), billing
(40 ms); analytics down 20–40 s. Each test says which broken topic it would catch.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from patterns.catalog import get
from patterns.catalog.registry import edge, find, node
from tests.helpers import run

SLUG = "publisher-subscriber"
TOPIC = "order-events"
SUBSCRIBERS = ("email", "analytics", "billing")
RATE_RPS = 50
OUTAGE_S = 20


def canonical(*, faults: bool = True, duration_s: float = 60, drain_s: float = 5,
              **topic_params: Any) -> dict[str, Any]:
    doc = copy.deepcopy(get(SLUG).canonical())
    doc["scenario"].update(duration_s=duration_s, drain_s=drain_s)
    if not faults:
        doc["scenario"]["faults"] = []
    find(doc, TOPIC)["params"].update(topic_params)
    return doc


def subs(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = summary["nodes"][TOPIC]["subscriptions"]
    return result


def publishes_at_topic(events: list[dict[str, Any]]) -> dict[int, float]:
    """Request id → time the publish reached the topic, from the event stream."""
    sent = {e["id"]: e["req"] for e in events
            if e["k"] == "msg.send" and e["e"] == f"orders-{TOPIC}" and e["dir"] == "req"}
    return {sent[e["id"]]: e["t"] for e in events
            if e["k"] == "msg.recv" and e["e"] == f"orders-{TOPIC}" and e["dir"] == "req"}


def published_between(events: list[dict[str, Any]], start_ms: float, end_ms: float) -> int:
    """Publishes that reached the topic in [start, end)."""
    return sum(1 for t in publishes_at_topic(events).values() if start_ms <= t < end_ms)


def overflow_bounds(capacity: int) -> tuple[float, float]:
    """What a full subscription must turn away: the outage's messages beyond its capacity,
    and at most those of the ≤ 10 s (one maximum backoff) it then needs to notice the
    subscriber is back, while its held messages still fill it."""
    return 0.85 * (RATE_RPS * OUTAGE_S - capacity), 1.1 * RATE_RPS * (OUTAGE_S + 10)


# -- every message reaches every subscriber --------------------------------------------------

def test_every_message_reaches_every_subscriber_at_least_once_and_duplicates_are_counted():
    # A short ack deadline and immediate redelivery make the topic push again messages the
    # subscribers are still working on: they then process some twice.
    doc = canonical(faults=False, duration_s=40, drain_s=20, ack_timeout_ms=60,
                    redelivery_backoff_ms=0)
    find(doc, "billing")["params"]["error_rate"] = 0.2  # failures to redeliver too
    summary, _ = run(doc)
    published = summary["requests"]["sent"]
    assert published > 1800
    duplicates = 0
    for name in SUBSCRIBERS:
        sub = subs(summary)[name]
        assert sub["delivered"] == published, name  # every message, none lost
        assert sub["backlog"] == 0 and sub["lost"] == 0
        # The subscriber's own count of successful processings is the truth the topic's
        # duplicate count must match: each extra success is a duplicate, no more, no less.
        service = summary["nodes"][name]
        assert service["processed"] - service["errors"] == sub["delivered"] + sub["duplicates"]
        duplicates += sub["duplicates"]
    assert subs(summary)["billing"]["redeliveries"] > 0.2 * published
    assert duplicates > 100
    assert all(c["ok"] for c in summary["checks"])


def test_at_most_once_pushes_once_and_counts_what_it_loses():
    doc = canonical(faults=False, duration_s=40, drain_s=20, delivery="at_most_once")
    find(doc, "billing")["params"]["error_rate"] = 0.2
    summary, _ = run(doc)
    published = summary["requests"]["sent"]
    billing = subs(summary)["billing"]
    assert billing["redeliveries"] == 0 and billing["duplicates"] == 0
    assert billing["delivered"] + billing["lost"] == published
    assert billing["lost"] == pytest.approx(0.2 * published, rel=0.15)
    assert summary["nodes"]["billing"]["processed"] == published  # each pushed exactly once


def test_a_late_ack_settles_a_message_waiting_for_redelivery():
    # With the default 1 s backoff the late ack arrives before the redelivery: no duplicate.
    doc = canonical(faults=False, duration_s=30, drain_s=20, ack_timeout_ms=60)
    summary, _ = run(doc)
    billing = subs(summary)["billing"]
    assert billing["redeliveries"] > 100
    assert billing["delivered"] == summary["requests"]["sent"]
    assert billing["duplicates"] < billing["redeliveries"] / 10
    assert summary["nodes"]["billing"]["processed"] == billing["delivered"] \
        + billing["duplicates"]


# -- a slow subscriber slows nobody else -----------------------------------------------------

def test_a_slow_subscriber_backs_up_alone():
    normal, _ = run(canonical(faults=False))
    doc = canonical(faults=False)
    # Billing 10× slower: 8 workers × 400 ms serve 20 events/s of the 50 published.
    doc["scenario"]["faults"] = [{"at_s": 0, "target": "billing", "action": "slow",
                                  "value": 10}]
    slow, _ = run(doc)
    assert subs(slow)["billing"]["backlog_max"] > 1500
    assert subs(normal)["billing"]["backlog_max"] < 50
    # The publisher is answered on acceptance, and each subscription has its own queue and
    # its own pushes: nothing the others see changes, to the last draw.
    assert slow["latency_ms"] == normal["latency_ms"]
    assert slow["requests"] == normal["requests"]
    for name in ("email", "analytics"):
        for figure in ("delivery_p50_ms", "delivery_p99_ms", "backlog_max", "delivered"):
            assert subs(slow)[name][figure] == subs(normal)[name][figure], (name, figure)


# -- a late subscriber gets no old messages --------------------------------------------------

def late_subscriber(join_s: float | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = canonical(faults=False, duration_s=40)
    doc["nodes"].append(node("audit", "service", 540, 520, "Audit", workers=2,
                             service_time_ms={"dist": "exponential", "mean": 2}))
    doc["edges"].append(edge(TOPIC, "audit"))
    if join_s is not None:
        find(doc, TOPIC)["params"]["unsubscribed"] = ["audit"]
        doc["scenario"]["faults"] = [{"at_s": join_s, "target": TOPIC, "action": "set",
                                      "param": "unsubscribed", "value": []}]
    summary, sim = run(doc, trace="full")
    return summary, sim.trace.drain()


def test_a_late_subscriber_gets_no_old_messages():
    summary, events = late_subscriber(join_s=20)
    after_join = published_between(events, 20_000, 1e12)
    audit = subs(summary)["audit"]
    assert audit["delivered"] == after_join
    assert 0.4 * summary["requests"]["sent"] < after_join < 0.6 * summary["requests"]["sent"]
    # Not a single message published before the join was pushed to audit.
    first_after = min(req for req, t in publishes_at_topic(events).items() if t >= 20_000)
    pushed = [e["req"] for e in events if e["k"] == "msg.send" and e["e"] == f"{TOPIC}-audit"]
    assert pushed and min(pushed) >= first_after
    # Subscribed from the start, the same subscriber gets everything.
    always, _ = late_subscriber(join_s=None)
    assert subs(always)["audit"]["delivered"] == always["requests"]["sent"]


def test_a_subscriber_that_leaves_stops_receiving_and_its_backlog_is_discarded():
    doc = canonical(duration_s=40)  # analytics down 20–40 s: it has a backlog at 30 s
    doc["scenario"]["faults"].append({"at_s": 30, "target": TOPIC, "action": "set",
                                      "param": "unsubscribed", "value": ["analytics"]})
    summary, _ = run(doc)
    analytics = subs(summary)["analytics"]
    assert analytics["discarded"] == pytest.approx(RATE_RPS * 10, rel=0.2)
    assert analytics["delivered"] == pytest.approx(RATE_RPS * 20, rel=0.15)
    assert all(c["ok"] for c in summary["checks"])


def test_an_unknown_unsubscribed_name_is_refused():
    with pytest.raises(ValueError, match="no subscription 'nobody'"):
        run(canonical(unsubscribed=["nobody"]))


# -- the teaching fault ----------------------------------------------------------------------

def test_at_least_once_keeps_the_down_subscribers_messages_and_catches_up():
    summary, sim = run(SLUG, trace="fast")
    published = summary["requests"]["sent"]
    analytics = subs(summary)["analytics"]
    assert analytics["delivered"] == published  # nothing lost: it caught up
    assert analytics["lost"] == 0 and analytics["backlog"] == 0
    assert analytics["backlog_max"] == pytest.approx(RATE_RPS * OUTAGE_S, rel=0.12)
    assert analytics["redeliveries"] > 0
    backlog = {e["t"] / 1000: e["backlog"]["analytics"] for e in sim.trace.drain()
               if e["k"] == "metric" and e["node"] == TOPIC}
    assert backlog[30.0] == pytest.approx(RATE_RPS * 10, rel=0.2)  # grows while down
    assert backlog[40.0] > 0.8 * RATE_RPS * OUTAGE_S
    assert backlog[52.0] < 20  # drained within about one maximum backoff (10 s)
    # The others see nothing of it.
    no_fault, _ = run(canonical(faults=False))
    for name in ("email", "billing"):
        assert subs(summary)[name] == subs(no_fault)[name]
    assert summary["pattern"]["publishes_failed"] == 0
    assert all(c["ok"] for c in summary["checks"]), summary["checks"]


def test_at_most_once_loses_what_is_published_during_the_outage():
    summary, sim = run(SLUG, trace="full", assignments=[f"{TOPIC}.delivery=\"at_most_once\""])
    during = published_between(sim.trace.drain(), 20_000, 40_000)
    analytics = subs(summary)["analytics"]
    # ≈ rate × outage; a few more were queued or in flight when it crashed.
    assert during == pytest.approx(RATE_RPS * OUTAGE_S, rel=0.1)
    assert during <= analytics["lost"] <= during + 12
    assert analytics["delivered"] + analytics["lost"] == summary["requests"]["sent"]
    assert subs(summary)["email"]["lost"] == subs(summary)["billing"]["lost"] == 0
    assert summary["pattern"]["publishes_failed"] == 0


def test_the_no_loss_check_fails_when_an_at_least_once_subscription_overflows():
    summary, _ = run(canonical(subscription_capacity=100))
    analytics = subs(summary)["analytics"]
    low, high = overflow_bounds(100)
    assert low < analytics["overflowed"] < high
    assert analytics["backlog_max"] <= 100 + 10  # waiting + in flight
    checks = {c["name"]: c["ok"] for c in summary["checks"]}
    assert checks["no message lost with at-least-once"] is False
    assert checks["analytics: every stored message has exactly one fate"] is True
    assert summary["pattern"]["publishes_failed"] == 0  # drop_head: the publisher never knows


def test_reject_publish_pushes_back_on_the_publisher_but_others_keep_the_message():
    summary, _ = run(canonical(subscription_capacity=100, overflow="reject_publish"))
    refused = summary["nodes"][TOPIC]["rejected"]
    low, high = overflow_bounds(100)
    assert low < refused < high
    assert summary["requests"]["rejected"] == refused
    assert subs(summary)["email"]["delivered"] == summary["requests"]["sent"]
    assert subs(summary)["analytics"]["delivered"] == summary["requests"]["sent"] - refused


def test_a_crashed_topic_loses_what_it_held_and_refuses_publishes():
    doc = canonical(faults=False, duration_s=30)
    doc["scenario"]["faults"] = [
        {"at_s": 5, "until_s": 20, "target": "billing", "action": "crash"},
        {"at_s": 15, "until_s": 16, "target": TOPIC, "action": "crash"},
    ]
    summary, _ = run(doc)
    billing = subs(summary)["billing"]
    assert billing["lost_in_crash"] == pytest.approx(RATE_RPS * 10, rel=0.2)
    assert summary["requests"]["failed"] == pytest.approx(RATE_RPS, rel=0.35)
    assert all(c["ok"] for c in summary["checks"] if "fate" in c["name"])


# -- the baseline: synchronous calls to every subscriber -------------------------------------

def expected_max_of_exponentials(means: tuple[float, ...]) -> float:
    """E[max] of independent exponentials, by inclusion-exclusion over subsets."""
    rates = [1 / m for m in means]
    total = 0.0
    n = len(rates)
    for mask in range(1, 2 ** n):
        chosen = [rates[i] for i in range(n) if mask >> i & 1]
        total += (-1) ** (len(chosen) + 1) / sum(chosen)
    return total


def test_the_baseline_publisher_waits_for_the_slowest_subscriber():
    baseline, _ = run(canonical(faults=False, duration_s=120), baseline=True)
    pattern, _ = run(canonical(faults=False, duration_s=120))
    slowest_of_three = expected_max_of_exponentials((5.0, 20.0, 40.0))  # ≈ 46.9 ms
    # Plus two network round trips (≈ 1.2 ms each) and a little queueing.
    assert slowest_of_three + 1 < baseline["latency_ms"]["mean"] < slowest_of_three + 6
    assert baseline["latency_ms"]["p50"] > subs(pattern)["billing"]["delivery_p50_ms"]
    assert pattern["latency_ms"]["p99"] < 5  # the topic answers on acceptance
    assert pattern["latency_ms"]["mean"] < baseline["latency_ms"]["mean"] / 20


def test_the_baseline_fails_the_publisher_while_a_subscriber_is_down():
    baseline, sim = run(SLUG, baseline=True, trace="full")
    during = published_between(sim.trace.drain(), 20_000, 40_000)
    failed = baseline["pattern"]["publishes_failed"]
    assert during - 12 <= failed <= during + 12
    assert failed == pytest.approx(RATE_RPS * OUTAGE_S, rel=0.1)
    # Email and billing did the work of those failed publishes anyway.
    processed = baseline["pattern"]["subscribers_processed"]
    assert processed["email"] == processed["billing"] == baseline["requests"]["sent"]
    pattern, _ = run(SLUG)
    assert pattern["pattern"]["publishes_failed"] == 0


def test_figures_carry_the_entry_names():
    summary, _ = run(SLUG)
    figures = summary["pattern"]
    assert {"published", "publisher_p50_ms", "publisher_p99_ms", "subscriptions"} <= set(figures)
    for name in SUBSCRIBERS:
        assert {"delivered", "duplicates", "lost", "backlog_max", "delivery_p50_ms",
                "delivery_p99_ms", "redeliveries"} <= set(figures["subscriptions"][name])


# -- the delivery helper the queue shares ----------------------------------------------------

def test_a_queue_that_crashes_and_recovers_ignores_acks_from_before_the_crash():
    doc = {"version": 1, "nodes": [
        node("p", "client", 0, 0, rate_rps=100),
        node("q", "queue", 0, 0, consumers=8),
        node("c", "service", 0, 0, workers=8,
             service_time_ms={"dist": "exponential", "mean": 50}),
    ], "edges": [edge("p", "q"), edge("q", "c")],
        "scenario": {"duration_s": 20, "seed": 3, "drain_s": 5, "faults": [
            {"at_s": 10, "until_s": 10.01, "target": "q", "action": "crash"}]}}
    summary, sim = run(doc)
    queue = sim.nodes["q"]
    assert queue.in_flight == 0 and len(queue.backlog) == 0
    stats = summary["nodes"]["q"]
    assert stats["lost_in_crash"] > 0
    # Each accepted message is delivered or lost in the crash, never both.
    assert stats["processed"] + stats["lost_in_crash"] == stats["accepted"]
