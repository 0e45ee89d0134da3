"""Raft log replication under a key-value state machine, its clients, and the baseline.

``raft_node`` extends the ``raft_elector`` (:mod:`patterns.components.election`) with the
log half of Raft (Ongaro & Ousterhout 2014, §5.3–§5.4, §8):

* A durable log of entries ``(term, command)``; index 1 is the first. A command is a put
  ``{"op", "client", "key", "value"}`` or None (the no-op a new leader appends at once, §8).
  Writing to the WAL takes ``fsync_ms``; a member acknowledges entries only once they are
  synced (the leader counts itself once its own fsync is done).
* AppendEntries with the consistency check: a follower accepts entries only if its log holds
  ``prev_index`` with ``prev_term``; an entry that conflicts with a new one (same index,
  other term) is deleted with everything after it (``raft.truncate``). Only followers
  truncate; a leader never changes its own log except by appending.
* Votes go only to candidates whose log is at least as up to date (last term, then length,
  §5.4.1), pre-votes likewise.
* The leader advances ``commit_index`` to the highest index stored on a majority whose entry
  is from its *current* term (§5.4.2); older entries commit only with it. ``commit_rule:
  count_replicas`` (test only) commits any entry stored on a majority, the bug of the paper's
  Figure 8.
* Committed entries are applied in order to a key-value map. With ``dedup`` a command whose
  op id was applied already is not applied again (client sessions, thesis ch. 6).

A ``put`` call reaches any member; a follower answers ``not leader`` (status 421, ``value`` the
leader it knows), the leader appends the command and answers once it is committed and
applied. A leader that loses its leadership answers its waiting calls ``leadership lost``:
the command may still commit, so the client cannot know.

``raft_client`` sends puts with unique op ids at ``rate`` per second (Poisson), follows
not-leader hints, tries another member on a timeout, and gives up ``client_timeout_ms`` after
the invoke. Each put is an operation in the run's history: ``op.ok`` when acknowledged,
``op.fail`` when no attempt can have taken effect, ``op.info`` otherwise.

``primary_backup`` is the baseline: the first member is the primary; it applies and
acknowledges a put at once and ships its log to the backups every ``replication_ms``. A
backup that hears no primary for ``promote_after_ms`` (plus ``replication_ms`` for each backup
listed before it) promotes itself; a primary
that hears one listed earlier steps down and takes that primary's log, discarding what it
alone had. No quorum, no terms (its promotions are recorded as leaders of term 0).

Recorded for the checks whatever the trace level: ``raft.append`` (leader, index, term),
``raft.commit`` (leader, index, term, entry_term, replicas), ``raft.apply`` (node, index, op),
``raft.truncate`` (node, role, from index, the dropped entries' terms), plus the elector's.
"""

from __future__ import annotations

from typing import Any

from patterns.components.election import FOLLOWER, LEADER, RaftElector
from patterns.engine import messages as m
from patterns.engine.cluster import CLUSTER_PARAMS, PeerMessage
from patterns.engine.distributions import parse
from patterns.engine.history import Op
from patterns.engine.network import Call, Edge
from patterns.engine.node import Node, register_kind
from patterns.params import Param, ParamError

# An entry: (term, command); a command is a put dict or None (a leader's no-op).
Entry = tuple[int, "dict[str, Any] | None"]

WAL_FSYNC = {"dist": "lognormal", "median": 2.0, "p99": 10.0}
NOT_LEADER = 421
CURRENT_TERM = "current_term"
COUNT_REPLICAS = "count_replicas"


def not_leader(hint: str | None) -> m.Reply:
    return m.Reply(m.FAILED, error=m.UNAVAILABLE, status=NOT_LEADER, reason="not leader",
                   value=hint)


LEADERSHIP_LOST = m.Reply(m.FAILED, error=m.UNAVAILABLE, status=503,
                          reason="leadership lost")


