"""A runnable world built from a (validated, defaults-filled) topology document.

``Simulation(document)`` instantiates the nodes and edges, schedules the scenario's
faults and the per-second metric sampler, and runs. It can run to the end in one go
(:meth:`run`) or in slices (:meth:`advance`), draining events between slices, which is how a
paced run streams frames. Every request's outcome is recorded here, so the summary counts
each request exactly once.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from typing import Any

from patterns.engine import distributions, faults
from patterns.engine import messages as m
from patterns.engine.cluster import Cluster
from patterns.engine.flows import Flows
from patterns.engine.history import History
from patterns.engine.kernel import Kernel
from patterns.engine.ledger import MessageLedger
from patterns.engine.metrics import LatencyRecorder, Window, quantile_sorted
from patterns.engine.network import Edge, Network
from patterns.engine.node import Node, kind_class
from patterns.engine.policies import RetryPolicy
from patterns.engine.randomness import stream
from patterns.engine.trace import Level, Trace

SAMPLE_MS = 1000.0

FiguresFn = Callable[["Simulation"], dict[str, Any]]
_OUTCOME_INDEX = {outcome: i for i, outcome in enumerate(m.OUTCOMES)}


class Simulation:
    def __init__(self, document: dict[str, Any], trace: Level = "full",
                 figures: FiguresFn | None = None) -> None:
        self.document = document
        scenario = document["scenario"]
        self.seed: int = scenario["seed"]
        self.duration_ms: float = scenario["duration_s"] * 1000.0
        self.drain_ms: float = scenario.get("drain_s", 0.0) * 1000.0
        self.end_ms = self.duration_ms + self.drain_ms
        self.kernel = Kernel()
        self.trace = Trace(trace)
        self.network = Network(self.kernel, self.trace)
        self._figures = figures
        self._next_request_id = 0

        # Outcomes of every request, for the summary and the live charts.
        self.sent = 0
        self.outcomes = dict.fromkeys(m.OUTCOMES, 0)
        self.latency = LatencyRecorder()
        # When each finished request was created and how long it took, in finishing order
        # (16 bytes a request), so a summary can be cut to a time window: the span of a fault.
        self.done_created: array[float] = array("d")
        self.done_latency: array[float] = array("d")
        # And how each ended (its index in m.OUTCOMES), for goodput over a window.
        self.done_outcome: array[int] = array("B")
        self.window = Window()
        self.faults_applied: list[dict[str, Any]] = []
        # Events the run's checks read, kept whatever the trace level (see :meth:`record`),
        # and the operation history.
        self.records: list[dict[str, Any]] = []
        self.history = History(self)
        self.flows = Flows(self)
        self.ledger = MessageLedger(self)

        self.nodes: dict[str, Node] = {}
        for spec in document["nodes"]:
            cls = kind_class(spec["kind"])
            self.nodes[spec["id"]] = cls(self, spec["id"], spec["params"])
        self.clusters: dict[str, Cluster] = {}
        members: dict[str, list[Node]] = {}
        for node in self.nodes.values():
            if node.p.get("cluster"):
                members.setdefault(node.p["cluster"], []).append(node)
        for name, group in members.items():
            cluster = self.clusters[name] = Cluster(self, name, group)
            for node in group:
                node.join(cluster)
        for spec in document["edges"]:
            self._add_edge(spec)
        for node in self.nodes.values():
            node.start()
        for fault in scenario.get("faults", []):
            self.schedule_fault(fault)
        self.kernel.schedule(SAMPLE_MS, self._sample)

    # -- building ----------------------------------------------------------------------------
    def rng(self, owner: str, purpose: str = "") -> random.Random:
        return stream(self.seed, owner, purpose)

    def _add_edge(self, spec: dict[str, Any]) -> None:
        params = spec["params"]
        src, dst = self.nodes[spec["from"]], self.nodes[spec["to"]]
        latency = distributions.parse(params["latency_ms"])
        retry = None
        if params.get("retry") is not None:
            retry = RetryPolicy(params["retry"], self.rng(spec["id"], "retry"))
        edge = Edge(spec["id"], src, dst, params, latency, self.rng(spec["id"]), retry)
        self.network.edges[edge.id] = edge
        src.out_edges.append(edge)
        dst.in_edges.append(edge)

    # -- requests ----------------------------------------------------------------------------
    def new_request(self, client: str, key: str | None = None, op: str = "read",
                    timeout_ms: float | None = None, size: int = 1024) -> m.Request:
        self._next_request_id += 1
        self.sent += 1
        now = self.kernel.now
        deadline = now + timeout_ms if timeout_ms is not None else None
        return m.Request(self._next_request_id, now, key, op, deadline, size, client)

    def request_done(self, req: m.Request, reply: m.Reply) -> None:
        """Record the one outcome of ``req``; called by the client that started it."""
        latency = self.kernel.now - req.created
        outcome = reply.outcome
        self.outcomes[outcome] += 1
        self.latency.record(latency)
        self.done_created.append(req.created)
        self.done_latency.append(latency)
        self.done_outcome.append(_OUTCOME_INDEX[outcome])
        trace = self.trace
        if trace.on:
            self.window.add(outcome, latency)
            if trace.full:
                event: dict[str, Any] = {"t": self.kernel.now, "k": "req.done", "req": req.id,
                                         "client": req.client, "outcome": outcome,
                                         "lat": round(latency, 3)}
                if reply.error:
                    event["error"] = reply.error
                if reply.status and outcome != m.SUCCEEDED:
                    event["status"] = reply.status
                trace.emit(event)

    # -- faults ------------------------------------------------------------------------------
    def schedule_fault(self, fault: dict[str, Any]) -> None:
        self.kernel.schedule_at(fault["at_s"] * 1000.0, self._fire_scheduled, fault)

    def _fire_scheduled(self, fault: dict[str, Any]) -> None:
        self._fire_fault(fault)

    def inject(self, fault: dict[str, Any]) -> dict[str, Any]:
        """Apply a fault now (a live intervention); ``at_s`` is taken as now. Returns the
        fault as recorded (a role selector's node resolved)."""
        fault = {**fault, "at_s": round(self.kernel.now / 1000.0, 3)}
        return self._fire_fault(fault)

    def record(self, event: dict[str, Any]) -> None:
        """An event the run's checks read: kept in ``records`` whatever the trace level,
        and on the trace too. ``t`` is set to now."""
        event["t"] = round(self.kernel.now, 3)
        self.records.append(event)
        self.trace.emit(event)

    def resolve_role(self, selector: str) -> str | None:
        """The node a role selector (``leader:<cluster>``) names now, or None."""
        role, _, group = selector.partition(":")
        cluster = self.clusters.get(group)
        holder = cluster.holder(role) if cluster is not None else None
        return holder.id if holder is not None else None

    def _fire_fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        """Apply a fault now; returns it as recorded (with ``node``, the node a role
        selector resolved to, so that a replay hits the same node)."""
        target = fault["target"]
        if faults.is_selector(target):
            node_id = fault.get("node") or self.resolve_role(target)
            fault = {**fault, "node": node_id}
            self.faults_applied.append(fault)
            self.trace.emit({"t": self.kernel.now, "k": "fault", **fault})
            if node_id is None:
                self.trace.emit({"t": self.kernel.now, "k": "note", "node": target,
                                 "text": f"no {target.replace(':', ' of ', 1)} now: "
                                         f"{fault['action']} not applied"})
                return fault
            applied = {**fault, "target": node_id}
        else:
            applied = fault
            self.faults_applied.append(fault)
            self.trace.emit({"t": self.kernel.now, "k": "fault", **fault})
        revert = faults.apply(self, applied)
        self.trace.emit({"t": self.kernel.now, "k": "note", "node": applied["target"],
                         "text": faults.describe(applied)})
        until = fault.get("until_s")
        if until is not None and revert is not None:
            def end(_: Any) -> None:
                revert()
                event = {"t": self.kernel.now, "k": "fault", "action": "end",
                         "of": fault["action"], "target": fault["target"]}
                if "node" in fault:
                    event["node"] = fault["node"]
                self.trace.emit(event)
            self.kernel.schedule_at(until * 1000.0, end)
        return fault

    # -- running -----------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.kernel.now

    @property
    def done(self) -> bool:
        return bool(self.kernel.now >= self.end_ms)

    def advance(self, until_ms: float) -> None:
        """Run up to ``until_ms`` (capped at the end of the run)."""
        self.kernel.run(min(until_ms, self.end_ms))

    def run(self) -> Simulation:
        self.kernel.run(self.end_ms)
        return self

    def _sample(self, _: Any) -> None:
        if self.trace.on:
            now = self.kernel.now
            latencies, counts = self.window.take()
            if latencies:
                latencies.sort()
            self.trace.emit({
                "t": now, "k": "metric", "node": "*",
                "done": len(latencies),
                "ok": counts.get(m.SUCCEEDED, 0), "err": counts.get(m.FAILED, 0),
                "rej": counts.get(m.REJECTED, 0), "to": counts.get(m.TIMED_OUT, 0),
                "p50": round(quantile_sorted(latencies, 0.5), 3),
                "p99": round(quantile_sorted(latencies, 0.99), 3),
            })
            for node in self.nodes.values():
                fields = node.sample(SAMPLE_MS)
                if fields:
                    self.trace.emit({"t": now, "k": "metric", "node": node.id, **fields})
        if self.kernel.now + SAMPLE_MS <= self.end_ms:
            self.kernel.schedule(SAMPLE_MS, self._sample)

    # -- results -----------------------------------------------------------------------------
    def latency_between(self, start_ms: float, end_ms: float) -> dict[str, float]:
        """Latency summary of the finished requests created in [start_ms, end_ms).

        ``requests`` says how many were counted (requests still running are not).
        """
        recorder = LatencyRecorder()
        for created, latency in zip(self.done_created, self.done_latency, strict=True):
            if start_ms <= created < end_ms:
                recorder.record(latency)
        return {"requests": recorder.count, **recorder.summary()}

    def outcomes_between(self, start_ms: float, end_ms: float) -> dict[str, int]:
        """Outcomes of the requests that finished in [start_ms, end_ms) (e.g. goodput)."""
        counts = [0] * len(m.OUTCOMES)
        for created, latency, outcome in zip(self.done_created, self.done_latency,
                                             self.done_outcome, strict=True):
            if start_ms <= created + latency < end_ms:
                counts[outcome] += 1
        return dict(zip(m.OUTCOMES, counts, strict=True))

    def summary(self) -> dict[str, Any]:
        duration_s = self.duration_ms / 1000.0
        finished = sum(self.outcomes.values())
        return {
            "requests": {"sent": self.sent, **self.outcomes,
                         "in_flight": self.sent - finished},
            "latency_ms": self.latency.summary(),
            "throughput_rps": round(self.outcomes[m.SUCCEEDED] / duration_s, 3)
            if duration_s else 0.0,
            "duration_s": duration_s,
            "seed": self.seed,
            "nodes": {nid: node.summary(self.duration_ms) for nid, node in self.nodes.items()},
            "faults": self.faults_applied,
            **({"flows": self.flows.summary()} if self.flows.started else {}),
            "pattern": self._figures(self) if self._figures else {},
        }
