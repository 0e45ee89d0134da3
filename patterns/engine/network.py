"""Edges, and synchronous calls over them.

An :class:`Edge` joins two nodes: a request travels from ``src`` to ``dst`` and its reply
travels back over the same edge, each leg drawing its own latency. An edge may lose
messages (``drop_rate``) or be cut by a partition; either way the message is gone and a
caller without a timeout waits forever (which the summary counts as ``in_flight``).
A partition may cut one leg only (requests or replies: one way) and may hold what it cuts
rather than drop it: held messages travel once the partition heals, in sending order.

:meth:`Network.invoke` is what a caller uses: one logical call, with the edge's
policies applied (a per-attempt ``timeout_ms`` and a ``retry`` policy). The callee sees
each attempt as a :class:`Call` and answers it with :meth:`Call.reply` exactly once.

A caller that gives up on a call (its timeout, or a cancel) stops waiting at once; a reply
that still comes is counted late and ignored. Without deadline propagation the callee does
not know and keeps working (wasted work); with it, the callee may register
``Call.on_abandon`` and is told the moment the caller gives up, as a callee that holds the
caller's deadline (gRPC) would be.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from patterns.engine import messages as m
from patterns.engine.distributions import Distribution, Sampler
from patterns.engine.kernel import Entry, Kernel
from patterns.engine.policies import RetryPolicy

if TYPE_CHECKING:
    from patterns.engine.node import Node
    from patterns.engine.trace import Trace

# ``on_reply(handle, reply)``: the handle is the Call or Invocation that ended; its ``ctx``
# is whatever the caller attached, so callers need no closure per call.
OnReply = Callable[[Any, m.Reply], None]


class Edge:
    __slots__ = (
        "answered",
        "cut",
        "cut_reply",
        "deadline_propagation",
        "drop_rate",
        "dropped",
        "dst",
        "fault_layers",
        "held",
        "holds",
        "id",
        "late_replies",
        "latency",
        "latency_dist",
        "max_wait",
        "params",
        "retry",
        "rng",
        "sent",
        "src",
        "timeout_ms",
        "timeouts",
        "weight",
    )

    def __init__(self, edge_id: str, src: Node, dst: Node, params: dict[str, Any],
                 latency_dist: Distribution, rng: random.Random,
                 retry: RetryPolicy | None) -> None:
        self.id = edge_id
        self.src = src
        self.dst = dst
        self.params = params
        self.latency_dist = latency_dist
        self.rng = rng
        self.latency: Sampler = latency_dist.sampler(rng)
        self.drop_rate: float = params["drop_rate"]
        # How many partitions cut the request leg and the reply leg now (truthy = cut), how
        # many of them hold rather than drop, and what they hold.
        self.cut = 0
        self.cut_reply = 0
        self.holds = 0
        self.held: list[tuple[Call, m.Reply | None]] = []
        self.weight: float = params["weight"]
        self.timeout_ms: float | None = params["timeout_ms"]
        self.retry = retry
        self.deadline_propagation: bool = params["deadline_propagation"]
        self.sent = 0
        self.dropped = 0
        # Faults in force per action, so overlapping ones revert correctly (engine.faults).
        self.fault_layers: dict[str, tuple[Any, list[list[Any]]]] = {}
        self.timeouts = 0
        self.late_replies = 0
        # Replies the caller received in time, and the longest any caller waited on one
        # attempt (answered or timed out): a timeout bounds it.
        self.answered = 0
        self.max_wait = 0.0

    def _lost(self, reply: bool = False) -> bool:
        if self.cut_reply if reply else self.cut:
            return True
        return self.drop_rate > 0.0 and self.rng.random() < self.drop_rate

    def add_cut(self, request: bool, reply: bool, hold: bool) -> None:
        """A partition cuts this edge's request leg, reply leg, or both."""
        self.cut += request
        self.cut_reply += reply
        self.holds += hold

    def remove_cut(self, request: bool, reply: bool, hold: bool,
                   net: Network) -> None:
        """A partition healed; once neither leg is cut, held messages travel in order."""
        self.cut -= request
        self.cut_reply -= reply
        self.holds -= hold
        if self.held and not (self.cut or self.cut_reply):
            held, self.held = self.held, []
            for call, answer in held:
                if answer is None:
                    net._transmit(call)
                else:
                    net._send_reply(call, answer)


