"""Raft leader election: a ``raft_elector`` in a cluster group elects one leader per term.

Covers the election half of Raft (Ongaro & Ousterhout 2014, §5.2; thesis §9.6 for pre-vote
and check-quorum), with no log. Every member starts as a follower with a randomised election
timeout, drawn uniformly from ``election_timeout_ms`` at each reset. A follower that hears
no heartbeat for that long campaigns: with ``pre_vote`` it first asks whether it could win
(a pre-vote changes no term and no vote), then becomes a candidate (term + 1, a vote for
itself) and asks for votes. A member grants one vote per term, to the first candidate that
asks, and ``current_term`` and ``voted_for`` are durable: they are on disk before the vote
is sent, so a restarted member cannot vote twice in a term (``durable_vote`` false makes
``voted_for`` volatile, the bug that breaks Election Safety). A candidate with a majority
leads: it sends heartbeats every ``heartbeat_ms`` and runs the singleton job (one tick per
``job_period_ms`` on its own clock). Any message with a higher term turns a member back into
a follower of that term. With ``check_quorum`` a leader that has not heard from a majority
within an election timeout steps down, and a member that heard from a leader within the
minimum election timeout ignores vote requests (the leader lease that stops a rejoining
node from deposing a healthy leader).

``timers`` picks the timer values: ``custom`` uses ``heartbeat_ms`` and
``election_timeout_ms`` as set; ``etcd`` is etcd's defaults (heartbeat 100 ms, election
timeout 1,000 ms randomised to [1,000, 2,000)), which put a failover near 1.1 s. A vote is
on disk before it is sent: ``vote_fsync_ms`` is how long that write takes (0: instant), the
granted answer waits for it (votes granted meanwhile share the one sync, as a group commit).

``election: static`` is the baseline: the first member leads in term 1 forever and nobody
campaigns (a static primary).

What the checks read is recorded on the run whatever the trace level
(:meth:`Simulation.record`): ``raft.term`` (a member's term changed), ``vote.grant``,
``raft.candidate``, ``raft.split``, ``raft.leader``, ``raft.stepdown`` (``why``: crashed,
lost_quorum, higher_term, same_term_leader) and ``job.tick``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from patterns.engine.cluster import CLUSTER_PARAMS, PeerMessage
from patterns.engine.node import Node, register_kind
from patterns.params import Param, ParamError

FOLLOWER = "follower"
PRE_CANDIDATE = "pre-candidate"
CANDIDATE = "candidate"
LEADER = "leader"
# Timer presets: (heartbeat ms, [election timeout min, max) ms); "custom" reads the params.
ETCD_TIMERS = (100.0, [1000.0, 2000.0])
TIMER_PRESETS = ("custom", "etcd")


@register_kind
class RaftElector(Node):
    KIND = "raft_elector"
    LABEL = "Raft elector"
    DESCRIPTION = ("A member of a Raft cluster that takes part in leader elections; the "
                   "leader runs a singleton job.")
    PARAMS = (
        *CLUSTER_PARAMS,
        Param("heartbeat_ms", "float", 50.0, unit="ms", min=0, exclusive_min=True,
              max=600_000, help="The leader's heartbeat period."),
        Param("election_timeout_ms", "list", [150.0, 300.0], item="float", min=0,
              max=3_600_000, max_items=2, unit="ms",
              help="[min, max]: each reset draws the timeout uniformly from this range."),
        Param("pre_vote", "bool", True,
              help="Ask whether an election could be won before raising the term."),
        Param("check_quorum", "bool", True,
              help="A leader without a majority steps down; members in a leader's lease "
                   "ignore vote requests."),
        Param("durable_vote", "bool", True,
              help="voted_for is on disk (false: lost in a crash, so a restarted member can "
                   "vote twice in one term)."),
        Param("job_period_ms", "float", 1000.0, unit="ms", min=1, max=3_600_000,
              help="The singleton job ticks once per period, on the leader only."),
        Param("election", "choice", "raft", choices=("raft", "static"),
              help="raft, or static: the first member is the primary forever (baseline)."),
        Param("timers", "choice", "custom", choices=TIMER_PRESETS,
              help="custom: heartbeat_ms and election_timeout_ms as set; etcd: heartbeat "
                   "100 ms, election timeout [1000, 2000) ms."),
        Param("vote_fsync_ms", "float", 0.0, unit="ms", min=0, max=60_000,
              help="Time to write a granted vote to disk before answering."),
    )
    DURABLE: ClassVar[tuple[str, ...]] = ("current_term", "voted_for")
    PAUSABLE = True
    ROLES = (LEADER, FOLLOWER, CANDIDATE)

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        if not params["durable_vote"]:
            self.durable = ("current_term",)
        self.election_timer = self.timer(self._on_election_timeout)
        self.heartbeat_timer = self.timer(self._on_heartbeat)
        self.quorum_timer = self.timer(self._on_quorum_check)
        self.job_timer = self.timer(self._on_job_tick)
        self.vote_sync_timer = self.timer(self._on_vote_synced)
        self.handled = 0
        self.init_state()

    @property
    def heartbeat_ms(self) -> float:
        return ETCD_TIMERS[0] if self.p["timers"] == "etcd" else float(self.p["heartbeat_ms"])

    @property
    def election_bounds(self) -> list[float]:
        """[min, max] of the election timeout, as the ``timers`` preset says."""
        if self.p["timers"] == "etcd":
            return ETCD_TIMERS[1]
        bounds: list[float] = self.p["election_timeout_ms"]
        return bounds

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if not params["cluster"]:
            raise ParamError("cluster", "a raft_elector must join a cluster (name one)")
        bounds = params["election_timeout_ms"]
        if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
            raise ParamError("election_timeout_ms", "must be [min, max] with 0 < min ≤ max")

    def init_state(self) -> None:
        self.current_term = 0
        self.voted_for: str | None = None
        self.role = FOLLOWER
        self.leader_id: str | None = None
        self.votes: dict[str, None] = {}
        self.heard_leader_at = float("-inf")  # local ms
        self.acks: dict[str, None] = {}
        self.timeout_ms = 0.0
        self.unsynced: list[tuple[str, PeerMessage]] = []  # vote answers awaiting the fsync

    # -- start and restart -------------------------------------------------------------------
    @property
    def static(self) -> bool:
        return bool(self.p["election"] == "static")

    @property
    def primary(self) -> str:
        assert self.cluster is not None
        return self.cluster.members[0].id

    def start(self) -> None:
        if self.cluster is None:
            raise ValueError(f"{self.id}: a raft_elector needs a cluster (params.cluster)")
        if self.static and self.id == self.primary:
            self._set_term(1)
            self.voted_for = self.id
            self._become_leader("the static primary")
            return
        self.set_state(FOLLOWER, "started")
        self._reset_election_timer()

    def on_crash(self) -> None:
        if self.role == LEADER:
            self.sim.record({"k": "raft.stepdown", "node": self.id, "term": self.current_term,
                             "why": "crashed"})

    def on_recover(self) -> None:
        if self.static and self.id == self.primary:
            self._become_leader("the static primary restarted")
            return
        self.set_state(FOLLOWER, f"restarted with term {self.current_term}, voted for "
                                 f"{self.voted_for or 'nobody'}")
        self._reset_election_timer()

    # -- timers -----------------------------------------------------------------------------
    def _reset_election_timer(self) -> None:
        if self.static:
            return
        low, high = self.election_bounds
        self.timeout_ms = low + (high - low) * self.rng.random()
        self.election_timer.start(self.timeout_ms)

    def _on_election_timeout(self) -> None:
        if self.role == LEADER:
            return
        if self.role == CANDIDATE:
            self.sim.record({"k": "raft.split", "node": self.id, "term": self.current_term})
            self.note(f"split vote in term {self.current_term}: "
                      f"{len(self.votes)}/{self._size} votes")
        reason = f"no heartbeat for {self.timeout_ms:.0f} ms"
        if self.p["pre_vote"]:
            self.role = PRE_CANDIDATE
            self.votes = {self.id: None}
            self.set_state(PRE_CANDIDATE, f"{reason}: pre-vote for term {self.current_term + 1}")
            self._reset_election_timer()
            if not self._maybe_win_pre_vote():
                self.broadcast({"type": "prevote.req", "term": self.current_term + 1})
        else:
            self._campaign(reason)

    def _on_heartbeat(self) -> None:
        if self.role != LEADER:
            return
        self.broadcast({"type": "append", "term": self.current_term})
        self.heartbeat_timer.start(self.heartbeat_ms)

    def _on_quorum_check(self) -> None:
        if self.role != LEADER or self.static:
            return
        heard = len(self.acks) + 1
        self.acks = {}
        if heard < self._majority:
            self._become_follower(self.current_term, None,
                                  f"lost quorum: heard from {heard}/{self._size} in "
                                  f"{self.election_bounds[0]:g} ms", "lost_quorum")
            return
        self.quorum_timer.start(self.election_bounds[0])

    def _on_job_tick(self) -> None:
        if self.role != LEADER:
            return
        period = self.p["job_period_ms"]
        now = self.local_now()
        self.sim.record({"k": "job.tick", "node": self.id, "term": self.current_term,
                         "slot": round(now / period)})
        self._arm_job()

    def _arm_job(self) -> None:
        period = self.p["job_period_ms"]
        now = self.local_now()
        # The boundary just reached counts as reached: a reading a rounding error short of
        # it must not arm a timer of ~0 ms (which would fire at the same instant forever).
        slot = math.floor(now / period + 1e-9) + 1
        self.job_timer.start(slot * period - now)

    # -- roles ------------------------------------------------------------------------------
    @property
    def _size(self) -> int:
        assert self.cluster is not None
        return self.cluster.size

    @property
    def _majority(self) -> int:
        assert self.cluster is not None
        return self.cluster.majority

    def _set_term(self, term: int) -> None:
        if term != self.current_term:
            self.sim.record({"k": "raft.term", "node": self.id, "from": self.current_term,
                             "to": term})
            self.current_term = term
            self.voted_for = None

    def _grant(self, candidate: str) -> None:
        self.voted_for = candidate
        self.sim.record({"k": "vote.grant", "node": self.id, "candidate": candidate,
                         "term": self.current_term})

    def _campaign(self, reason: str) -> None:
        self._set_term(self.current_term + 1)
        self._grant(self.id)
        self.role = CANDIDATE
        self.leader_id = None
        self.votes = {self.id: None}
        self.sim.record({"k": "raft.candidate", "node": self.id, "term": self.current_term})
        self.set_state(CANDIDATE, f"{reason}: term {self.current_term}, self-vote")
        self._reset_election_timer()
        if len(self.votes) >= self._majority:
            self._become_leader(f"1/{self._size} votes in term {self.current_term}")
            return
        self.broadcast({"type": "vote.req", "term": self.current_term})

    def _maybe_win_pre_vote(self) -> bool:
        if len(self.votes) >= self._majority:
            self._campaign(f"{len(self.votes)}/{self._size} pre-votes")
            return True
        return False

    def _become_leader(self, reason: str) -> None:
        self.role = LEADER
        self.leader_id = self.id
        self.acks = {}
        self.election_timer.cancel()
        self.sim.record({"k": "raft.leader", "node": self.id, "term": self.current_term,
                         "votes": len(self.votes)})
        self.set_state(LEADER, reason)
        self._on_heartbeat()
        if self.p["check_quorum"] and not self.static:
            self.quorum_timer.start(self.election_bounds[0])
        self._arm_job()

    def _become_follower(self, term: int, leader: str | None, reason: str,
                         why: str = "higher_term") -> None:
        was_leader = self.role == LEADER
        if was_leader:
            self.sim.record({"k": "raft.stepdown", "node": self.id, "term": self.current_term,
                             "why": why, "to_term": term})
            self.heartbeat_timer.cancel()
            self.quorum_timer.cancel()
            self.job_timer.cancel()
            if why == "higher_term":
                self.note(f"{reason}: leader {self.id} steps down")
        self._set_term(term)
        self.role = FOLLOWER
        self.leader_id = leader
        self.set_state(FOLLOWER, reason)
        self._reset_election_timer()

    def _in_lease(self) -> bool:
        """With check_quorum, a member that heard from a leader within the minimum election
        timeout (or leads) does not help anyone depose that leader."""
        if not self.p["check_quorum"]:
            return False
        if self.role == LEADER:
            return True
        lease: float = self.election_bounds[0]
        return self.local_now() - self.heard_leader_at < lease

    def role_rank(self, role: str) -> float | None:
        if role == self.role or (role == CANDIDATE and self.role == PRE_CANDIDATE):
            return float(self.current_term) if role == LEADER else 0.0
        return None

    # -- messages ---------------------------------------------------------------------------
    def on_peer(self, src: str, msg: PeerMessage) -> None:
        self.handled += 1
        if self.static:
            return
        kind, term = msg["type"], msg["term"]
        if kind == "append":
            self._on_append(src, term)
        elif kind == "append.resp":
            if term > self.current_term:
                self._become_follower(term, None, f"{src} answered with term {term}")
            elif self.role == LEADER and term == self.current_term:
                self.acks[src] = None
        elif kind == "prevote.req":
            # As etcd: a pre-vote for a later term, or for this term from a member we could
            # still vote for while we know no leader.
            grant = (term > self.current_term
                     or (term == self.current_term and self.leader_id is None
                         and self.voted_for in (None, src))) and not self._in_lease()
            self.send_peer(src, {"type": "prevote.resp", "granted": grant,
                                 "term": term if grant else self.current_term})
        elif kind == "prevote.resp":
            if msg["granted"]:
                if self.role == PRE_CANDIDATE and term == self.current_term + 1:
                    self.votes[src] = None
                    self._maybe_win_pre_vote()
            elif term > self.current_term:
                self._become_follower(term, None, f"{src} is at term {term}")
        elif kind == "vote.req":
            self._on_vote_request(src, term)
        elif kind == "vote.resp":
            if term > self.current_term:
                self._become_follower(term, None, f"{src} is at term {term}")
            elif self.role == CANDIDATE and term == self.current_term and msg["granted"]:
                self.votes[src] = None
                if len(self.votes) >= self._majority:
                    self._become_leader(f"{len(self.votes)}/{self._size} votes in term "
                                        f"{self.current_term}")

    def _on_append(self, src: str, term: int) -> None:
        if self._accept_leader(src, term):
            self.send_peer(src, {"type": "append.resp", "term": self.current_term,
                                 "success": True})

    def _accept_leader(self, src: str, term: int, **refusal: Any) -> bool:
        """Take an append (or heartbeat) from ``src`` as coming from this term's leader.

        A stale term is refused (with ``refusal`` added to the answer) and False returned;
        otherwise the node follows ``src``, pushes its election timeout back and returns
        True: the caller goes on with the append's contents.
        """
        if term < self.current_term:
            self.send_peer(src, {"type": "append.resp", "term": self.current_term,
                                 "success": False, **refusal})
            return False
        if self.role == LEADER and term == self.current_term:
            # Two leaders in one term: only a broken vote makes this possible.
            self._become_follower(term, src, f"{src} also leads term {term}",
                                  "same_term_leader")
        elif term > self.current_term or self.role != FOLLOWER or self.leader_id != src:
            self._become_follower(term, src, f"heartbeat from leader {src} (term {term})")
        else:
            self._reset_election_timer()
        self.heard_leader_at = self.local_now()
        return True

    def _on_vote_request(self, src: str, term: int) -> None:
        if term > self.current_term:
            if self._in_lease():
                return  # ignored: a leader we heard from recently is alive
            self._become_follower(term, None, f"{src} campaigns in term {term}")
        granted = term == self.current_term and self.voted_for in (None, src)
        if granted:
            self._grant(src)
            self._reset_election_timer()
        if self.trace.full:
            self.emit({"k": "vote.request", "node": self.id, "candidate": src, "term": term,
                       "granted": granted})
        answer = {"type": "vote.resp", "term": self.current_term, "granted": granted}
        if granted and (self.p["vote_fsync_ms"] > 0.0 or self.unsynced):
            # The vote must be on disk before it is sent.
            self.unsynced.append((src, answer))
            if not self.vote_sync_timer.armed:
                self.vote_sync_timer.start(self.p["vote_fsync_ms"])
            return
        self.send_peer(src, answer)

    def _on_vote_synced(self) -> None:
        synced, self.unsynced = self.unsynced, []
        for dst, answer in synced:
            self.send_peer(dst, answer)

    # -- reporting --------------------------------------------------------------------------
    def sample(self, window_ms: float) -> dict[str, Any]:
        return {"role": "down" if self.down else self.role, "term": self.current_term,
                "paused": self.paused}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.handled, "utilisation": 0.0, "max_queue": 0,
                "term": self.current_term, "role": self.role}
