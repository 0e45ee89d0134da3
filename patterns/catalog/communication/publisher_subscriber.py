"""Publisher-subscriber: a topic copies each message to every subscriber, at its own pace.

Covers: the generic ``topic`` kind (one subscription queue per subscriber, acks, ack
deadline and redelivery, at-most-once or at-least-once) and what decoupling in time buys.
Scenario: an ``orders`` publisher sends 50 order events a second to the ``order-events``
topic, subscribed by three services that take different times over each event: ``email``
(5 ms), ``analytics`` (20 ms) and ``billing`` (40 ms), all exponential. From 20 s to 40 s
``analytics`` is down. Its subscription keeps its messages: the backlog climbs to ≈ 50/s ×
20 s = 1 000, the topic retries with a backoff (1 s doubling to 10 s) and, once analytics is
back, the backlog drains within about one maximum backoff; ``email`` and ``billing`` see
nothing, and the publisher, answered as soon as the message is stored, neither.
``--set order-events.delivery=at_most_once`` shows the other guarantee: each message is
pushed once, and the ≈ 1 000 sent during the outage are lost.

Baseline: no topic. The publisher calls the three subscribers itself, in parallel and
synchronously, so each publish takes as long as the slowest of them (≈ E[max] of the three
times ≈ 47 ms + network) and fails while any of them is down.
"""

from __future__ import annotations

from typing import Any

from patterns.catalog.registry import Pattern, check, edge, node, register_pattern
from patterns.components.delivery import AT_LEAST_ONCE
from patterns.components.topic import Topic
from patterns.engine.simulation import Simulation

RATE_RPS = 50  # order events published per second
# Subscribers: (id, label, mean processing ms, workers); each at ρ = 0.125–0.25.
SUBSCRIBERS = (
    ("email", "Email", 5.0, 2),
    ("analytics", "Analytics", 20.0, 4),
    ("billing", "Billing", 40.0, 8),
)
DOWN = "analytics"  # the teaching fault: this subscriber is down from 20 s to 40 s
DOWN_FROM_S, DOWN_UNTIL_S = 20, 40
TOPIC = "order-events"
FANOUT = "fanout"  # the baseline's synchronous fan-out, in place of the topic


@register_pattern
class PublisherSubscriber(Pattern):
    SLUG = "publisher-subscriber"
    NAME = "Publisher-subscriber"
    CATEGORY = "communication"
    SUMMARY = ("A publisher sends each message once to a topic; the topic keeps one queue "
               "per subscriber and pushes every subscriber its own copy, at the pace that "
               "subscriber can take.")
    PROBLEM = ("Several services must react to the same event, and the one that produces it "
               "should neither know them nor wait for them, nor fail when one of them does.")
    TRADEOFFS = ("The publisher is decoupled in time and in availability, but the outcome is "
                 "no longer known when it is answered: a down subscriber's messages pile up "
                 "(and are lost with at-most-once), at-least-once brings duplicates the "
                 "subscriber must tolerate, and a subscriber that joins late never sees what "
                 "was published before (a log can replay; a topic cannot).")
    TEACHING_FAULT = "The analytics subscriber is down from 20 s to 40 s."
    BASELINE = ("The publisher calls each subscriber synchronously, in parallel: its latency "
                "is the slowest subscriber's, and it fails while one of them is down.")
    OBSERVATIONS = (
        "The publisher's latency is the round trip to the topic (≈ 1 ms) whatever the "
        "subscribers do; in the baseline it is the slowest subscriber's time (≈ 50 ms).",
        "While analytics is down only its backlog climbs, to ≈ 1 000 messages; email's and "
        "billing's stay near zero and their delivery latency does not move.",
        "With at-least-once the backlog drains within ≈ 10 s of the recovery and analytics "
        "gets every message; with at-most-once the ≈ 1 000 published during the outage are "
        "lost, counted.",
        "In the baseline about 1 000 publishes fail during the outage although email and "
        "billing did process them: the publisher cannot tell who got what, and a retry "
        "would give them duplicates.",
    )

    def canonical(self) -> dict[str, Any]:
        nodes = [
            node("orders", "client", 80, 240, "Orders (publisher)", rate_rps=RATE_RPS),
            node(TOPIC, "topic", 300, 240, "Order events", delivery=AT_LEAST_ONCE),
        ]
        edges = [edge("orders", TOPIC)]
        for i, (sub_id, label, mean_ms, workers) in enumerate(SUBSCRIBERS):
            nodes.append(node(sub_id, "service", 540, 100 + 140 * i, label, workers=workers,
                              service_time_ms={"dist": "exponential", "mean": mean_ms}))
            edges.append(edge(TOPIC, sub_id))
        return {
            "version": 1,
            "title": "Order events fanned out to three subscribers",
            "pattern": self.SLUG,
            "nodes": nodes,
            "edges": edges,
            "scenario": {"duration_s": 60, "seed": 42, "drain_s": 5, "faults": [
                {"at_s": DOWN_FROM_S, "until_s": DOWN_UNTIL_S, "target": DOWN,
                 "action": "crash"},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        """Replace the topic by a synchronous parallel fan-out done on the publisher's behalf."""
        document["title"] = "The publisher calls every subscriber synchronously"
        topics = {n["id"] for n in document["nodes"] if n["kind"] == "topic"}
        for item in document["nodes"]:
            if item["id"] in topics:
                item.update(kind="service", label="Synchronous fan-out",
                            params={"workers": 1000, "queue_capacity": 100_000,
                                    "service_time_ms": 0, "fanout": "parallel"})
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        latency = sim.latency.summary()
        out: dict[str, Any] = {
            "published": sim.sent,
            "publisher_p50_ms": latency["p50"],
            "publisher_p99_ms": latency["p99"],
            "publishes_failed": sim.outcomes["failed"] + sim.outcomes["rejected"]
            + sim.outcomes["timed_out"],
        }
        for topic in _topics(sim):
            out["delivery"] = topic.p["delivery"]
            out["subscriptions"] = {
                name: {key: figures[key] for key in (
                    "delivered", "duplicates", "lost", "backlog_max", "delivery_p50_ms",
                    "delivery_p99_ms", "redeliveries", "dead_lettered", "overflowed")}
                for name, figures in ((n, s.figures()) for n, s in topic.subscriptions.items())}
        if not _topics(sim):
            out["subscribers_processed"] = {
                n.id: n.summary(sim.duration_ms)["processed"]
                for n in sim.nodes.values() if n.KIND == "service" and not n.out_edges}
        return out

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        out = []
        for topic in _topics(sim):
            for name, sub in topic.subscriptions.items():
                settled = sub.accounted()
                out.append(check(f"{name}: every stored message has exactly one fate",
                                 settled == sub.stored,
                                 f"{sub.stored} stored, {settled} accounted for"))
            subs = topic.subscriptions.values()
            if topic.p["delivery"] == AT_LEAST_ONCE:
                lost = sum(s.lost + s.overflowed + s.lost_in_crash for s in subs)
                out.append(check("no message lost with at-least-once", lost == 0,
                                 f"{lost} lost"))
            if not any(f["target"] == topic.id for f in sim.faults_applied):
                # Answered on acceptance: only the topic itself can refuse a publish.
                failed = sum(sim.outcomes[o] for o in ("failed", "rejected", "timed_out"))
                out.append(check("no subscriber's trouble fails a publish",
                                 failed == topic.rejected,
                                 f"{failed} publishes failed, {topic.rejected} refused by "
                                 "a full subscription"))
        return out


def _topics(sim: Simulation) -> list[Topic]:
    return [n for n in sim.nodes.values() if isinstance(n, Topic)]