@register_kind
class RaftNode(RaftElector):
    KIND = "raft_node"
    LABEL = "Raft node"
    DESCRIPTION = ("A member of a Raft cluster: elects a leader, replicates a log of puts and "
                   "applies committed ones to a key-value map.")
    PARAMS = (
        *RaftElector.PARAMS,
        Param("fsync_ms", "dist", WAL_FSYNC, unit="ms", max=600_000,
              help="Time to sync the write-ahead log (entries are acknowledged only once "
                   "synced)."),
        Param("max_entries_per_append", "int", 64, min=1, max=100_000,
              help="Most entries one AppendEntries message carries."),
        Param("dedup", "bool", True,
              help="Apply a retried command (same op id) once."),
        Param("commit_rule", "choice", CURRENT_TERM, choices=(CURRENT_TERM, COUNT_REPLICAS),
              help="current_term: commit only entries of the leader's term by counting "
                   "replicas (Raft §5.4.2); count_replicas: any entry on a majority (unsafe, "
                   "the paper's Figure 8)."),
    )
    DURABLE = ("current_term", "voted_for", "log")

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        if not params["durable_vote"]:
            self.durable = ("current_term", "log")
        self.fsync = parse(params["fsync_ms"]).sampler(self.rng)
        self.commits = 0

    def init_state(self) -> None:
        super().init_state()
        self.log: list[Entry] = []
        self.commit_index = 0
        self.last_applied = 0
        self.kv: dict[str, Any] = {}
        self.applied_ops: dict[int, int] = {}  # op id -> index it was applied at
        self.duplicates = 0
        self.synced = 0  # the leader's own log, synced up to here
        self.disk_free_at = 0.0
        self.next_index: dict[str, int] = {}
        self.match_index: dict[str, int] = {}
        self.waiting: dict[int, Call] = {}  # index -> the client call to answer when applied
        self.truncated = 0

    # -- the log ------------------------------------------------------------------------------
    @property
    def last_index(self) -> int:
        return len(self.log)

    def term_at(self, index: int) -> int:
        return self.log[index - 1][0] if 0 < index <= len(self.log) else 0

    @property
    def last_term(self) -> int:
        return self.term_at(len(self.log))

    def _sync_then(self, msg: PeerMessage) -> None:
        """Sync the WAL (one write at a time), then handle ``msg`` as if it came from
        ourselves; a crash in between loses the message, a pause delays it."""
        now = self.kernel.now
        start = max(now, self.disk_free_at)
        self.disk_free_at = start + self.fsync()
        incarnation = self.incarnation

        def done(_: Any) -> None:
            if self.down or self.incarnation != incarnation:
                return
            if self.paused:
                self._inbox.append(("peer", self.id, msg))  # handled at the resume
            else:
                self.on_peer(self.id, msg)

        self.kernel.schedule(self.disk_free_at - now, done, None)

    def up_to_date(self, msg: PeerMessage) -> bool:
        """Whether a candidate's log (``last_term``, ``last_index``) is at least as up to date
        as ours (§5.4.1)."""
        return bool((msg["last_term"], msg["last_index"]) >= (self.last_term, self.last_index))

    # -- clients ------------------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        self.handled += 1
        if self.role != LEADER:
            call.reply(not_leader(self.leader_id))
            return
        cmd = call.req.headers or {}
        if "op" not in cmd:
            call.reply(m.BUSINESS_ERROR)  # not a put this store understands
            return
        op = cmd["op"]
        if self.p["dedup"] and op in self.applied_ops:
            call.reply(m.OK)  # applied already: a retry of a command that committed
            return
        if self.p["dedup"]:
            for index in range(self.last_index, self.commit_index, -1):
                entry = self.log[index - 1][1]
                if entry is not None and entry["op"] == op:
                    self.waiting[index] = call  # in the log already: wait for that entry
                    return
        self._append(cmd)
        self.waiting[self.last_index] = call
        self._replicate()

    def _append(self, cmd: dict[str, Any] | None) -> None:
        self.log.append((self.current_term, cmd))
        self.sim.record({"k": "raft.append", "node": self.id, "index": self.last_index,
                         "term": self.current_term})
        self._sync_then({"type": "synced", "term": self.current_term,
                         "index": self.last_index})

    # -- leadership ---------------------------------------------------------------------------
    def broadcast(self, msg: PeerMessage) -> None:
        if msg["type"] in ("vote.req", "prevote.req"):
            msg = {**msg, "last_index": self.last_index, "last_term": self.last_term}
        super().broadcast(msg)

    def _become_leader(self, reason: str) -> None:
        nxt = self.last_index + 1
        self.next_index = {peer: nxt for peer in self.peers}
        self.match_index = {peer: 0 for peer in self.peers}
        self.synced = min(self.synced, self.last_index)
        super()._become_leader(reason)
        self._append(None)  # the no-op that commits the earlier terms' entries (§8)
        self._replicate()

    def _become_follower(self, term: int, leader: str | None, reason: str,
                         why: str = "higher_term") -> None:
        if self.role == LEADER:
            waiting, self.waiting = self.waiting, {}
            for call in waiting.values():
                call.reply(LEADERSHIP_LOST)
        super()._become_follower(term, leader, reason, why)

    def on_crash(self) -> None:
        super().on_crash()
        self.waiting = {}  # the calls are forgotten: their clients time out

    def _on_heartbeat(self) -> None:
        if self.role != LEADER:
            return
        self._replicate()
        self.heartbeat_timer.start(self.heartbeat_ms)

    def _replicate(self) -> None:
        for peer in self.peers:
            self._send_append(peer)

    def _send_append(self, peer: str) -> None:
        nxt = self.next_index[peer]
        prev = nxt - 1
        entries = self.log[prev:prev + self.p["max_entries_per_append"]]
        self.send_peer(peer, {"type": "append", "term": self.current_term, "prev_index": prev,
                              "prev_term": self.term_at(prev), "entries": entries,
                              "commit": self.commit_index})
        # Pipelined: the next message carries what follows; a rejection winds it back.
        self.next_index[peer] = nxt + len(entries)

    def _advance_commit(self) -> None:
        majority = self._majority
        for index in range(self.last_index, self.commit_index, -1):
            term = self.term_at(index)
            if term != self.current_term and self.p["commit_rule"] == CURRENT_TERM:
                break  # older entries commit only along with one of this term (§5.4.2)
            replicas = (self.synced >= index) + sum(
                1 for peer in self.peers if self.match_index[peer] >= index)
            if replicas >= majority:
                self.commit_index = index
                self.commits += 1
                self.sim.record({"k": "raft.commit", "node": self.id, "index": index,
                                 "term": self.current_term, "entry_term": term,
                                 "replicas": replicas})
                self._apply()
                return

    def _apply(self) -> None:
        while self.last_applied < self.commit_index:
            self.last_applied += 1
            index = self.last_applied
            cmd = self.log[index - 1][1]
            if cmd is not None:
                op = cmd["op"]
                if op in self.applied_ops:
                    self.duplicates += 1  # a retried command that committed twice
                else:
                    self.applied_ops[op] = index
                if self.applied_ops[op] == index or not self.p["dedup"]:
                    self.kv[cmd["key"]] = cmd["value"]
                self.sim.record({"k": "raft.apply", "node": self.id, "index": index,
                                 "op": op, "term": self.term_at(index)})
            call = self.waiting.pop(index, None)
            if call is not None:
                call.reply(m.OK)

    # -- messages -----------------------------------------------------------------------------
    def on_peer(self, src: str, msg: PeerMessage) -> None:
        kind = msg["type"]
        if kind == "append":
            self.handled += 1
            self._on_append_entries(src, msg)
        elif kind == "append.resp":
            self.handled += 1
            self._on_append_response(src, msg)
        elif kind == "synced":
            self._on_synced(msg)
        elif kind == "ack":
            # Our own fsync of a follower's entries is done: now we may acknowledge them.
            if self.role == FOLLOWER:
                    self.send_peer(msg["to"], {"type": "append.resp",
                                           "term": self.current_term, "success": True,
                                           "match": msg["match"]})
        elif kind in ("vote.req", "prevote.req") and not self.up_to_date(msg):
            self.handled += 1
            self._refuse_vote(src, msg)
        else:
            super().on_peer(src, msg)

    def _refuse_vote(self, src: str, msg: PeerMessage) -> None:
        term = msg["term"]
        if msg["type"] == "prevote.req":
            self.send_peer(src, {"type": "prevote.resp", "granted": False,
                                 "term": self.current_term})
            return
        if term > self.current_term and not self._in_lease():
            self._become_follower(term, None, f"{src} campaigns in term {term} with a "
                                              "shorter log")
        if self.trace.full:
            self.emit({"k": "vote.request", "node": self.id, "candidate": src, "term": term,
                       "granted": False, "why": "log not up to date"})
        self.send_peer(src, {"type": "vote.resp", "term": self.current_term,
                             "granted": False})

    def _on_synced(self, msg: PeerMessage) -> None:
        if self.role == LEADER and msg["term"] == self.current_term:
            self.synced = max(self.synced, msg["index"])
            self._advance_commit()

    def _on_append_entries(self, src: str, msg: PeerMessage) -> None:
        if not self._accept_leader(src, msg["term"], match=0):
            return
        prev = msg["prev_index"]
        if prev > self.last_index or self.term_at(prev) != msg["prev_term"]:
            # Inconsistent: tell the leader where to resume (our end, or before the
            # conflicting term).
            if prev > self.last_index:
                hint = self.last_index
            else:
                conflict, hint = self.term_at(prev), prev - 1
                while hint > self.commit_index and self.term_at(hint) == conflict:
                    hint -= 1
            self.send_peer(src, {"type": "append.resp", "term": self.current_term,
                                 "success": False, "match": hint})
            return
        entries: list[Entry] = msg["entries"]
        index = prev
        appended = False
        for entry in entries:
            index += 1
            if index <= self.last_index:
                if self.term_at(index) == entry[0]:
                    continue
                self._truncate(index, src)
            self.log.append(entry)
            appended = True
        match = prev + len(entries)
        commit = min(msg["commit"], match)
        if commit > self.commit_index:
            self.commit_index = commit
            self._apply()
        if appended:
            self._sync_then({"type": "ack", "to": src, "match": match})
        else:
            self.send_peer(src, {"type": "append.resp", "term": self.current_term,
                                 "success": True, "match": match})

    def _truncate(self, index: int, leader: str) -> None:
        dropped = self.log[index - 1:]
        del self.log[index - 1:]
        self.truncated += len(dropped)
        self.sim.record({"k": "raft.truncate", "node": self.id, "role": self.role,
                         "from": index, "terms": [t for t, _ in dropped]})
        terms = sorted({t for t, _ in dropped})
        self.note(f"{self.id} discarded {len(dropped)} uncommitted entr"
                  f"{'y' if len(dropped) == 1 else 'ies'} of term "
                  f"{', '.join(map(str, terms))} (leader {leader} disagrees from index {index})")

    def _on_append_response(self, src: str, msg: PeerMessage) -> None:
        term = msg["term"]
        if term > self.current_term:
            self._become_follower(term, None, f"{src} answered with term {term}")
            return
        if self.role != LEADER or term != self.current_term:
            return
        self.acks[src] = None
        if msg["success"]:
            if msg["match"] > self.match_index[src]:
                self.match_index[src] = msg["match"]
                self._advance_commit()
            if self.next_index[src] <= msg["match"]:
                self.next_index[src] = msg["match"] + 1
        else:
            self.next_index[src] = max(1, min(self.next_index[src], msg["match"] + 1))
            self._send_append(src)

    # -- reporting ----------------------------------------------------------------------------
    def sample(self, window_ms: float) -> dict[str, Any]:
        return {**super().sample(window_ms), "commit_index": self.commit_index,
                "log": self.last_index}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {**super().stats(duration_ms), "commit_index": self.commit_index,
                "last_applied": self.last_applied, "log": self.last_index,
                "entries_truncated": self.truncated, "duplicates_applied": self.duplicates}


