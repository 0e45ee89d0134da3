"""A writer: a service that records each request as a business row in its own database and
tells the world with an event (an order placed → ``OrderCreated``).

Its edges lead to its ``sql_database`` and, for the dual writes, to a broker. Each request
becomes an aggregate (``o-<n>``) and one event about it, whose id is the aggregate's; with
``aggregate`` ``key`` it changes the aggregate its key names (one more event about it,
``ev-<n>``; the row update takes the row's lock, so an aggregate's changes commit one after
the other). How the event leaves is the ``publish`` policy:

- ``outbox``: the business row and the event's outbox row in one local transaction; no
  broker call in the request path (an ``outbox_relay`` publishes it later).
- ``dual_write_db_first``: commit the row, then hand the event to an in-memory producer
  buffer and answer at once (Kafka's asynchronous ``send``): the event waits there while
  the broker is unreachable and dies with the process.
- ``dual_write_broker_first``: publish the event (and wait for the ack), then commit: a
  failed commit leaves a published event about nothing (a phantom).

The database tells the run's ledger when an event's fact commits, so an event is
``committed`` by the truth of the database, whatever the writer heard. Crash points:
``after_commit`` (the row committed, nothing else done yet) and ``after_publish``
(broker first: published, not yet committed).
"""

from __future__ import annotations

from typing import Any

from patterns.components.publishing import OutboxWriter, ProducerBuffer, message
from patterns.components.service import Job, WorkerPool, pool_params
from patterns.components.sql_database import TXN, SqlDatabase, TxnSpec
from patterns.engine import messages as m
from patterns.engine.distributions import Sampler, parse
from patterns.engine.network import Call, Edge, Invocation
from patterns.engine.node import register_kind
from patterns.params import Param

OUTBOX = "outbox"
DB_FIRST = "dual_write_db_first"
BROKER_FIRST = "dual_write_broker_first"
PUBLISH_POLICIES = (OUTBOX, DB_FIRST, BROKER_FIRST)
TABLE = "orders"
BY_REQUEST, BY_KEY = "request", "key"
NO_BROKER = m.Reply(m.FAILED, error=m.UNAVAILABLE, status=503, reason="no broker edge")


