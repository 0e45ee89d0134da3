"""Request-response: the caller waits for the reply.

Covers: a synchronous call chain, client → api → database, where each hop holds a worker
(a thread) of its caller until the reply comes back over the same edge.
Scenario: 200 req/s against an api with 8 threads that reads the database on every request.
From 20 s to 40 s the database is 20× slower: its 10 connections saturate, every api thread
ends up waiting on it, the api's queue fills, and every request's latency climbs, including
requests that have nothing to do with the slow part. The baseline is the asynchronous
variant: the client hands its request to a queue and is answered on acceptance, so its
latency stays flat while the backlog, and the time to completion, absorb the slowdown.
"""

from __future__ import annotations

from typing import Any

from patterns.catalog.registry import Pattern, check, edge, node, register_pattern
from patterns.engine.simulation import Simulation

RATE_RPS = 200  # offered load
API_THREADS = 8  # caller threads that block on the database
DB_SLOWDOWN = 20  # the teaching fault: database work ×20 from 20 s to 40 s


@register_pattern
class RequestResponse(Pattern):
    SLUG = "request-response"
    NAME = "Request-response"
    CATEGORY = "communication"
    SUMMARY = ("The caller sends a request and waits for the reply, holding a thread while "
               "it waits; the reply comes back over the same connection.")
    PROBLEM = ("The simplest way for one service to ask another for something and use the "
               "answer right away.")
    TRADEOFFS = ("Simple and immediate, but it couples the caller to the callee's speed and "
                 "availability: while the callee is slow, the caller's threads wait, and the "
                 "slowness spreads upstream.")
    TEACHING_FAULT = "The database becomes 20× slower for 20 s."
    BASELINE = ("Asynchronous: the client puts its request on a queue and is answered on "
                "acceptance; a consumer does the work later.")
    OBSERVATIONS = (
        "While the database is slow, all 8 api threads are busy waiting on it and the api's "
        "queue grows: every request's latency climbs, p99 by two orders of magnitude.",
        "Latency of every request is at least the two network legs plus the service time.",
        "In the asynchronous baseline the client's latency stays flat; the queue's backlog "
        "and the time to completion absorb the slowdown instead.",
    )

    def canonical(self) -> dict[str, Any]:
        return {
            "version": 1,
            "title": "Synchronous calls to a database that slows down",
            "pattern": self.SLUG,
            "nodes": [
                node("users", "client", 80, 220, "Users", rate_rps=RATE_RPS),
                node("api", "service", 320, 220, "API", workers=API_THREADS,
                     queue_capacity=1000,
                     service_time_ms={"dist": "exponential", "mean": 3}),
                node("db", "database", 560, 220, "Database", pool_size=10),
            ],
            "edges": [edge("users", "api"), edge("api", "db")],
            "scenario": {"duration_s": 60, "seed": 42, "faults": [
                {"at_s": 20, "until_s": 40, "target": "db", "action": "slow",
                 "value": DB_SLOWDOWN},
            ]},
        }

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        """Insert a queue between the client and the api: reply on acceptance."""
        document["title"] = "Asynchronous: the same work behind a queue"
        api = next(e for e in document["edges"] if e["to"] == "api")
        document["nodes"].append(node("inbox", "queue", 200, 120, "Request queue",
                                      consumers=API_THREADS))
        document["edges"].remove(api)
        document["edges"] += [edge(api["from"], "inbox"), edge("inbox", "api")]
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        api = sim.nodes["api"].summary(sim.duration_ms)
        out: dict[str, Any] = {
            "caller_threads_busy_max": api["max_busy"],
            "api_queue_max": api["max_queue"],
            "client_p99_ms": sim.latency.summary()["p99"],
        }
        inbox = sim.nodes.get("inbox")
        if inbox is not None:
            stats = inbox.summary(sim.duration_ms)
            out["backlog_max"] = stats["max_queue"]
            out["end_to_end_p99_ms"] = stats["end_to_end_ms"]["p99"]
        return out

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        finished = sum(sim.outcomes.values())
        rejected_by_api = sim.nodes["api"].summary(sim.duration_ms)["rejected"]
        return [
            check("every request ends in exactly one outcome", finished <= sim.sent,
                  f"{sim.sent} sent, {finished} finished"),
            check("a full queue rejects, never drops silently",
                  sim.outcomes["rejected"] >= rejected_by_api or "inbox" in sim.nodes,
                  f"{rejected_by_api} rejected by the api"),
        ]