class Call:
    """One attempt of a call, as the callee sees it."""

    __slots__ = (
        "abandoned",
        "attempt",
        "ctx",
        "done",
        "edge",
        "mid",
        "net",
        "on_abandon",
        "on_late_reply",
        "on_reply",
        "req",
        "result",
        "sent_at",
        "timer",
    )

    def __init__(self, net: Network, edge: Edge, req: m.Request, on_reply: OnReply,
                 ctx: Any, mid: int, attempt: int) -> None:
        self.net = net
        self.edge = edge
        self.req = req
        self.on_reply = on_reply
        self.ctx = ctx
        self.mid = mid
        self.attempt = attempt
        self.sent_at = net.kernel.now
        self.timer: Entry | None = None
        self.done = False
        # True once the caller stopped waiting (timeout or cancel): work on it is wasted.
        self.abandoned = False
        self.result: m.Reply | None = None
        # Set by a callee that wants to stop work the caller gave up on; called only when
        # the edge propagates deadlines.
        self.on_abandon: Callable[[Call], None] | None = None
        # Set by a caller that still wants to hear a reply after it stopped waiting (a
        # broker learns from a late ack that a message was processed twice).
        self.on_late_reply: OnReply | None = None

    def reply(self, reply: m.Reply) -> None:
        """Answer this call: the reply travels back to the caller over the same edge."""
        self.net._send_reply(self, reply)

    def cancel(self) -> None:
        """The caller gives up: a reply that still comes is ignored, the work is wasted."""
        if not self.done:
            self.done = True
            self.abandoned = True
            Kernel.cancel(self.timer)
            self._tell_callee()

    def _tell_callee(self) -> None:
        if self.on_abandon is not None and self.edge.deadline_propagation:
            on_abandon, self.on_abandon = self.on_abandon, None
            on_abandon(self)

    @property
    def expired(self) -> bool:
        """The caller has given up, and the callee can know it (deadline propagation)."""
        if not self.edge.deadline_propagation:
            return False
        deadline = self.req.deadline
        return self.abandoned or (deadline is not None and self.net.kernel.now >= deadline)


class Invocation:
    """One logical call over an edge: attempts, backoff waits, and the final reply."""

    __slots__ = (
        "attempts",
        "ctx",
        "current",
        "edge",
        "finished",
        "last_wait",
        "net",
        "on_reply",
        "pending",
        "req",
    )

    def __init__(self, net: Network, edge: Edge, req: m.Request, on_reply: OnReply,
                 ctx: Any) -> None:
        self.net = net
        self.edge = edge
        self.req = req
        self.on_reply = on_reply
        self.ctx = ctx
        self.attempts = 0
        self.last_wait = 0.0
        self.current: Call | None = None
        self.pending: Entry | None = None
        self.finished = False

    def start(self, _: Any = None) -> None:
        self.pending = None
        self.attempts += 1
        self.current = self.net.call(self.edge, self.req, self._on_reply, None, self.attempts)

    def _on_reply(self, _call: Call, reply: m.Reply) -> None:
        if self.finished:
            return
        policy = self.edge.retry
        if policy is not None and not reply.ok and self.attempts < policy.max_attempts \
                and policy.wants_retry(reply):
            wait = policy.backoff(self.attempts, self.last_wait)
            deadline = self.req.deadline
            net = self.net
            # A retry that could not start before the request's deadline is not made, and
            # so takes no budget token and is not counted.
            if (deadline is None or net.kernel.now + wait < deadline) \
                    and policy.may_retry(self.attempts):
                self.last_wait = wait
                if net.trace.full:
                    net.trace.emit({"t": net.kernel.now, "k": "req.retry", "req": self.req.id,
                                    "e": self.edge.id, "attempt": self.attempts + 1,
                                    "wait": round(wait, 3)})
                self.pending = net.kernel.schedule(wait, self.start)
                return
        self.finished = True
        if policy is not None:
            policy.on_finished(self.attempts)
        self.on_reply(self, reply)

    def cancel(self) -> None:
        """The caller gave up: no more attempts, and the current one is abandoned."""
        if not self.finished and self.edge.retry is not None:
            self.edge.retry.on_finished(self.attempts)
        self.finished = True
        Kernel.cancel(self.pending)
        if self.current is not None:
            self.current.cancel()