@register_kind
class RaftClient(Node):
    """Sends puts to a replicated store and records each in the run's history."""

    KIND = "raft_client"
    LABEL = "KV client"
    DESCRIPTION = ("An application writing to a replicated key-value store: finds the leader, "
                   "retries, records every put in the operation history.")
    PARAMS = (
        Param("rate", "float", 50.0, unit="puts/s", min=0, max=100_000,
              help="Puts per second (Poisson arrivals)."),
        Param("client_timeout_ms", "float", 1000.0, unit="ms", min=1, max=600_000,
              help="A put gives up this long after it was invoked."),
        Param("keys", "int", 100, min=1, max=1_000_000, help="Size of the key space."),
        Param("retry_delay_ms", "float", 20.0, unit="ms", min=0, max=60_000,
              help="Pause before trying again when nobody knows a leader."),
    )

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.leader = ""
        self.rate_multiplier = 1.0
        self.acked = 0

    def set_rate_multiplier(self, factor: float) -> None:
        self.rate_multiplier = factor

    def start(self) -> None:
        if not self.out_edges:
            raise ValueError(f"{self.id}: a raft_client needs edges to the cluster's members")
        self.leader = self.out_edges[0].dst.id
        self._arm()

    def _arm(self) -> None:
        rate = self.p["rate"] * self.rate_multiplier
        if rate > 0:
            self.kernel.schedule(self.rng.expovariate(rate / 1000.0), self._put, None)

    def _edge(self, dst: str) -> Edge:
        for edge in self.out_edges:
            if edge.dst.id == dst:
                return edge
        return self.out_edges[0]

    def _put(self, _: Any) -> None:
        self._arm()
        key = f"k{self.rng.randrange(self.p['keys'])}"
        value = f"v{len(self.sim.history.ops) + 1}"
        op = self.sim.history.invoke(self.id, "put", {"key": key, "value": value})
        req = self.sim.new_request(self.id, key, "write")
        req.headers = {"op": op.id, "client": self.id, "key": key, "value": value}
        # ctx: [op, request, give-up time, whether an attempt may have taken effect]
        self._attempt([op, req, self.kernel.now + self.p["client_timeout_ms"], False])

    def _attempt(self, ctx: list[Any]) -> None:
        op, req, give_up, maybe = ctx
        left = give_up - self.kernel.now
        if left <= 0:
            self._end(op, req, m.TIMEOUT, maybe)
            return
        self.net.call(self._edge(self.leader), req, self._on_reply, ctx, timeout_ms=left)

    def _on_reply(self, handle: Call, reply: m.Reply) -> None:
        ctx = handle.ctx
        op, req, give_up, _ = ctx
        if reply.ok:
            self.acked += 1
            self._end(op, req, reply, False)
            return
        if reply.status == NOT_LEADER:
            hint = reply.value
            if hint and hint != handle.edge.dst.id:
                self.leader = hint
                self._attempt(ctx)
                return
            self._next_member(handle.edge.dst.id)
        else:
            # A timeout or a lost leadership: the command may have been appended.
            ctx[3] = ctx[3] or reply.reason != "connection refused"
            self._next_member(handle.edge.dst.id)
        delay = self.p["retry_delay_ms"]
        if self.kernel.now + delay >= give_up:
            self._end(op, req, reply, ctx[3])
            return
        self.kernel.schedule(delay, lambda _: self._attempt(ctx), None)

    def _next_member(self, tried: str) -> None:
        ids = [e.dst.id for e in self.out_edges]
        if self.leader == tried and tried in ids:
            self.leader = ids[(ids.index(tried) + 1) % len(ids)]

    def _end(self, op: Op, req: m.Request, reply: m.Reply, maybe: bool) -> None:
        history = self.sim.history
        if reply.ok:
            history.ok(op)
        elif maybe or reply.outcome == m.TIMED_OUT:
            history.info(op, reply.reason or "timeout")
        else:
            history.fail(op, reply.reason or "failed")
        self.sim.request_done(req, reply)

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.acked, "utilisation": 0.0, "max_queue": 0}


