"""Saga: a business transaction over several services' databases, undone step by step when
a later step fails, with no distributed lock and no two-phase commit.

Covers: the ``saga_orchestrator`` kind (steps with compensations, a pivot, a durable saga
log) and ``participant``s, each with its own transactional database and an inbox that
applies a re-sent command once.
Scenario: the ``shop`` starts 20 sagas a second. Each runs T1 ``orders.create`` (the order
row, APPROVAL_PENDING), T2 ``inventory.reserve`` (one unit of stock), T3
``payment.authorize`` (the pivot, lognormal median 100 ms, p99 400 ms), T4
``shipping.schedule`` and T5 ``orders.approve``. Payment declines 20% (a ``business``
error) and the orchestrator crashes from 20 s to 25 s. A declined saga is compensated,
last step first (C2 ``inventory.release``, then C1 ``orders.reject``); the orchestrator
reads its open sagas back from its log after the crash and re-sends their current
commands, which the participants' inboxes apply once. After the drain every saga is
completed or compensated, and the reserved units match the completed sagas.

Baseline: the same steps with no compensations and an in-memory coordinator: every
declined saga leaves its order pending and its unit reserved (``leaked_units``), and the
sagas in flight at the crash are lost half done.

Variant ``choreography`` (``--variant choreography``): no orchestrator. Each service is an
event ``reactor`` with its own database, inbox and outbox on one ``event_log``: OrderCreated →
StockReserved → PaymentAuthorized → ShipmentScheduled, and on a decline PaymentDeclined →
StockReleased → the order rejected; inventory crashes from 20 s to 25 s. The same checks
read the services' commits through a map of (service, event) to saga step. Its baseline
drops the compensating reactions: declined orders stay pending, units held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patterns.catalog.orchestration import choreography, truth
from patterns.catalog.registry import Pattern, edge, node, register_pattern, verdict_checks
from patterns.components.participant import OUT_OF_STOCK, Participant
from patterns.components.reactor import Reactor
from patterns.engine.invariants import Verdict
from patterns.engine.metrics import quantile_sorted
from patterns.engine.simulation import Simulation

RATE = 20.0  # sagas started per second
DECLINE_RATE = 0.2  # payment declines this share (business)
CRASH_FROM_S, CRASH_UNTIL_S = 20, 25  # the orchestrator is down
DURATION_S, DRAIN_S = 60, 20
STOCK = 100_000  # units in stock: plenty (scarce stock shows dirty reads)
LINK = {"dist": "lognormal", "median": 2.0, "p99": 15.0}
PARTICIPANTS = (
    # (id, label, service time)
    ("orders", "Orders", {"dist": "exponential", "mean": 10.0}),
    ("inventory", "Inventory", {"dist": "exponential", "mean": 10.0}),
    ("payment", "Payment (pivot)", {"dist": "lognormal", "median": 100.0, "p99": 400.0}),
    ("shipping", "Shipping", {"dist": "exponential", "mean": 10.0}),
)
ORCHESTRATOR = "saga"
STEPS = ["orders.create", "inventory.reserve", "payment.authorize", "shipping.schedule",
         "orders.approve"]
PIVOT = "payment.authorize"
SAGA_LOG = "saga_events"
# The choreographed variant: each service's reactions, and which saga step each commit does
# (apply) or undoes (undo) when it is not a refusal.
REACTIONS = {
    "orders": ["start>OrderCreated", "ShipmentScheduled>!",
               "StockReleased>!COMPENSATED", "StockUnavailable>!COMPENSATED"],
    "inventory": ["OrderCreated>StockReserved|StockUnavailable",
                  "PaymentDeclined>StockReleased"],
    "payment": ["StockReserved>PaymentAuthorized|PaymentDeclined"],
    "shipping": ["PaymentAuthorized>ShipmentScheduled"],
}
COMPENSATING = ("PaymentDeclined", "StockReleased", "StockUnavailable")
STEP_OF: dict[tuple[str, str], tuple[str, str]] = {
    ("orders", "start"): ("apply", "orders.create"),
    ("inventory", "OrderCreated"): ("apply", "inventory.reserve"),
    ("payment", "StockReserved"): ("apply", "payment.authorize"),
    ("shipping", "PaymentAuthorized"): ("apply", "shipping.schedule"),
    ("orders", "ShipmentScheduled"): ("apply", "orders.approve"),
    ("inventory", "PaymentDeclined"): ("undo", "inventory.reserve"),
    ("orders", "StockReleased"): ("undo", "orders.create"),
    ("orders", "StockUnavailable"): ("undo", "orders.create"),
}


@register_pattern
class Saga(Pattern):
    SLUG = "saga"
    NAME = "Saga"
    CATEGORY = "orchestration"
    SUMMARY = ("A long business transaction is a sequence of local transactions, each in "
               "its own service's database; when one fails, the ones already committed are "
               "undone by compensating transactions, last first.")
    PROBLEM = ("An order must create a row, reserve stock, take a payment and schedule a "
               "shipment, each in another service's database. No transaction spans them, "
               "and a failure halfway must not leave an order pending for ever with its "
               "stock held.")
    TRADEOFFS = ("Sagas give atomicity in the end (every saga completes or is undone) but "
                 "no isolation: others see a reservation that is later released. Every step "
                 "needs a compensation that always succeeds, every participant must apply a "
                 "re-sent command once, and the coordinator must persist its progress, or a "
                 "crash leaves sagas half done.")
    TEACHING_FAULT = ("Payment declines 20% of authorisations (a business error), and the "
                      "orchestrator crashes from 20 s to 25 s.")
    BASELINE = ("The same steps with no compensations and an in-memory coordinator: "
                "declined orders stay pending holding their stock, and the sagas in flight "
                "at the crash are lost half done.")
    OBSERVATIONS = (
        "Compensations (orange) travel back up the steps: inventory.release, then "
        "orders.reject; the participants say how many sagas are at their step or undoing it.",
        "Reserved units track completed sagas exactly; in the baseline they drift up by "
        "every declined order (leaked units).",
        "After the crash the orchestrator reads its open sagas back and re-sends their "
        "commands; the participants' inboxes ignore the repeats.",
        "The check 'every saga ends completed or compensated' is evaluated on what the "
        "participants committed, not on what the orchestrator believes.",
    )

    def canonical(self) -> dict[str, Any]:
        nodes = [
            node("shop", "client", 80, 255, "Shop", rate_rps=RATE),
            node(ORCHESTRATOR, "saga_orchestrator", 320, 255, "Saga orchestrator"),
        ]
        for i, (pid, label, service) in enumerate(PARTICIPANTS):
            params: dict[str, Any] = {"service_time_ms": service}
            if pid == "inventory":
                params["stock"] = STOCK
            # The participants in step order, top to bottom: compensations climb back up.
            nodes.append(node(pid, "participant", 580, 60 + 130 * i, label, **params))
        edges = [edge("shop", ORCHESTRATOR, latency_ms=LINK)]
        # Commands carry their deadline: a participant drops one its orchestrator gave up on
        # instead of working on it (without that, a slow spell turns retries into a storm).
        edges += [edge(ORCHESTRATOR, pid, latency_ms=LINK, deadline_propagation=True)
                  for pid, _, _ in PARTICIPANTS]
        return {
            "version": 1,
            "title": "Order saga: payment declines 20%, the orchestrator crashes",
            "pattern": self.SLUG,
            "nodes": nodes,
            "edges": edges,
            "scenario": {"duration_s": DURATION_S, "drain_s": DRAIN_S, "seed": 42, "faults": [
                {"at_s": 0, "until_s": DURATION_S, "target": "payment",
                 "action": "error_rate", "value": DECLINE_RATE, "error_class": "business"},
                {"at_s": CRASH_FROM_S, "until_s": CRASH_UNTIL_S, "target": ORCHESTRATOR,
                 "action": "crash"},
            ]},
        }

    def variants(self) -> dict[str, Callable[[], dict[str, Any]]]:
        return {"choreography": choreographed}

    def baseline(self, document: dict[str, Any]) -> dict[str, Any]:
        if any(item["kind"] == "reactor" for item in document["nodes"]):
            document["title"] = "No compensating reactions"
            for item in document["nodes"]:
                if item["kind"] == "reactor":
                    item["params"]["rules"] = [
                        rule for rule in item["params"].get("rules", [])
                        if rule.split(">", 1)[0] not in COMPENSATING]
            return document
        document["title"] = "No compensations, in-memory coordinator"
        for item in document["nodes"]:
            if item["kind"] == "saga_orchestrator":
                item["params"].update(compensate=False, durable=False)
        return document

    def figures(self, sim: Simulation) -> dict[str, Any]:
        return saga_figures(sim)

    def checks(self, sim: Simulation) -> list[dict[str, Any]]:
        truths = saga_truths(sim)
        steps = STEPS if choreographed_run(sim) else \
            [s.action for o in truth.orchestrators(sim) for s in o.steps]
        return verdict_checks([
            ("every saga ends completed or compensated", truth.every_flow_ends(truths, "saga")),
            ("compensations run last step first", truth.compensations_in_reverse(truths, steps)),
            ("each step takes effect once", truth.applied_once(truths)),
            ("reserved units match completed sagas", units_match_completed(sim, truths)),
        ])


def choreographed(seed: int = 42) -> dict[str, Any]:
    """The saga as a choreography of reactors on one event log (the variant)."""
    services = {pid: (label, service) for pid, label, service in PARTICIPANTS}
    reactors = []
    for i, (pid, rules) in enumerate(REACTIONS.items()):
        label, service = services[pid]
        params: dict[str, Any] = {"rules": rules, "service_time_ms": service}
        if pid == "inventory":
            params.update(stock=STOCK, takes="OrderCreated", returns="PaymentDeclined")
        reactors.append((pid, label, 250.0, 60.0 + 120 * i, params))
    nodes, edges = choreography.event_driven(
        SAGA_LOG, "Saga events", 6, reactors, monitor_at=(40, 420),
        complete_on=["ShipmentScheduled", "StockReleased", "StockUnavailable"])
    return {
        "version": 1,
        "title": "Choreographed order saga: payment declines 20%, inventory crashes",
        "pattern": Saga.SLUG,
        "nodes": nodes,
        "edges": edges,
        "scenario": {"duration_s": DURATION_S, "drain_s": DRAIN_S, "seed": seed, "faults": [
            {"at_s": 0, "until_s": DURATION_S, "target": "payment", "action": "error_rate",
             "value": DECLINE_RATE, "error_class": "business"},
            {"at_s": CRASH_FROM_S, "until_s": CRASH_UNTIL_S, "target": "inventory",
             "action": "crash"},
        ]},
    }


def choreographed_run(sim: Simulation) -> bool:
    return bool(choreography.reactors(sim))


def saga_truths(sim: Simulation) -> list[truth.FlowTruth]:
    """Each saga's truth: the participants' commits, or, choreographed, the reactors'
    commits read through STEP_OF (a refusal commits nothing of its step)."""
    if not choreographed_run(sim):
        return truth.flows(sim)
    by_flow: dict[str, truth.FlowTruth] = {}
    for event in sim.records:
        if event["k"] == "flow.start":
            by_flow[event["flow"]] = truth.FlowTruth(event["flow"], event["t"], event["node"])
        elif event["k"] == "tx.commit" and "on" in event and event["flow"] in by_flow \
                and not event.get("refused"):
            step = STEP_OF.get((event["node"], event["on"]))
            if step is not None:
                what, action = step
                saga = by_flow[event["flow"]]
                (saga.apply if what == "apply" else saga.undo)(action, event["t"])
    open_now = {flow for flow in by_flow if flow not in sim.flows.ended} \
        if sim.now < sim.end_ms else set()
    truth.classify(by_flow.values(), STEPS, PIVOT, open_now)
    return list(by_flow.values())


def saga_figures(sim: Simulation) -> dict[str, Any]:
    truths = saga_truths(sim)
    outcomes = truth.counts(truths)
    participants = [n for n in sim.nodes.values() if isinstance(n, (Participant, Reactor))]
    # Units out of stock that no completed saga accounts for (read from the stock itself).
    completed = sum(1 for t in truths if t.outcome == truth.COMPLETED)
    held = sum(max(0, p.p["stock"] - p.stock_free - completed) for p in stock_holders(sim))
    durations = sorted(sim.flows.durations())
    return {
        "sagas_started": len(truths),
        "sagas_completed": outcomes[truth.COMPLETED],
        "sagas_compensated": outcomes[truth.COMPENSATED],
        "sagas_partial": outcomes[truth.PARTIAL],
        "sagas_open": outcomes[truth.OPEN],
        "compensations": sum(len(t.undone) + t.noops for t in truths),
        "noop_compensations": sum(t.noops for t in truths),
        "compensation_retries": sum(
            1 for e in sim.records if e["k"] == "flow.step" and e.get("compensation")
            and e["status"] == "failed"),
        "duplicates_ignored": sum(p.duplicates_ignored for p in participants),
        "leaked_units": held,
        "dirty_rejections": dirty_rejections(sim, truths),
        "commands_resent": sum(o.resent for o in truth.orchestrators(sim)),
        "saga_duration_ms_p99": round(quantile_sorted(durations, 0.99), 3),
    }


def dirty_rejections(sim: Simulation, truths: list[truth.FlowTruth]) -> int:
    """Steps refused for want of stock while a unit of that same participant was held by a
    saga that was later compensated: what a saga's missing isolation costs others (they
    read a value that was never committed for good)."""
    holds: dict[str, list[tuple[float, float]]] = {}
    for t in truths:
        for action, released in t.undone.items():
            holds.setdefault(action.split(".", 1)[0], []).append((t.applied[action], released))
    count = 0
    for event in sim.records:
        if event["k"] == "tx.commit" and event.get("reason") == OUT_OF_STOCK and any(
                held <= event["t"] < released for held, released in holds.get(event["node"], ())):
            count += 1
    return count


def stock_holders(sim: Simulation) -> list[Participant | Reactor]:
    return [n for n in sim.nodes.values()
            if isinstance(n, (Participant, Reactor)) and n.p.get("stock")]


def units_match_completed(sim: Simulation, truths: list[truth.FlowTruth]) -> Verdict:
    """Reserved units equal the sagas that completed with that participant's step: no unit
    leaked by a saga left half done, none taken or given back twice (read from the stock,
    not from the sagas)."""
    for holder in stock_holders(sim):
        reserved = holder.p["stock"] - holder.stock_free
        completed = sum(1 for t in truths if t.outcome == truth.COMPLETED
                        and any(a.split(".", 1)[0] == holder.id for a in t.applied))
        if reserved != completed:
            return Verdict(False, f"{holder.id}: {reserved} units reserved for {completed} "
                                  "completed sagas", {
                "t": sim.now, "nodes": [holder.id],
                "what": f"{holder.id} holds {reserved} units, but {completed} sagas "
                        f"completed ({reserved - completed:+d})"})
    return Verdict(True, "reserved units match completed sagas")
