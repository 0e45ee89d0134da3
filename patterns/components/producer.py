"""A producer: sends messages, each with an id of its own, to a queue or a topic.

Messages arrive at ``rate_rps`` (Poisson). Each carries the producer's ``msg_id``
(``<prefix>-<n>``) and an ``amount`` in its headers; the broker gives every copy its own id
(the request's), as SQS gives each send a new MessageId. With ``duplicate_rate`` a share of
the messages is sent a second time ``resend_after_ms`` later under the same ``msg_id`` (the
producer did not hear the first ack and sends again), so the copies are duplicates to the
consumer, never to the broker. Every send is a request whose reply is the broker's ack.
"""

from __future__ import annotations

from typing import Any

from patterns.engine import messages as m
from patterns.engine.ledger import REJECTED
from patterns.engine.network import Call, Invocation
from patterns.engine.node import Node, register_kind
from patterns.params import Param


@register_kind
class Producer(Node):
    KIND = "producer"
    LABEL = "Producer"
    DESCRIPTION = ("Sends messages with ids of its own; a share of them twice (a re-send "
                   "after a lost ack).")
    PARAMS = (
        Param("rate_rps", "float", 100.0, unit="msg/s", min=0, max=100_000,
              help="Mean rate of new messages (Poisson)."),
        Param("duplicate_rate", "float", 0.0, min=0, max=1,
              help="Share of messages sent again under the same msg_id."),
        Param("resend_after_ms", "float", 1000.0, unit="ms", min=0, max=86_400_000,
              help="When the second copy of a duplicated message is sent."),
        Param("amount", "float", 1.0, min=0, max=1_000_000, help="Each message's amount."),
        Param("msg_prefix", "str", "m", help="msg_id is <prefix>-<n>."),
        Param("keys", "int", 100, min=1, max=1_000_000,
              help="Distinct keys (accounts) messages are about."),
        Param("payload_bytes", "int", 512, unit="B", min=0, max=100_000_000),
    )
    MAX_OUT_EDGES = 1

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.count = 0
        self.sent = 0
        self.resent = 0
        self.acked = 0
        self.in_flight = 0

    def start(self) -> None:
        if self.out_edges and self.p["rate_rps"] > 0:
            self.kernel.schedule(self._gap(), self._arrive)

    def _gap(self) -> float:
        return float(self.rng.expovariate(self.p["rate_rps"] / 1000.0))

    def _arrive(self, _: Any) -> None:
        if self.kernel.now >= self.sim.duration_ms or self.p["rate_rps"] <= 0:
            return
        self.kernel.schedule(self._gap(), self._arrive)
        if self.down:
            return
        self.count += 1
        msg_id = f"{self.p['msg_prefix']}-{self.count}"
        key = f"a{int(self.rng.random() * self.p['keys'])}"
        self.sim.ledger.produce(msg_id, self.id)
        self._send(msg_id, key)
        if self.p["duplicate_rate"] > 0 and self.rng.random() < self.p["duplicate_rate"]:
            self.kernel.schedule(self.p["resend_after_ms"], self._resend, (msg_id, key))

    def _resend(self, what: tuple[str, str]) -> None:
        if self.down:
            return
        self.resent += 1
        self._send(*what)

    def _send(self, msg_id: str, key: str) -> None:
        req = self.sim.new_request(self.id, key, "publish", None, self.p["payload_bytes"])
        req.headers = {"msg_id": msg_id, "amount": self.p["amount"], "aggregate": key}
        self.sent += 1
        self.in_flight += 1
        self.sim.ledger.sent(msg_id)
        self.net.invoke(self.out_edges[0], req, self._on_reply, msg_id)

    def _on_reply(self, handle: Call | Invocation, reply: m.Reply) -> None:
        self.in_flight -= 1
        if reply.ok:
            self.acked += 1
            self.sim.ledger.published(handle.ctx)
        else:
            self.sim.ledger.settle(handle.ctx, REJECTED)
        self.sim.request_done(handle.req, reply)

    def sample(self, window_ms: float) -> dict[str, Any]:
        return {"inflight": self.in_flight}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.sent, "utilisation": 0.0, "max_queue": 0,
                "messages": self.count, "sent": self.sent, "resent": self.resent,
                "acked": self.acked}
