"""Leader election by lease: ``lease_elector`` nodes compete for one key in a ``lease_store``.

Covers the lease variant of leader election as Kubernetes' client-go runs it on a ``Lease``
object (an etcd lease or a ZooKeeper ephemeral node work alike). The lease is one key of the
store, named after the electors' ``cluster``; its record names the holder and carries the
lease's duration (``lease_duration_s``), and every write of it raises its version.

- An elector that does not lead reads the record every ``retry_period_s``. Its first read is
  at once when it starts, its second after a random part of a period (processes started
  together do not poll in step; every later wait is one period). As
  client-go does, it judges expiry by its own clock: a lease has expired when the record has
  not changed for its duration since this elector first saw it as it is. If the record names
  no holder, names the elector itself (a restart with the same identity), or has expired,
  the elector writes itself as holder by compare-and-set on the version it read. Of several
  electors racing for one lease, one write wins; the others get a version conflict (409)
  and follow the winner. Electors start at once, so they race at 0 s.
- The holder leads: it runs the singleton job (one tick per ``job_period_ms`` on its own
  clock) and renews every ``retry_period_s`` by compare-and-set on the version of its last
  write (a renewal changes the record, which is what tells the others it is alive). A
  renewal refused for a version conflict means someone else took the lease: the holder steps
  down at once. A renewal that fails otherwise (store down, partition, a timeout after
  0.9 of a retry period) is tried again at the next period; once ``renew_deadline_s`` has passed on
  the holder's own clock since it sent its last successful renewal, it steps down ("failed
  to renew"), as client-go gives up leadership.

A failover after a holder crash therefore takes the lease's duration from when a candidate
saw the last renewal, plus up to a retry period to notice: ≤ lease_duration + 2 ×
retry_period. Since the renew deadline (10 s) is shorter than the lease (15 s), the old
leader stops before anyone else may take over, unless its clock runs slow (10 of its
seconds last longer than 15 of theirs), a candidate's clock runs fast, or a ``pause``
freezes it: a paused process cannot step down, and on the resume its timers run on where
they stopped, so it may tick once more before its next renewal finds the lease gone.
``dual_leader_ms`` in the pattern's figures measures it.

``election: static`` is the baseline: the cluster's first member is the primary for ever and
nobody touches the store (the job stops while the primary is down).

``lease_store`` is the keyed store (:mod:`patterns.components.kv_store`) with two changes: an
expired key (when a write names a TTL) keeps its version, as etcd revisions and Kubernetes
resourceVersions only rise, so a compare-and-set on an old version can never succeed by
accident; and ``check_version`` false turns compare-and-set into a blind put: the store
without the version check, which lets every racer think it won. The electors keep nothing
on disk (a restarted elector reads the record again); the store keeps keys and versions.

Recorded for the checks whatever the trace level: ``lease.grant`` (store, key, holder,
version, ``expires_at``: the write's time plus the record's duration, or its TTL, in sim ms;
``renew``: the holder did not change), ``lease.leader`` (node, key, version),
``lease.stepdown`` (node, version, ``why``: crashed, deadline, taken) and ``job.tick`` (node,
term: the lease version, slot).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from patterns.components.kv_store import Item, KvStore, store_params
from patterns.engine import messages as m
from patterns.engine.cluster import CLUSTER_PARAMS
from patterns.engine.node import Node, register_kind
from patterns.params import Param, ParamError

if TYPE_CHECKING:
    from patterns.engine.history import Op
    from patterns.engine.network import Edge

LEADER = "leader"
FOLLOWER = "follower"
CONFLICT = 409
CALL_TIMEOUT = 0.9  # a call's timeout, as a fraction of the retry period


@register_kind
class LeaseStore(KvStore):
    KIND = "lease_store"
    LABEL = "Lease store"
    DESCRIPTION = ("A keyed store holding leases: compare-and-set on a version that never "
                   "goes back, and a TTL on its own clock.")
    PARAMS: ClassVar[tuple[Param, ...]] = (
        *store_params(fencing=False),
        Param("check_version", "bool", True,
              help="Compare-and-set checks the version (false: a blind write, so racing "
                   "electors all win the lease)."),
    )

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.grants = 0

    def apply(self, op: str, key: str, headers: dict[str, Any], who: str = "") -> m.Reply:
        if op == "cas" and not self.p["check_version"]:
            op = "put"  # the broken store: the expected version is not looked at
        before = self._live(key)
        reply = super().apply(op, key, headers, who)
        value = headers.get("value")
        if reply.ok and op in ("put", "cas") and isinstance(value, dict) and "holder" in value:
            self.grants += 1
            ttl = headers.get("ttl_ms")
            ttl_ms = float(ttl) if ttl is not None else self.p["ttl_s"] * 1000.0
            expires_at: float | None = None
            if ttl_ms > 0.0:  # the store expires the key, on its own clock
                expires_at = round(self.kernel.now + self.clock.to_real(ttl_ms), 3)
            elif value.get("duration_ms"):
                # A Kubernetes Lease: the store keeps the record for ever; it is good for
                # its duration after this write.
                expires_at = round(self.kernel.now + float(value["duration_ms"]), 3)
            prev = before.value if before is not None else None
            self.sim.record({
                "k": "lease.grant", "node": self.id, "key": key, "holder": value["holder"],
                "version": reply.value["version"], "expires_at": expires_at,
                "renew": isinstance(prev, dict) and prev.get("holder") == value["holder"]})
        return reply

    def _live(self, key: str) -> Item | None:
        """The key's item; once its TTL has run out, an empty item that keeps the version."""
        item = self.data.get(key)
        if item is not None and item.expires_at is not None \
                and self.local_now() >= item.expires_at:
            self.data[key] = item = Item(None, item.version, None)
            self.expired += 1
        return item

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {**super().stats(duration_ms), "grants": self.grants}