@register_kind
class Writer(WorkerPool):
    KIND = "writer"
    LABEL = "Writer service"
    DESCRIPTION = ("Commits each request as a row in its database and publishes an event "
                   "about it: through an outbox, or by a dual write.")
    PARAMS = (
        *pool_params("request", 8, 5.0, "Work before the transaction."),
        Param("publish", "choice", OUTBOX, choices=PUBLISH_POLICIES,
              help="outbox: event row in the same transaction; dual_write_db_first: commit, "
                   "then an async send from memory; dual_write_broker_first: publish, then "
                   "commit."),
        Param("buffer_capacity", "int", 100_000, min=1, max=10_000_000,
              help="dual_write_db_first: events the producer buffer holds."),
        Param("send_timeout_ms", "float", 1000.0, unit="ms", min=1, max=600_000,
              help="A send to the broker not acked by then failed (and is retried "
                   "from the buffer)."),
        Param("retry_backoff_ms", "float", 100.0, unit="ms", min=0, max=600_000,
              help="dual_write_db_first: wait before a failed send is tried again."),
        Param("aggregate", "choice", BY_REQUEST, choices=(BY_REQUEST, BY_KEY),
              help="request: each request creates an order (one event about it); key: "
                   "the request's key names an aggregate (a customer) that each request "
                   "changes, so an aggregate has a sequence of events."),
        Param("table", "str", TABLE, help="The business table."),
        Param("error_rate", "float", 0.0, min=0, max=1,
              help="Share of requests that fail before the transaction."),
    )
    MAX_OUT_EDGES = 2
    DURABLE = ()
    CRASH_POINTS = ("after_commit", "after_publish")

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self._service_time: Sampler = parse(params["service_time_ms"]).sampler(self.rng)
        self.outbox = OutboxWriter(node_id)
        self.buffer = ProducerBuffer(self, self._broker, capacity=params["buffer_capacity"],
                                     timeout_ms=params["send_timeout_ms"],
                                     backoff_ms=params["retry_backoff_ms"],
                                     on_lost=self._event_lost)
        self.db_edge: Edge | None = None
        self.broker_edge: Edge | None = None
        self.committed = 0
        self.phantoms = 0
        self.lost_in_crash = 0

    def init_state(self) -> None:
        self.queue.clear()
        self.jobs.clear()
        self.busy = 0

    def start(self) -> None:
        for edge in self.out_edges:
            if isinstance(edge.dst, SqlDatabase):
                self.db_edge = edge
            else:
                self.broker_edge = edge

    def _broker(self) -> Edge | None:
        return self.broker_edge

    def _rebuild_samplers(self) -> None:
        self._service_time = parse(self.p["service_time_ms"]).sampler(self.rng)

    def set_param(self, name: str, value: Any) -> None:
        super().set_param(name, value)
        if name == "buffer_capacity":
            self.buffer.capacity = int(value)

    def work_time(self, call: Call) -> float:
        return self._service_time()

    # -- one request ---------------------------------------------------------------------------
    def _worked(self, job: Job) -> None:
        if job.dead:
            return
        failure = self.injected_failure() if self.fault_error_rate else None
        if failure is None and self.error_rate > 0.0 and self.rng.random() < self.error_rate:
            failure = m.TRANSIENT_ERROR
        if failure is not None or self.db_edge is None:
            self._finish(job, failure or m.Reply(m.FAILED, error=m.UNAVAILABLE, status=503,
                                                 reason="no database edge"))
            return
        req = job.call.req
        if self.p["aggregate"] == BY_KEY and req.key is not None:
            # An existing aggregate (a customer) changes: one more event about it.
            event = (f"ev-{req.id}", req.key)
        else:
            event = (f"o-{req.id}", f"o-{req.id}")  # a new order: the event is its own
        if self.p["publish"] == BROKER_FIRST:
            self._publish_first(job, event)
        else:
            self._transact(job, event)

    def _transact(self, job: Job, event: tuple[str, str]) -> None:
        assert self.db_edge is not None
        msg_id, aggregate = event
        now = self.kernel.now
        spec = TxnSpec(aggregate=aggregate)
        if msg_id == aggregate:
            spec.insert(self.p["table"], aggregate, {"id": aggregate, "t": now})
            event_type = "OrderCreated"
        else:
            spec.add(self.p["table"], aggregate, "version", 1)
            event_type = "OrderChanged"
        if self.p["publish"] == OUTBOX:
            self.outbox.add(spec, msg_id, aggregate, event_type, now)
        else:
            self.outbox.tag(spec, msg_id)
        req = m.Request(self.sim.ledger.next_request_id(), now, key=aggregate, op=TXN,
                        client=self.id, size=512, headers={"txn": spec})
        self.net.call(self.db_edge, req, self._on_commit, (job, event))

    def _on_commit(self, handle: Call | Invocation, reply: m.Reply) -> None:
        job, (msg_id, aggregate) = handle.ctx
        if job.dead:
            return
        if not reply.ok:
            if self.p["publish"] == BROKER_FIRST:
                self.sim.ledger.roll_back(msg_id)
                self.phantoms += 1
                self.note(f"{msg_id} published, commit rolled back: phantom event")
            self._finish(job, _failed(reply))
            return
        self.committed += 1
        if self.crash_point("after_commit"):
            if self.p["publish"] == DB_FIRST:
                self.note(f"{msg_id} committed, publish failed: event lost")
            return
        if self.p["publish"] == DB_FIRST and not self.buffer.append(msg_id, aggregate):
            self.note(f"{msg_id} committed, producer buffer full: event lost")
        self._finish(job, m.OK)

    def _publish_first(self, job: Job, event: tuple[str, str]) -> None:
        if self.broker_edge is None:
            self._finish(job, NO_BROKER)
            return
        msg_id, aggregate = event
        ledger = self.sim.ledger
        ledger.produce(msg_id, self.id, committed=None)
        ledger.sent(msg_id)
        self.net.call(self.broker_edge, message(self, msg_id, aggregate),
                      self._on_published, (job, event),
                      timeout_ms=self.p["send_timeout_ms"])

    def _on_published(self, handle: Call | Invocation, reply: m.Reply) -> None:
        job, event = handle.ctx
        if job.dead:
            return
        if not reply.ok:
            self.sim.ledger.roll_back(event[0])
            self._finish(job, _failed(reply))
            return
        self.sim.ledger.published(event[0])
        if self.crash_point("after_publish"):
            return
        self._transact(job, event)

    def _event_lost(self, msg_id: str, aggregate: str) -> None:
        self.lost_in_crash += 1

    # -- life ----------------------------------------------------------------------------------
    def on_crash(self) -> None:
        buffered = len(self.buffer.events)
        self.buffer.crash()
        super().on_crash()
        if buffered:
            self.note(f"{buffered} committed events in the producer buffer died with "
                      f"{self.id}: lost")

    def sample(self, window_ms: float) -> dict[str, Any]:
        fields = super().sample(window_ms)
        if self.p["publish"] == DB_FIRST:
            fields["buffered"] = len(self.buffer.events)
            fields["lost"] = self.lost_in_crash
        return fields

    def stats(self, duration_ms: float) -> dict[str, Any]:
        out = super().stats(duration_ms)
        out.update({"committed": self.committed, "buffered_max": self.buffer.max_size,
                    "lost_in_crash": self.lost_in_crash})
        return out


def _failed(reply: m.Reply) -> m.Reply:
    if reply.ok:
        return reply
    return m.Reply(m.FAILED, error=reply.error or m.TRANSIENT, status=502,
                   reason=f"dependency {reply.reason or reply.outcome}")