@register_kind
class PrimaryBackup(Node):
    KIND = "primary_backup"
    LABEL = "Primary/backup"
    DESCRIPTION = ("A replica in an asynchronous primary/backup store: the primary "
                   "acknowledges puts at once and ships them to the backups later.")
    PARAMS = (
        *CLUSTER_PARAMS,
        Param("replication_ms", "float", 100.0, unit="ms", min=1, max=600_000,
              help="The primary ships new puts to the backups this often (also its "
                   "heartbeat)."),
        Param("promote_after_ms", "float", 1000.0, unit="ms", min=1, max=3_600_000,
              help="A backup promotes itself after this long without hearing a primary (plus "
                   "replication_ms per backup listed before it)."),
    )
    DURABLE = ("log",)
    PAUSABLE = True
    ROLES = ("leader", "follower")

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.ship_timer = self.timer(self._ship)
        self.promote_timer = self.timer(self._promote)
        self.handled = 0
        self.discarded = 0
        self.init_state()

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if not params["cluster"]:
            raise ParamError("cluster", "a primary_backup replica must join a cluster")

    def init_state(self) -> None:
        self.log: list[dict[str, Any]] = []  # applied puts, in order
        self.primary = False
        self.sent: dict[str, int] = {}

    @property
    def rank(self) -> int:
        assert self.cluster is not None
        return [n.id for n in self.cluster.members].index(self.id)

    def start(self) -> None:
        if self.rank == 0:
            self._become_primary("the first member")
        else:
            self._become_backup("started")

    def on_recover(self) -> None:
        self._become_backup("restarted")

    def _become_primary(self, reason: str) -> None:
        self.primary = True
        self.sent = {peer: len(self.log) for peer in self.peers}
        self.promote_timer.cancel()
        self.sim.record({"k": "raft.leader", "node": self.id, "term": 0, "votes": 1})
        self.set_state(LEADER, reason)
        self._ship()

    def _become_backup(self, reason: str) -> None:
        if self.primary:
            self.sim.record({"k": "raft.stepdown", "node": self.id, "term": 0,
                             "why": "higher_term"})
        self.primary = False
        self.ship_timer.cancel()
        self.set_state(FOLLOWER, reason)
        self._arm_promotion()

    @property
    def promotion_ms(self) -> float:
        # Staggered by rank, so the first backup's heartbeats reach the others before
        # they promote themselves too.
        return float(self.p["promote_after_ms"] + self.p["replication_ms"] * max(0, self.rank - 1))

    def _arm_promotion(self) -> None:
        self.promote_timer.start(self.promotion_ms)

    def on_crash(self) -> None:
        if self.primary:
            self.sim.record({"k": "raft.stepdown", "node": self.id, "term": 0,
                             "why": "crashed"})

    def _promote(self) -> None:
        if not self.primary:
            self._become_primary(f"no primary heard for {self.promotion_ms:g} ms")

    def _ship(self) -> None:
        if not self.primary:
            return
        for peer in self.peers:
            base = min(self.sent[peer], len(self.log))
            self.send_peer(peer, {"type": "replicate", "base": base,
                                  "prev": self.log[base - 1]["op"] if base else None,
                                  "ops": self.log[base:], "rank": self.rank})
            self.sent[peer] = len(self.log)
        self.ship_timer.start(self.p["replication_ms"])

    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        self.handled += 1
        if not self.primary:
            call.reply(not_leader(None))
            return
        cmd = dict(call.req.headers or {})
        if "op" not in cmd:
            call.reply(m.BUSINESS_ERROR)
            return
        # A retry of a recent put is not applied twice.
        if all(c["op"] != cmd["op"] for c in self.log[-50:]):
            self.log.append(cmd)
            self.sim.record({"k": "raft.apply", "node": self.id, "index": len(self.log),
                             "op": cmd["op"], "term": 0})
        call.reply(m.OK)  # acknowledged before any backup has it

    def on_peer(self, src: str, msg: PeerMessage) -> None:
        self.handled += 1
        if msg["type"] == "need":
            if self.primary:
                self.sent[src] = msg["have"]
            return
        if msg["rank"] > self.rank and self.primary:
            return  # a later primary: it steps down when it hears from us
        if self.primary:
            self._become_backup(f"primary {src} is listed first")
        self._arm_promotion()
        base, prev = msg["base"], msg["prev"]
        if base > len(self.log) or (base and self.log[base - 1]["op"] != prev):
            self.send_peer(src, {"type": "need", "have": 0 if base <= len(self.log) else
                                 len(self.log), "rank": self.rank})
            return
        ops: list[dict[str, Any]] = msg["ops"]
        # Keep what we share with the primary; what follows is overwritten by its log.
        same = base
        while (same < len(self.log) and same - base < len(ops)
               and self.log[same]["op"] == ops[same - base]["op"]):
            same += 1
        if same < len(self.log):  # a mismatch, or more than the primary has
            gone = len(self.log) - same
            self.discarded += gone
            self.sim.record({"k": "raft.truncate", "node": self.id, "role": FOLLOWER,
                             "from": same + 1, "terms": [0] * gone})
            self.note(f"{self.id} discarded {gone} acknowledged puts that primary {src} "
                      "never had")
            del self.log[same:]
        for cmd in ops[len(self.log) - base:]:
            self.log.append(cmd)
            self.sim.record({"k": "raft.apply", "node": self.id, "index": len(self.log),
                             "op": cmd["op"], "term": 0})

    def role_rank(self, role: str) -> float | None:
        if role == "leader" and self.primary:
            return 1.0
        if role == "follower" and not self.primary:
            return 0.0
        return None

    def sample(self, window_ms: float) -> dict[str, Any]:
        return {"role": "down" if self.down else (LEADER if self.primary else FOLLOWER),
                "log": len(self.log), "paused": self.paused}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.handled, "utilisation": 0.0, "max_queue": 0,
                "log": len(self.log), "discarded": self.discarded}