class Network:
    """Carries calls and replies over edges, and counts message ids."""

    def __init__(self, kernel: Kernel, trace: Trace) -> None:
        self.kernel = kernel
        self.trace = trace
        self.edges: dict[str, Edge] = {}
        self._mid = 0

    def invoke(self, edge: Edge, req: m.Request, on_reply: OnReply,
               ctx: Any = None) -> Call | Invocation:
        """Call ``edge.dst`` with ``req`` applying the edge's policies.

        ``on_reply(handle, reply)`` is called once, unless the caller cancels the handle
        first (or nothing ever answers and there is no timeout).
        """
        if edge.retry is None:
            return self.call(edge, req, on_reply, ctx)
        inv = Invocation(self, edge, req, on_reply, ctx)
        edge.retry.on_first_attempt()
        inv.start()
        return inv

    def call(self, edge: Edge, req: m.Request, on_reply: OnReply, ctx: Any = None,
             attempt: int = 1, timeout_ms: float | None = None) -> Call:
        """One attempt, with a timeout (the edge's unless given) but no retry."""
        self._mid += 1
        call = Call(self, edge, req, on_reply, ctx, self._mid, attempt)
        edge.sent += 1
        timeout = timeout_ms if timeout_ms is not None else edge.timeout_ms
        if timeout is not None:
            call.timer = self.kernel.schedule(timeout, self._on_timeout, call)
        trace = self.trace
        if (edge.cut or edge.drop_rate) and edge._lost():
            if edge.cut and edge.holds:
                edge.held.append((call, None))
                return call
            edge.dropped += 1
            if trace.full:
                trace.emit({"t": self.kernel.now, "k": "msg.drop", "id": call.mid,
                            "e": edge.id, "dir": "req", "req": req.id})
            return call
        delay = edge.latency()
        if trace.full:
            event = {"t": self.kernel.now, "k": "msg.send", "id": call.mid, "e": edge.id,
                     "dir": "req", "req": req.id, "d": round(delay, 3), "size": req.size,
                     "attempt": attempt}
            if req.flow is not None:
                # A flow's messages say which flow and what they ask (the canvas tells a
                # compensation from a forward step by it).
                event["flow"] = req.flow
                event["op"] = req.op
                if req.headers and req.headers.get("role") == "undo":
                    event["undo"] = True
            if req.headers and "msg_id" in req.headers:
                # A message's producer-assigned id, the same on every copy and re-send.
                event["msg_id"] = req.headers["msg_id"]
            trace.emit(event)
        if delay > 0.0:
            self.kernel.schedule(delay, self._arrive, call)
        else:
            self._arrive(call)
        return call

    def _transmit(self, call: Call) -> None:
        """Send a held request once its partition healed (no new attempt, no new timer)."""
        delay = call.edge.latency()
        if self.trace.full:
            self.trace.emit({"t": self.kernel.now, "k": "msg.send", "id": call.mid,
                             "e": call.edge.id, "dir": "req", "req": call.req.id,
                             "d": round(delay, 3), "size": call.req.size,
                             "attempt": call.attempt, "held": True})
        self.kernel.schedule(delay, self._arrive, call)

    def _arrive(self, call: Call) -> None:
        if self.trace.full:
            self.trace.emit({"t": self.kernel.now, "k": "msg.recv", "id": call.mid,
                             "e": call.edge.id, "dir": "req"})
        call.edge.dst.receive(call)

    def _send_reply(self, call: Call, reply: m.Reply) -> None:
        edge = call.edge
        if (edge.cut_reply or edge.drop_rate) and edge._lost(True):
            if edge.cut_reply and edge.holds:
                edge.held.append((call, reply))
                return
            edge.dropped += 1
            if self.trace.full:
                self.trace.emit({"t": self.kernel.now, "k": "msg.drop", "id": call.mid,
                                 "e": edge.id, "dir": "rep", "req": call.req.id})
            return
        delay = edge.latency()
        if self.trace.full:
            self.trace.emit({"t": self.kernel.now, "k": "msg.send", "id": call.mid,
                             "e": edge.id, "dir": "rep", "req": call.req.id,
                             "d": round(delay, 3), "ok": reply.ok})
        call.result = reply
        if delay > 0.0:
            self.kernel.schedule(delay, self._return, call)
        else:
            self._return(call)

    def _return(self, call: Call) -> None:
        if call.done:
            call.edge.late_replies += 1
            if call.on_late_reply is not None:
                call.on_late_reply(call, call.result or m.OK)
            return
        call.done = True
        Kernel.cancel(call.timer)
        edge = call.edge
        edge.answered += 1
        self._record_wait(call)
        if self.trace.full:
            self.trace.emit({"t": self.kernel.now, "k": "msg.recv", "id": call.mid,
                             "e": call.edge.id, "dir": "rep"})
        call.on_reply(call, call.result or m.OK)

    def _record_wait(self, call: Call) -> float:
        """How long the caller waited for this call; the edge keeps the longest."""
        wait = self.kernel.now - call.sent_at
        if wait > call.edge.max_wait:
            call.edge.max_wait = wait
        return wait

    def _on_timeout(self, call: Call) -> None:
        if call.done:
            return
        call.done = True
        call.abandoned = True
        edge = call.edge
        edge.timeouts += 1
        wait = self._record_wait(call)
        if self.trace.full:
            self.trace.emit({"t": self.kernel.now, "k": "msg.timeout", "id": call.mid,
                             "e": edge.id, "req": call.req.id, "attempt": call.attempt,
                             "wait": round(wait, 3)})
        call._tell_callee()
        call.on_reply(call, m.TIMEOUT)
