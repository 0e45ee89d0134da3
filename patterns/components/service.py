"""Services and databases: a pool of workers in front of a FIFO queue.

A call that finds a free worker starts at once; otherwise it waits in the queue, and a call
that finds the queue full is rejected (503), never silently dropped. A worker draws a work
time, then (for a service with downstream edges) calls each of them synchronously while
holding the worker, sequentially or in parallel, and answers. A failure downstream fails
the call (502).

Without deadline propagation on the incoming edge a service never learns that its caller
gave up: it does the work anyway, and the worker time spent on calls nobody waits for any
more is counted as ``wasted_ms``. With propagation the service skips such work: a call
whose caller gave up (or whose request deadline passed) is dropped when it reaches a worker,
a job stops before calling downstream, and a job in progress is stopped the moment its
caller gives up, cancelling its own downstream calls in turn (``expired_skipped`` counts
them; the work already done on them is still wasted).
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import Any

from patterns.engine import messages as m
from patterns.engine.distributions import Sampler, parse
from patterns.engine.kernel import Entry, Kernel
from patterns.engine.network import Call, Invocation
from patterns.engine.node import Node, register_kind
from patterns.engine.ordered import OrderedSet
from patterns.params import Param

FANOUTS = ("sequential", "parallel")


class Job:
    """One call being worked on by one worker."""

    __slots__ = ("call", "dead", "failure", "handles", "next_edge", "started", "timer",
                 "waiting")

    def __init__(self, call: Call, started: float) -> None:
        self.call = call
        self.started = started
        self.next_edge = 0
        self.waiting = 0
        self.failure: m.Reply | None = None
        self.dead = False
        self.timer: Entry | None = None
        # Downstream calls in progress, kept only when the job can be stopped (propagation).
        self.handles: list[Call | Invocation] | None = None


class WorkerPool(Node):
    """The shared machinery of services and databases; kinds differ in their parameters."""

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.workers: int = self._workers()
        self.queue_capacity: int = params["queue_capacity"]
        self.queue: deque[Call] = deque()
        self.busy = 0
        self.jobs: OrderedSet[Job] = OrderedSet()
        self.error_rate: float = params.get("error_rate", 0.0)
        # Counters for the summary, and their values at the last sample.
        self.arrivals = 0
        self.completed = 0
        self.errors = 0
        self.rejected = 0
        self.expired_skipped = 0
        self.wasted_ms = 0.0
        self.max_queue = 0
        self.max_busy = 0
        self._busy_area = 0.0
        self._last_change = 0.0
        self._last_sample: tuple[int, int, int, int, float] = (0, 0, 0, 0, 0.0)

    # Hooks the kinds fill in.
    def _workers(self) -> int:
        return int(self.p["workers"])

    def work_time(self, call: Call) -> float:
        raise NotImplementedError

    def set_param(self, name: str, value: Any) -> None:
        self.p[name] = value
        if name in ("workers", "pool_size"):
            self.workers = int(value)
            self._drain_queue()
        elif name == "queue_capacity":
            self.queue_capacity = int(value)
        elif name == "error_rate":
            self.error_rate = float(value)
        else:
            self._rebuild_samplers()

    def _rebuild_samplers(self) -> None:
        """Called when a distribution parameter is changed mid-run."""

    # -- serving -------------------------------------------------------------------------------
    def _account(self) -> None:
        now = self.kernel.now
        self._busy_area += self.busy * (now - self._last_change)
        self._last_change = now

    def receive(self, call: Call) -> None:
        if self.down or self.hung:
            self.refuse_if_unavailable(call)
            return
        if call.req.op == "health":
            call.reply(m.OK)
            return
        self.arrivals += 1
        if self.busy < self.workers:
            self._start(call)
        elif len(self.queue) < self.queue_capacity:
            self.queue.append(call)
            if len(self.queue) > self.max_queue:
                self.max_queue = len(self.queue)
        else:
            self.rejected += 1
            call.reply(m.QUEUE_FULL)

    def _start(self, call: Call) -> None:
        if call.edge.deadline_propagation and call.expired:
            self.expired_skipped += 1
            call.reply(m.DEADLINE_EXCEEDED)
            return
        self._account()
        self.busy += 1
        if self.busy > self.max_busy:
            self.max_busy = self.busy
        job = Job(call, self.kernel.now)
        self.jobs.add(job)
        if call.edge.deadline_propagation:
            job.handles = []
            call.on_abandon = partial(self._abandoned, job)
        job.timer = self.kernel.schedule(self.work_time(call) * self.slow, self._worked, job)

    def _abandoned(self, job: Job, call: Call) -> None:
        """The caller gave up on a job in progress (deadline propagation): stop it."""
        if job.dead:
            return
        job.dead = True
        self.jobs.discard(job)
        Kernel.cancel(job.timer)
        for handle in job.handles or ():
            handle.cancel()
        self.expired_skipped += 1
        self.wasted_ms += self.kernel.now - job.started
        self._account()
        self.busy -= 1
        # No answer: the caller is gone (its stream reset), so the worker just moves on.
        self._drain_queue()

    def _worked(self, job: Job) -> None:
        if job.dead:
            return
        failure = self.injected_failure() if self.fault_error_rate else None
        if failure is None and self.error_rate > 0.0 and self.rng.random() < self.error_rate:
            failure = m.TRANSIENT_ERROR
        if failure is not None or not self.out_edges:
            self._finish(job, failure or m.OK)
        elif self._skip_expired(job):
            return
        elif self.p.get("fanout", "sequential") == "parallel":
            job.waiting = len(self.out_edges)
            for edge in self.out_edges:
                handle = self.net.invoke(edge, job.call.req, self._parallel_reply, job)
                if job.handles is not None:
                    job.handles.append(handle)
        else:
            self._call_next(job)

    def _skip_expired(self, job: Job) -> bool:
        """With propagation, end a job whose request expired instead of calling downstream."""
        call = job.call
        if call.edge.deadline_propagation and call.expired:
            self.expired_skipped += 1
            self._finish(job, m.DEADLINE_EXCEEDED)
            return True
        return False

    def _call_next(self, job: Job) -> None:
        if job.next_edge > 0 and self._skip_expired(job):
            return
        edge = self.out_edges[job.next_edge]
        job.next_edge += 1
        handle = self.net.invoke(edge, job.call.req, self._sequential_reply, job)
        if job.handles is not None:
            job.handles.append(handle)

    def _sequential_reply(self, handle: Call | Invocation, reply: m.Reply) -> None:
        job: Job = handle.ctx
        if job.dead:
            return
        if not reply.ok:
            self._finish(job, _dependency_failure(reply))
        elif job.next_edge < len(self.out_edges):
            self._call_next(job)
        else:
            self._finish(job, m.OK)

    def _parallel_reply(self, handle: Call | Invocation, reply: m.Reply) -> None:
        job: Job = handle.ctx
        if job.dead:
            return
        if not reply.ok and job.failure is None:
            job.failure = _dependency_failure(reply)
        job.waiting -= 1
        if job.waiting == 0:
            self._finish(job, job.failure or m.OK)

    def _finish(self, job: Job, reply: m.Reply) -> None:
        self.jobs.discard(job)
        call = job.call
        call.on_abandon = None
        if call.abandoned:
            self.wasted_ms += self.kernel.now - job.started
        self.completed += 1
        if not reply.ok:
            self.errors += 1
        self._account()
        self.busy -= 1
        self._drain_queue()
        call.reply(reply)

    def _drain_queue(self) -> None:
        queue = self.queue
        while queue and self.busy < self.workers:
            self._start(queue.popleft())

    # -- life ----------------------------------------------------------------------------------
    def on_crash(self) -> None:
        """Queued and in-progress calls die with the process: their callers see a reset."""
        calls = list(self.queue) + [job.call for job in self.jobs]
        for job in self.jobs:
            job.dead = True
        self.jobs.clear()
        self.queue.clear()
        self._account()
        self.busy = 0
        for call in calls:
            call.reply(m.CONNECTION_RESET)

    # -- reporting -----------------------------------------------------------------------------
    def busy_area(self) -> float:
        return self._busy_area + self.busy * (self.kernel.now - self._last_change)

    def sample(self, window_ms: float) -> dict[str, Any]:
        area = self.busy_area()
        arr, done, err, rej, last_area = self._last_sample
        self._last_sample = (self.arrivals, self.completed, self.errors, self.rejected, area)
        return {
            "q": len(self.queue), "busy": self.busy,
            "util": round((area - last_area) / (window_ms * self.workers), 4),
            "arr": self.arrivals - arr, "done": self.completed - done,
            "err": self.errors - err, "rej": self.rejected - rej,
        }

    def stats(self, duration_ms: float) -> dict[str, Any]:
        util = self.busy_area() / (duration_ms * self.workers) if duration_ms else 0.0
        return {"processed": self.completed, "utilisation": round(util, 4),
                "max_queue": self.max_queue, "max_busy": self.max_busy,
                "errors": self.errors, "rejected": self.rejected,
                "wasted_ms": round(self.wasted_ms, 3), "expired_skipped": self.expired_skipped}


def _dependency_failure(reply: m.Reply) -> m.Reply:
    if reply.outcome == m.FAILED and reply.error == m.BUSINESS:
        return reply
    return m.Reply(m.FAILED, error=reply.error or m.TRANSIENT, status=502,
                   reason=f"dependency {reply.outcome}")


def pool_params(what: str, workers: int, mean_ms: float, work: str) -> tuple[Param, ...]:
    """The declarations every worker-pool kind shares: its workers, the queue in front of
    them, and the work time of one ``what`` (a call, a command, a message)."""
    return (
        Param("workers", "int", workers, min=1, max=10_000,
              help=f"{what.capitalize()}s served at once."),
        Param("queue_capacity", "int", 1000, min=0, max=10_000_000,
              help=f"{what.capitalize()}s that may wait for a worker; more are rejected "
                   "with 503."),
        Param("service_time_ms", "dist", {"dist": "exponential", "mean": mean_ms},
              unit="ms", max=3_600_000, help=work),
    )


@register_kind
class Service(WorkerPool):
    KIND = "service"
    LABEL = "Service"
    DESCRIPTION = "Workers serving calls from a FIFO queue; may call downstream services."
    PARAMS = (
        *pool_params("call", 4, 20.0, "Work time of one call on one worker."),
        Param("error_rate", "float", 0.0, min=0, max=1,
              help="Share of calls that fail with a transient error."),
        Param("fanout", "choice", "sequential", choices=FANOUTS,
              help="How downstream edges are called: one after another, or all at once."),
    )

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self._service_time: Sampler = parse(params["service_time_ms"]).sampler(self.rng)

    def _rebuild_samplers(self) -> None:
        self._service_time = parse(self.p["service_time_ms"]).sampler(self.rng)

    def work_time(self, call: Call) -> float:
        return self._service_time()


@register_kind
class Database(WorkerPool):
    KIND = "database"
    LABEL = "Database"
    DESCRIPTION = "A connection pool in front of reads and writes with their own times."
    PARAMS = (
        Param("pool_size", "int", 10, min=1, max=10_000, help="Connections (HikariCP: 10)."),
        Param("queue_capacity", "int", 1000, min=0, max=10_000_000,
              help="Calls that may wait for a connection; more are rejected."),
        Param("read_time_ms", "dist", {"dist": "lognormal", "median": 2.0, "p99": 10.0},
              unit="ms", max=3_600_000),
        Param("write_time_ms", "dist", {"dist": "lognormal", "median": 5.0, "p99": 25.0},
              unit="ms", max=3_600_000),
        Param("error_rate", "float", 0.0, min=0, max=1),
    )
    MAX_OUT_EDGES = 0

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self._rebuild_samplers()

    def _workers(self) -> int:
        return int(self.p["pool_size"])

    def _rebuild_samplers(self) -> None:
        self._read: Sampler = parse(self.p["read_time_ms"]).sampler(self.rng)
        self._write: Sampler = parse(self.p["write_time_ms"]).sampler(self.rng)

    def work_time(self, call: Call) -> float:
        return self._write() if call.req.op == "write" else self._read()
