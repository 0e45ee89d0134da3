"""A lease-based lock service with fencing tokens, the workers that use it, and a fenced store.

``lock_service`` grants a lease on a named lock (``req.key``) for ``lease_ttl_s``, measured
on its own clock (a fast clock expires leases early), with a fencing token that rises with
every grant (etcd revision, ZooKeeper zxid, Chubby sequencer). ``acquire`` is rejected (409)
while someone holds the lock, or for ``lock_delay_s`` after a lease *expired* (Consul's lock
delay); ``renew`` (a keepalive) and ``release`` need the holder's token and fail (410) once
the lease is gone. The token counter is durable; the leases are in memory, so a crash of
the service forgets them (every holder silently loses its lock: only fencing notices).
Recorded for the checks: ``lock.grant`` (node: the service, worker, token, expires_at in
sim ms), ``lock.renew``, ``lock.expire``, ``lock.release``. Its metric sample names the
current holder and token of its first lock (the canvas badge) and the last token issued.

``lock_worker`` loops: acquire (retrying every ``acquire_retry_ms``) → read the counter with
its token → work ``work_ms`` → write counter + 1 with its token → release → think
``think_ms``. It renews its lease every ``keepalive_every`` × TTL and abandons the section
when a renewal says the lease is gone. With ``check_lease_before_write`` it also checks,
just before writing, that its lease has not run out by its own clock (a check that cannot
see a pause or a network delay that falls after it). ``use_lock`` false is the no-lock
baseline: concurrent read-modify-writes. Workers contending for a lock form a cluster named
after it, and the one holding it answers the role selector ``holder:<lock>`` (rank: its
token). States: IDLE → WAITING → HOLDING(token) → IDLE.

``fenced_store`` is a :class:`~patterns.components.kv_store.KvStore` with fencing on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from patterns.components.kv_store import KvStore, store_params
from patterns.engine import messages as m
from patterns.engine.cluster import CLUSTER_PARAMS
from patterns.engine.node import Node, register_kind
from patterns.params import Param, ParamError

if TYPE_CHECKING:
    from patterns.engine.clock import LocalTimer
    from patterns.engine.network import Call, Edge

HOLDER = "holder"
IDLE, WAITING, HOLDING = "IDLE", "WAITING", "HOLDING"
COUNTER = "counter"


class Lease:
    __slots__ = ("holder", "timer", "token")

    def __init__(self, holder: str, token: int, timer: LocalTimer) -> None:
        self.holder = holder
        self.token = token
        self.timer = timer


@register_kind
class LockService(Node):
    KIND = "lock_service"
    LABEL = "Lock service"
    DESCRIPTION = "Grants leases on named locks, each with a fencing token that only rises."
    PARAMS = (
        Param("lease_ttl_s", "float", 10.0, unit="s", min=0, exclusive_min=True,
              max=86_400, help="How long a lease lives without a renewal."),
        Param("lock_delay_s", "float", 0.0, unit="s", min=0, max=86_400,
              help="After a lease expires, nobody may take the lock for this long."),
    )
    DURABLE = ("revision",)
    PAUSABLE = True

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.processed = 0
        self.init_state()

    def init_state(self) -> None:
        self.revision = 0
        self.leases: dict[str, Lease] = {}
        self.delay_until: dict[str, float] = {}  # local ms

    @property
    def ttl_ms(self) -> float:
        return float(self.p["lease_ttl_s"]) * 1000.0

    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        self.processed += 1
        req = call.req
        lock, who = req.key or "", req.client
        token = int((req.headers or {}).get("token") or 0)
        lease = self.leases.get(lock)
        if req.op == "acquire":
            # A held lock is a refusal, not an error: the worker polls again.
            if lease is not None:
                call.reply(m.Reply(m.REJECTED, status=409, reason=f"held by {lease.holder}"))
            elif self.local_now() < self.delay_until.get(lock, float("-inf")):
                call.reply(m.Reply(m.REJECTED, status=409,
                                   reason="lock delay after an expiry"))
            else:
                call.reply(m.Reply(m.SUCCEEDED, value=self._grant(lock, who)))
            return
        if lease is None or lease.token != token:
            call.reply(m.Reply(m.FAILED, error=m.BUSINESS, status=410,
                               reason="no such lease (expired or released)"))
            return
        if req.op == "renew":
            lease.timer.start(self.ttl_ms)
            self.sim.record({"k": "lock.renew", "node": self.id, "lock": lock, "worker": who,
                             "token": token,
                             "expires_at": round(self.kernel.now
                                                 + self.clock.to_real(self.ttl_ms), 3)})
            call.reply(m.Reply(m.SUCCEEDED, value={"token": token, "ttl_ms": self.ttl_ms}))
            return
        if req.op == "release":
            lease.timer.cancel()
            self._timers.remove(lease.timer)
            del self.leases[lock]
            self.sim.record({"k": "lock.release", "node": self.id, "lock": lock, "worker": who,
                             "token": token})
            call.reply(m.OK)
            return
        call.reply(m.Reply(m.FAILED, error=m.BUSINESS, status=400,
                           reason=f"unknown operation {req.op!r}"))

    def _grant(self, lock: str, who: str) -> dict[str, Any]:
        self.revision += 1
        token = self.revision
        timer = self.timer(lambda: self._expire(lock, token))
        timer.start(self.ttl_ms)
        self.leases[lock] = Lease(who, token, timer)
        self.sim.record({"k": "lock.grant", "node": self.id, "lock": lock, "worker": who,
                         "token": token,
                         "expires_at": round(self.kernel.now
                                             + self.clock.to_real(self.ttl_ms), 3)})
        return {"token": token, "ttl_ms": self.ttl_ms}

    def _expire(self, lock: str, token: int) -> None:
        lease = self.leases.get(lock)
        if lease is None or lease.token != token:
            return
        del self.leases[lock]
        self._timers.remove(lease.timer)
        self.delay_until[lock] = self.local_now() + float(self.p["lock_delay_s"]) * 1000.0
        self.sim.record({"k": "lock.expire", "node": self.id, "lock": lock,
                         "worker": lease.holder, "token": token})
        self.note(f"{lease.holder}'s lease on {lock} (token {token}) expired")

    def on_crash(self) -> None:
        # Leases live in memory: a crash ends them all (their holders are not told).
        for lock, lease in self.leases.items():
            self.sim.record({"k": "lock.expire", "node": self.id, "lock": lock,
                             "worker": lease.holder, "token": lease.token,
                             "why": "service crashed"})
        self._timers.clear()

    def sample(self, window_ms: float) -> dict[str, Any]:
        lease = next(iter(self.leases.values()), None)
        return {"holder": lease.holder if lease is not None else None,
                "token": lease.token if lease is not None else None,
                "revision": self.revision, "paused": self.paused}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.processed, "utilisation": 0.0, "max_queue": 0,
                "revision": self.revision}


@register_kind
class FencedStore(KvStore):
    KIND = "fenced_store"
    LABEL = "Fenced store"
    DESCRIPTION = ("A key-value store that refuses operations with a fencing token below "
                   "the highest it has accepted.")
    PARAMS = store_params(fencing=True)


@register_kind
class LockWorker(Node):
    KIND = "lock_worker"
    LABEL = "Lock worker"
    DESCRIPTION = ("Takes a lease on a lock, then reads, works on and writes a shared "
                   "counter with its fencing token.")
    PARAMS = (
        *CLUSTER_PARAMS,
        Param("keepalive_every", "float", 1 / 3, unit="× TTL", min=0, exclusive_min=True,
              max=1, help="Renew the lease this often, as a fraction of its TTL."),
        Param("acquire_retry_ms", "float", 100.0, unit="ms", min=1, max=3_600_000,
              help="Wait between attempts to take a held lock."),
        Param("work_ms", "float", 200.0, unit="ms", min=0, max=3_600_000,
              help="Work between reading the counter and writing it back."),
        Param("think_ms", "float", 100.0, unit="ms", min=0, max=3_600_000,
              help="Pause after a section before trying again (lets waiters in)."),
        Param("check_lease_before_write", "bool", False,
              help="Check the lease by the worker's own clock just before writing."),
        Param("use_lock", "bool", True,
              help="Take the lock around each section (false: the no-lock baseline)."),
    )
    PAUSABLE = True
    ROLES = (HOLDER,)

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.sections = 0
        self.abandoned = 0
        self.waits: list[float] = []
        self.step = self.timer(self._next)
        self.keepalive = self.timer(self._renew)
        self.init_state()

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if not params["cluster"]:
            raise ParamError("cluster", "name the lock the worker takes (its cluster)")

    def init_state(self) -> None:
        self.token: int | None = None
        self.lease_until = float("-inf")  # local ms: the lease's end as the worker knows it
        self.read_value: int = 0
        self.phase = IDLE
        self.wait_started = 0.0
        self.ttl_ms = 0.0
        self.action: Any = None  # what the step timer does next

    def start(self) -> None:
        self.lock_edge = self._edge("lock_service")
        self.store_edge = self._edge("kv_store", "fenced_store")
        if self.store_edge is None or (self.lock_edge is None and self.p["use_lock"]):
            raise ValueError(f"{self.id}: a lock_worker needs an edge to a lock_service and "
                             "one to a kv_store or fenced_store")
        self._idle("started", 0.0)

    def on_recover(self) -> None:
        self._idle("restarted", 0.0)

    def _edge(self, *kinds: str) -> Edge | None:
        return next((e for e in self.out_edges if e.dst.KIND in kinds), None)

    @property
    def lock(self) -> str:
        return str(self.p["cluster"])

    def role_rank(self, role: str) -> float | None:
        return float(self.token) if role == HOLDER and self.token is not None else None

    # -- the loop ----------------------------------------------------------------------------
    def _next(self) -> None:
        action, self.action = self.action, None
        if action is not None:
            action()

    def _after(self, delay_ms: float, action: Any) -> None:
        self.action = action
        self.step.start(delay_ms)

    def _idle(self, reason: str, delay_ms: float) -> None:
        self.token = None
        self.keepalive.cancel()
        self.phase = IDLE
        self.set_state(IDLE, reason)
        self._after(delay_ms, self._acquire)

    def _call(self, edge: Edge | None, op: str, key: str, headers: dict[str, Any],
              then: Any) -> None:
        assert edge is not None  # checked at start
        req = self.sim.new_request(self.id, key=key, op=op)
        req.headers = headers
        life = self.incarnation

        def on_reply(_: Any, reply: m.Reply) -> None:
            self.sim.request_done(req, reply)
            if self.down or self.incarnation != life:
                return  # an answer to a past life
            if self.paused:  # stop-the-world: handled when the pause ends
                later = self.timer(lambda: then(reply))
                later.start(0.0)
                return
            then(reply)
        self.net.invoke(edge, req, on_reply)

    def _acquire(self) -> None:
        if not self.p["use_lock"]:
            self._read()
            return
        if self.phase != WAITING:
            self.phase = WAITING
            self.wait_started = self.kernel.now
            self.set_state(WAITING, "wants the lock")
        sent = self.local_now()
        self._call(self.lock_edge, "acquire", self.lock, {},
                   lambda reply: self._on_acquire(reply, sent))

    def _on_acquire(self, reply: m.Reply, sent: float) -> None:
        if not reply.ok:
            jitter = 0.9 + 0.2 * self.rng.random()  # pollers do not stay in lockstep
            self._after(self.p["acquire_retry_ms"] * jitter, self._acquire)
            return
        self.token = int(reply.value["token"])
        ttl = self.ttl_ms = float(reply.value["ttl_ms"])
        # The lease counts from when the request left: a worker can't know better.
        self.lease_until = sent + ttl
        self.waits.append(self.kernel.now - self.wait_started)
        self.phase = HOLDING
        self.set_state(f"HOLDING({self.token})", f"granted token {self.token}")
        self.keepalive.start(ttl * self.p["keepalive_every"])
        self._read()

    def _renew(self) -> None:
        token = self.token
        if token is None:
            return
        sent = self.local_now()
        self._call(self.lock_edge, "renew", self.lock, {"token": token},
                   lambda reply: self._on_renew(reply, token, sent))
        self.keepalive.start(self.ttl_ms * self.p["keepalive_every"])

    def _on_renew(self, reply: m.Reply, token: int, sent: float) -> None:
        if self.token != token:
            return
        if reply.ok:
            self.lease_until = sent + float(reply.value["ttl_ms"])
        elif reply.status == 410:
            self.abandoned += 1
            self.note(f"{self.id} lost its lease (token {token}): section abandoned")
            self._idle(f"lease {token} gone", self.p["think_ms"])

    def _read(self) -> None:
        token = self.token
        self._call(self.store_edge, "get", COUNTER, self._fence({}),
                   lambda reply: self._on_read(reply, token))

    def _fence(self, headers: dict[str, Any]) -> dict[str, Any]:
        if self.token is not None:
            headers["token"] = self.token
        return headers

    def _on_read(self, reply: m.Reply, token: int | None) -> None:
        if self.token != token:
            return
        if not reply.ok:
            self._end_section(f"read failed: {reply.reason or reply.outcome}")
            return
        self.read_value = int(reply.value["value"] or 0)
        self._after(self.p["work_ms"], self._write)

    def _write(self) -> None:
        if self.p["check_lease_before_write"] and self.token is not None \
                and self.local_now() >= self.lease_until:
            self.abandoned += 1
            self.note(f"{self.id} saw its lease had run out before writing: write skipped")
            self._end_section("lease ran out before the write")
            return
        token = self.token
        value = self.read_value + 1
        op = self.sim.history.invoke(self.id, "write", value)
        self._call(self.store_edge, "put", COUNTER, self._fence({"value": value}),
                   lambda reply: self._on_write(reply, token, op))

    def _on_write(self, reply: m.Reply, token: int | None, op: Any) -> None:
        if reply.ok:
            self.sim.history.ok(op)
            self.sections += 1
        elif reply.outcome == m.TIMED_OUT:
            self.sim.history.info(op, "timeout")
        else:
            self.sim.history.fail(op, reply.reason or reply.outcome)
        if self.token != token:
            return
        self._end_section("section done" if reply.ok
                          else f"write refused: {reply.reason or reply.outcome}")

    def _end_section(self, reason: str) -> None:
        token = self.token
        if token is None:
            self._idle(reason, self.p["think_ms"])
            return
        self._call(self.lock_edge, "release", self.lock, {"token": token},
                   lambda _reply: self._released(token, reason))

    def _released(self, token: int, reason: str) -> None:
        if self.token == token:
            self._idle(reason, self.p["think_ms"])

    # -- reporting ---------------------------------------------------------------------------
    SUMMARY_STATES = 12

    def summary(self, duration_ms: float) -> dict[str, Any]:
        """As every node's, but with only the last state changes: a worker changes state
        three times a section (hundreds a minute), and the stream has them all."""
        out = super().summary(duration_ms)
        out["state_changes"] = len(self.states)
        out["states"] = self.states[-self.SUMMARY_STATES:]
        return out

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.sections, "utilisation": 0.0, "max_queue": 0,
                "sections": self.sections, "abandoned": self.abandoned}