@register_kind
class LeaseElector(Node):
    KIND = "lease_elector"
    LABEL = "Lease elector"
    DESCRIPTION = ("Competes for a lease in a lease store by compare-and-set; the holder "
                   "renews it and runs a singleton job.")
    PARAMS = (
        *CLUSTER_PARAMS,
        Param("lease_duration_s", "float", 15.0, unit="s", min=0, exclusive_min=True,
              max=86_400, help="How long the lease lives in the store after each write."),
        Param("renew_deadline_s", "float", 10.0, unit="s", min=0, exclusive_min=True,
              max=86_400, help="The leader steps down when it has not renewed for this "
                               "long (its own clock)."),
        Param("retry_period_s", "float", 2.0, unit="s", min=0, exclusive_min=True,
              max=86_400, help="Wait between attempts to acquire or renew."),
        Param("job_period_ms", "float", 1000.0, unit="ms", min=1, max=3_600_000,
              help="The singleton job ticks once per period, on the leader only."),
        Param("election", "choice", "lease", choices=("lease", "static"),
              help="lease, or static: the first member is the primary forever and nobody "
                   "uses the store (baseline)."),
    )
    PAUSABLE = True
    ROLES = (LEADER, FOLLOWER)

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.attempt_timer = self.timer(self._attempt)
        self.deadline_timer = self.timer(self._on_deadline)
        self.job_timer = self.timer(self._on_job_tick)
        self.attempts = 0
        self.acquisitions = 0
        self.init_state()

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if not params["cluster"]:
            raise ParamError("cluster", "name the lease the electors compete for (a cluster)")

    def init_state(self) -> None:
        self.role = FOLLOWER
        self.holder: str | None = None  # who holds the lease, as last read
        self.version = 0  # the lease's version as last read or written
        self.observed_at = float("-inf")  # local ms: when the record was first seen as is
        self.renewed_at = float("-inf")  # local ms: when the last successful write left
        self.pending = 0  # calls in flight
        self.first = True  # the next attempt is the first since the start

    @property
    def lease(self) -> str:
        return str(self.p["cluster"])

    def _ms(self, name: str) -> float:
        return float(self.p[name]) * 1000.0

    # -- start and restart -------------------------------------------------------------------
    def start(self) -> None:
        edge = next((e for e in self.out_edges
                     if e.dst.KIND in ("lease_store", "kv_store")), None)
        if edge is None:
            raise ValueError(f"{self.id}: a lease_elector needs an edge to a lease_store")
        self.store_edge: Edge = edge
        if self._static_primary():
            self._become_leader()
            return
        self.set_state(FOLLOWER, "started")
        self._attempt()

    def _static_primary(self) -> bool:
        """In the static baseline, whether this is the primary (the cluster's first)."""
        return (self.p["election"] == "static" and self.cluster is not None
                and self.cluster.members[0] is self)

    def on_crash(self) -> None:
        if self.role == LEADER:
            self.sim.record({"k": "lease.stepdown", "node": self.id, "key": self.lease,
                             "version": self.version, "why": "crashed"})

    def on_recover(self) -> None:
        if self._static_primary():
            self._become_leader()
            return
        self.set_state(FOLLOWER, "restarted: reads the lease again")
        self._attempt()

    def role_rank(self, role: str) -> float | None:
        if role != self.role:
            return None
        return float(self.version) if role == LEADER else 0.0

    # -- the loop ----------------------------------------------------------------------------
    def _attempt(self) -> None:
        if self.p["election"] == "static":
            return  # the static baseline: nobody campaigns, the primary never renews
        period = self._ms("retry_period_s")
        if self.role == LEADER:
            if self.local_now() - self.renewed_at >= self._ms("renew_deadline_s"):
                self._on_deadline()
            else:
                self.attempt_timer.start(period)
                if not self.pending:
                    self._write(self.version)
                return
        if self.first:
            # After the first attempt, a random phase: then one period between attempts.
            self.first = False
            period *= 1.0 - self.rng.random()
        self.attempt_timer.start(period)
        if not self.pending:
            self._call("get", {}, self._on_read)

    def _call(self, op: str, headers: dict[str, Any], then: Any) -> None:
        self.attempts += 1
        self.pending += 1
        req = self.sim.new_request(self.id, key=self.lease, op=op)
        req.headers = headers
        life = self.incarnation
        sent = self.local_now()

        def handle(reply: m.Reply) -> None:
            if self.down or self.incarnation != life:
                return  # an answer to a past life
            self.pending -= 1
            then(reply, sent)

        def on_reply(_: Any, reply: m.Reply) -> None:
            self.sim.request_done(req, reply)
            if self.paused and self.incarnation == life:
                # Stop-the-world: the answer is handled when the pause ends.
                self.timer(lambda: handle(reply)).start(0.0)
                return
            handle(reply)
        # Given up a little before the next attempt, which then finds nothing pending.
        self.net.call(self.store_edge, req, on_reply,
                      timeout_ms=CALL_TIMEOUT * self._ms("retry_period_s"))

    def _on_read(self, reply: m.Reply, sent: float) -> None:
        if not reply.ok or self.role == LEADER:
            return
        record, version = reply.value["value"], int(reply.value["version"])
        if version != self.version:
            self.version = version
            self.observed_at = self.local_now()
        holder = record.get("holder") if isinstance(record, dict) else None
        duration = float(record.get("duration_ms") or 0.0) if isinstance(record, dict) \
            else 0.0
        expired = self.local_now() >= self.observed_at + duration
        if holder is None or holder == self.id or expired:
            self._write(version)
        elif holder != self.holder:
            self.holder = holder
            self.set_state(FOLLOWER, f"{holder} holds the lease (version {version})")

    def _write(self, version: int) -> None:
        op = self.sim.history.invoke(self.id, "renew" if self.role == LEADER else "acquire",
                                     version)
        headers = {"version": version,
                   "value": {"holder": self.id, "duration_ms": self._ms("lease_duration_s")}}
        self._call("cas", headers, lambda reply, sent: self._on_write(reply, sent, op,
                                                                     version))

    def _on_write(self, reply: m.Reply, sent: float, op: Op, expected: int) -> None:
        history = self.sim.history
        if reply.ok:
            history.ok(op, reply.value["version"])
        elif reply.outcome == m.TIMED_OUT:
            history.info(op, "timeout")
        else:
            history.fail(op, reply.reason or reply.outcome)
        if reply.ok:
            if self.role == LEADER and expected != self.version:
                return  # a late answer to a renewal a newer one overtook
            self.version = int(reply.value["version"])
            self.renewed_at = sent
            if self.role == LEADER:
                self._arm_deadline()
            else:
                self._become_leader()
        elif reply.status == CONFLICT and self.role == LEADER and expected == self.version:
            now = reply.value or {}
            record = now.get("value")
            holder = record.get("holder") if isinstance(record, dict) else None
            self._step_down("taken", f"lease taken by {holder or 'another elector'} "
                                     f"(version {now.get('version', '?')}, not {expected})")

    # -- leading -----------------------------------------------------------------------------
    def _become_leader(self) -> None:
        self.role = LEADER
        self.holder = self.id
        self.acquisitions += 1
        self.sim.record({"k": "lease.leader", "node": self.id, "key": self.lease,
                         "version": self.version})
        self._arm_job()
        if self.p["election"] == "static":
            self.set_state(LEADER, "the static primary")
            return
        self.set_state(LEADER, f"acquired the lease (version {self.version})")
        self._arm_deadline()
        self.attempt_timer.start(self._ms("retry_period_s"))

    def _arm_deadline(self) -> None:
        left = self._ms("renew_deadline_s") - (self.local_now() - self.renewed_at)
        self.deadline_timer.start(max(left, 0.0))

    def _on_deadline(self) -> None:
        if self.role == LEADER:
            self._step_down("deadline", f"failed to renew within "
                                        f"{self.p['renew_deadline_s']:g} s")
            self._attempt()

    def _step_down(self, why: str, reason: str) -> None:
        self.sim.record({"k": "lease.stepdown", "node": self.id, "key": self.lease,
                         "version": self.version, "why": why})
        self.role = FOLLOWER
        self.holder = None
        self.deadline_timer.cancel()
        self.job_timer.cancel()
        self.set_state(FOLLOWER, reason)
        self.note(f"{self.id} stops leading: {reason}")

    def _on_job_tick(self) -> None:
        if self.role != LEADER:
            return
        now = self.local_now()
        self.sim.record({"k": "job.tick", "node": self.id, "term": self.version,
                         "slot": round(now / self.p["job_period_ms"])})
        self._arm_job()

    def _arm_job(self) -> None:
        period = self.p["job_period_ms"]
        now = self.local_now()
        slot = math.floor(now / period + 1e-9) + 1  # a boundary just reached counts
        self.job_timer.start(slot * period - now)

    # -- reporting ---------------------------------------------------------------------------
    def sample(self, window_ms: float) -> dict[str, Any]:
        return {"role": "down" if self.down else self.role, "lease_version": self.version,
                "paused": self.paused}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.attempts, "utilisation": 0.0, "max_queue": 0,
                "role": self.role, "acquisitions": self.acquisitions,
                "version": self.version}
