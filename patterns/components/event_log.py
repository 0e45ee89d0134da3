"""A partitioned, retained event log with consumer groups (Kafka-like broker).

``event_log`` stores what producers send in ``partitions`` append-only partitions: a record
with a key goes to partition ``murmur2(key) mod P``, as the Kafka Java client's default
partitioner puts it, so one key's records keep their order in one partition; a record
without a key goes round robin. Each append gets the next offset of its partition and is
kept ``retention_s``; older records expire (the partition's start offset moves up). The
producer is answered once the record is appended.

The broker is also the group coordinator of every consumer group that reads it (a
``log_consumer`` calls it over its edge; see :mod:`patterns.components.log_consumer`):

- ``join`` / ``sync`` / ``heartbeat`` / ``leave``: members and generations. A group goes
  STABLE → PREPARING_REBALANCE (a member joined, left, or was silent for its session
  timeout) → COMPLETING_REBALANCE (every member has rejoined: generation + 1, assignment
  computed) → STABLE (the first member fetched its assignment, as the leader's sync does).
  Heartbeats during a rebalance answer "rebalance in progress", which is how members learn
  they must rejoin. A new group waits ``initial_rebalance_delay_ms`` for more members
  before its first generation.
  Assignors: ``range`` (eager: contiguous ranges of partitions, members revoke everything
  before rejoining) and ``cooperative_sticky`` (members keep what they own; a partition that
  must move is first revoked by its owner, then handed over in a follow-up rebalance).
  As a simplification the coordinator computes the assignment (Kafka's group leader does)
  and the sync answer carries the committed offsets and the log's bounds (Kafka's
  OffsetFetch and ListOffsets are separate requests).
- ``fetch``: records from the member's positions, up to its ``max`` spread over its
  partitions; with nothing to return the broker holds the fetch up to ``wait_ms`` (long
  poll). Fetches are not fenced (Kafka's are not either): a zombie can still read.
- ``commit``: committed offsets per (group, partition). With ``fence_commits`` (Kafka's
  behaviour) a commit from an unknown member or a past generation is rejected, as is one
  while the group completes a rebalance.

Durable (on disk): the partitions, the committed offsets and each group's generation; a
crash forgets the members, held fetches and joins (members find out and rejoin).

Recorded for the checks (``sim.record``): ``log.gen`` (a generation and its assignment),
``log.evict`` (a member removed for silence, or by a reset), ``log.reset`` (``reset_offsets``
set mid-run: a group's committed offsets moved), ``log.commit`` (each partition of each commit,
accepted or not, with the generation it claimed). ``metric`` samples carry ``lag``: per
group, per partition, log end − committed offset.
"""

from __future__ import annotations

import bisect
import math
from array import array
from typing import Any

from patterns.engine import messages as m
from patterns.engine.clock import LocalTimer
from patterns.engine.network import Call
from patterns.engine.node import Node, register_kind
from patterns.params import Param

STABLE = "STABLE"
PREPARING = "PREPARING_REBALANCE"
COMPLETING = "COMPLETING_REBALANCE"
EMPTY = "EMPTY"
RANGE = "range"
COOPERATIVE = "cooperative_sticky"
ASSIGNORS = (RANGE, COOPERATIVE)

# Replies of the coordinator that send a member back to (re)joining.
REBALANCING = m.Reply(m.REJECTED, status=409, reason="rebalance in progress")
UNKNOWN_MEMBER = m.Reply(m.REJECTED, status=410, reason="unknown member id")
ILLEGAL_GENERATION = m.Reply(m.REJECTED, status=410, reason="illegal generation")
CONSUMER_OPS = ("join", "sync", "heartbeat", "leave", "fetch", "commit")
RESET_TO = ("earliest", "latest", "time")


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (the Java client's default partitioner), as a signed int32."""
    mask = 0xFFFFFFFF
    mul = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    body = length - length % 4
    for i in range(0, body, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * mul) & mask
        k ^= k >> 24
        k = (k * mul) & mask
        h = ((h * mul) & mask) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[body + 2] << 16
    if rest >= 2:
        h ^= data[body + 1] << 8
    if rest >= 1:
        h ^= data[body]
        h = (h * mul) & mask
    h ^= h >> 13
    h = (h * mul) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """``toPositive(murmur2(key)) mod P``, as Kafka's default partitioner places a key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Partition:
    """One append-only partition: offset i holds keys[i], seqs[i], appended at times[i], and
    the event it carries, events[i] (its flow and headers: type, msg_id…; None for a plain
    keyed record)."""

    __slots__ = ("events", "keys", "seqs", "start", "times")

    def __init__(self) -> None:
        self.keys: list[str | None] = []
        self.seqs: list[int] = []
        self.times: array[float] = array("d")
        self.events: list[tuple[str | None, dict[str, Any]] | None] = []
        # The first offset still retained; records below it expired.
        self.start = 0

    @property
    def end(self) -> int:
        return len(self.keys)

    def read(self, offset: int, count: int, partition: int) -> list[tuple[Any, ...]]:
        stop = min(self.end, offset + count)
        keys, seqs, times, events = self.keys, self.seqs, self.times, self.events
        return [(partition, i, keys[i], seqs[i], times[i], events[i])
                for i in range(offset, stop)]


class _Member:
    __slots__ = ("joined", "mid", "node", "owned", "session_ms", "timer")

    def __init__(self, mid: str, node: str, session_ms: float, timer: LocalTimer) -> None:
        self.mid = mid
        self.node = node
        self.session_ms = session_ms
        self.timer = timer
        self.joined: Call | None = None  # its join, held until the join phase completes
        self.owned: list[int] = []  # what it says it owns (cooperative)


class _Group:
    __slots__ = ("assignment", "assignor", "delay", "first_join", "fresh", "handed", "members",
                 "moved", "name", "next_id", "state")

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = EMPTY
        self.members: dict[str, _Member] = {}
        self.assignment: dict[str, list[int]] = {}
        self.assignor = RANGE
        self.delay: LocalTimer | None = None  # the initial rebalance delay, while it runs
        # When the first member rejoined in this rebalance: eager members stop there.
        self.first_join: float | None = None
        # Partitions given to a member that did not own them, and partitions that must be
        # revoked by their owner before they move (cooperative), in the last generation.
        self.handed = 0
        self.moved = 0
        self.fresh = True  # forming from empty: nothing was assigned before
        self.next_id = 0


class _Fetch:
    __slots__ = ("call", "group", "max", "positions", "timer")

    def __init__(self, call: Call, group: str, positions: dict[int, int], count: int) -> None:
        self.call = call
        self.group = group
        self.positions = positions
        self.max = count
        self.timer: LocalTimer | None = None


def range_assign(members: list[str], partitions: int) -> dict[str, list[int]]:
    """Kafka's RangeAssignor: members sorted, contiguous ranges, the first ones one more."""
    out: dict[str, list[int]] = {}
    count = len(members)
    per, extra = divmod(partitions, count)
    start = 0
    for i, member in enumerate(sorted(members)):
        size = per + (1 if i < extra else 0)
        out[member] = list(range(start, start + size))
        start += size
    return out


def sticky_assign(owned: dict[str, list[int]], partitions: int) -> dict[str, list[int]]:
    """A sticky balance: each member keeps what it owns up to its quota; the rest go to
    the members below theirs. Returns the target assignment (before revocations)."""
    members = sorted(owned)
    count = len(members)
    per, extra = divmod(partitions, count)
    # The members that own most get the +1 quotas, so as little as possible moves.
    by_owned = sorted(members, key=lambda mem: (-len(owned[mem]), mem))
    quota = {mem: per + (1 if i < extra else 0) for i, mem in enumerate(by_owned)}
    out: dict[str, list[int]] = {mem: [] for mem in members}
    taken: set[int] = set()
    for mem in members:
        for p in sorted(owned[mem]):
            if p < partitions and p not in taken and len(out[mem]) < quota[mem]:
                out[mem].append(p)
                taken.add(p)
    free = [p for p in range(partitions) if p not in taken]
    for mem in members:
        while len(out[mem]) < quota[mem] and free:
            out[mem].append(free.pop(0))
    return {mem: sorted(parts) for mem, parts in out.items()}


def withhold_owned(target: dict[str, list[int]],
                   owned: dict[str, list[int]]) -> dict[str, list[int]]:
    """The cooperative protocol's two steps: a partition another member still owns is not
    handed over yet; its owner revokes it first, then rejoins, and the next generation
    gives it away."""
    claimed = {p: mid for mid, parts in owned.items() for p in parts}
    return {mid: [p for p in parts if claimed.get(p, mid) == mid]
            for mid, parts in target.items()}


@register_kind
class EventLog(Node):
    KIND = "event_log"
    LABEL = "Event log"
    DESCRIPTION = ("A partitioned, retained log (Kafka-like): appends get offsets per "
                   "partition, consumer groups read at their own offsets and can replay.")
    PARAMS = (
        Param("partitions", "int", 6, min=1, max=1000,
              help="Partitions of the topic (Kafka's default: 1). A key always goes to "
                   "the same one: murmur2(key) mod partitions."),
        Param("retention_s", "float", 600.0, unit="s", min=1, max=31_536_000,
              help="How long records are kept (Kafka: 7 days; here 10 min)."),
        Param("initial_rebalance_delay_ms", "float", 3000.0, unit="ms", min=0, max=300_000,
              help="A new group waits this long for more members before its first "
                   "generation (Kafka broker: 3 s)."),
        Param("fence_commits", "bool", True,
              help="Reject commits from unknown members or past generations (Kafka does); "
                   "false shows what a zombie's commit does without fencing."),
        Param("reset_offsets", "object", None, nullable=True, fields=(
            Param("group", "str", "", help="The consumer group whose offsets move."),
            Param("to", "choice", "earliest", choices=RESET_TO,
                  help="The log's start, its end, or the first record at time_s."),
            Param("time_s", "float", 0.0, unit="s", min=0, max=31_536_000,
                  help="With to = time: the append time to rewind or skip to."),
        ), help="Set mid-run: move a group's committed offsets (a consumer's seek(), "
                "kafka-consumer-groups --reset-offsets); its members are removed and rejoin "
                "from there."),
    )
    DURABLE = ("logs", "committed", "generations")
    PAUSABLE = True

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.appended = 0
        self.appended_by_event: dict[str, int] = {}  # records carrying an event, by type
        self.rejected = 0
        self.stale_commits_rejected = 0
        self.stale_commits_accepted = 0
        self.expired = 0
        self._rr = 0
        self._last_appended = 0
        self.served = 0  # records returned by fetches
        self._last_served = 0
        # What an observer sees every second (kept whatever happens to the broker): per
        # group, (t, lag, fetch lag and log end offset per partition).
        self.lag_history: dict[str, list[tuple[float, list[int], list[int], list[int]]]] = {}
        self.logs: list[Partition] = [Partition() for _ in range(params["partitions"])]
        self.committed: dict[str, dict[int, int]] = {}
        self.generations: dict[str, int] = {}
        self.init_state()

    def init_state(self) -> None:
        self.groups: dict[str, _Group] = {}
        self.waiting: list[_Fetch] = []
        # Where each group last fetched each partition from (what a broker sees of positions).
        self.fetched: dict[str, dict[int, int]] = {}

    def start(self) -> None:
        self.every(1000.0, self._observe)

    @property
    def partitions(self) -> int:
        return len(self.logs)

    # -- serving -------------------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        op = call.req.op
        if op in CONSUMER_OPS:
            getattr(self, f"_{op}")(call, call.req.headers or {})
            return
        failure = self.injected_failure() if self.fault_error_rate else None
        if failure is not None:
            call.reply(failure)
            return
        self._append(call.req)
        call.reply(m.OK)

    def _append(self, req: m.Request) -> None:
        key = req.key
        if key is None:
            p = self._rr % self.partitions
            self._rr += 1
        else:
            p = partition_for(key, self.partitions)
        log = self.logs[p]
        log.keys.append(key)
        log.seqs.append(int((req.headers or {}).get("seq", 0)))
        log.times.append(req.created)
        headers = req.headers
        if headers and "event" in headers:
            log.events.append((req.flow, headers))
            event = headers["event"]
            self.appended_by_event[event] = self.appended_by_event.get(event, 0) + 1
        else:
            log.events.append(None)
        self.appended += 1
        if self.waiting:
            for fetch in [f for f in self.waiting if p in f.positions]:
                self._answer_fetch(fetch)

    # -- fetching ------------------------------------------------------------------------------
    def _fetch(self, call: Call, h: dict[str, Any]) -> None:
        positions: dict[int, int] = {int(p): int(o) for p, o in h["positions"].items()}
        group = str(h["group"])
        seen = self.fetched.setdefault(group, {})
        for p, offset in positions.items():
            seen[p] = offset
        fetch = _Fetch(call, group, positions, int(h["max"]))
        if any(self.logs[p].end > offset for p, offset in positions.items()) \
                or not positions:
            self._answer_fetch(fetch)
            return
        timer = fetch.timer = self.timer(lambda: self._answer_fetch(fetch))
        timer.start(float(h.get("wait_ms", 500.0)))
        self.waiting.append(fetch)

    def _answer_fetch(self, fetch: _Fetch) -> None:
        if fetch.timer is not None:
            fetch.timer.cancel()
            self._timers.remove(fetch.timer)
            fetch.timer = None
            self.waiting.remove(fetch)
        records: list[tuple[Any, ...]] = []
        expired: dict[int, int] = {}
        ends = {p: self.logs[p].end for p in fetch.positions}
        parts = sorted(fetch.positions)
        if parts:
            share = math.ceil(fetch.max / len(parts))
            budget = fetch.max
            for p in parts:
                log = self.logs[p]
                offset = fetch.positions[p]
                if offset < log.start:
                    expired[p] = log.start  # out of range: the consumer resets to the start
                    offset = log.start
                got = log.read(offset, min(share, budget), p)
                budget -= len(got)
                records.extend(got)
        self.served += len(records)
        # Like Kafka's fetch response, it carries each partition's high watermark (its end).
        fetch.call.reply(m.Reply(m.SUCCEEDED, value={"records": records, "expired": expired,
                                                     "ends": ends}))

    # -- committing ----------------------------------------------------------------------------
    def _commit(self, call: Call, h: dict[str, Any]) -> None:
        name, mid, gen = str(h["group"]), str(h["mid"]), int(h["gen"])
        group = self.groups.get(name)
        refusal: m.Reply | None = None
        if group is None or mid not in group.members:
            refusal = UNKNOWN_MEMBER
        elif gen != self.generations.get(name, 0):
            refusal = ILLEGAL_GENERATION
        elif group.state == COMPLETING:
            refusal = REBALANCING
        stale = refusal is not None and refusal is not REBALANCING
        if refusal is not None and not self.p["fence_commits"]:
            refusal = None  # the unfenced broker takes it anyway
        offsets = self.committed.setdefault(name, {})
        for p, offset in h["offsets"].items():
            self.sim.record({"k": "log.commit", "node": self.id, "group": name,
                             "member": h["member"], "gen": gen, "p": int(p),
                             "offset": int(offset), "ok": refusal is None,
                             **({"why": refusal.reason} if refusal is not None else {})})
            if refusal is None:
                offsets[int(p)] = int(offset)
        if stale:
            if refusal is None:
                self.stale_commits_accepted += 1
                self.note(f"{h['member']}'s commit with generation {gen} accepted although "
                          f"{name} is at generation {self.generations.get(name, 0)}: "
                          "no fencing")
            else:
                self.stale_commits_rejected += 1
                self.note(f"{h['member']}'s commit rejected ({refusal.reason}): it was "
                          f"removed from {name} and is a zombie")
        if group is not None and mid in group.members:
            group.members[mid].timer.start(group.members[mid].session_ms)
        call.reply(refusal or m.OK)

    # -- group membership ----------------------------------------------------------------------
    def _group(self, name: str) -> _Group:
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = _Group(name)
            self.generations.setdefault(name, 0)
        return group

    def _join(self, call: Call, h: dict[str, Any]) -> None:
        group = self._group(str(h["group"]))
        mid = h.get("mid")
        member = group.members.get(mid) if mid else None
        if member is None:
            group.next_id += 1
            mid = f"{h['member']}-{self.generations[group.name]}.{group.next_id}"
            timer = self.timer(lambda: self._expire(group.name, str(mid)))
            member = group.members[mid] = _Member(mid, str(h["member"]),
                                                  float(h["session_ms"]), timer)
        group.assignor = str(h.get("assignor", RANGE))
        member.joined = call
        member.owned = [int(p) for p in h.get("owned", [])]
        if group.first_join is None and group.assignment.get(str(mid)):
            group.first_join = self.kernel.now  # an owner stops: its partitions pause
        member.timer.start(member.session_ms)
        if group.state == EMPTY or group.delay is not None:
            # A new group waits for more members, each join pushing the first generation
            # back by the delay (Kafka's group.initial.rebalance.delay.ms).
            if group.state == EMPTY:
                group.fresh = True
                self._set_group_state(group, PREPARING, f"{member.node} joined a new group")
            if group.delay is None:
                group.delay = self.timer(lambda: self._delay_over(group))
            group.delay.start(self.p["initial_rebalance_delay_ms"])
            return
        if group.state != PREPARING:
            self._prepare(group, f"{member.node} (re)joined")
        self._maybe_complete(group)

    def _delay_over(self, group: _Group) -> None:
        if group.delay is not None:
            self._timers.remove(group.delay)
            group.delay = None
        self._maybe_complete(group)

    def _prepare(self, group: _Group, reason: str) -> None:
        self._set_group_state(group, PREPARING, reason)

    def _maybe_complete(self, group: _Group) -> None:
        """Complete the join phase once every member has rejoined."""
        if group.state != PREPARING or group.delay is not None or not group.members:
            return
        if any(member.joined is None for member in group.members.values()):
            return
        old = self.generations[group.name]
        gen = self.generations[group.name] = old + 1
        mids = list(group.members)
        if group.assignor == COOPERATIVE:
            owned = {mid: group.members[mid].owned for mid in mids}
            target = sticky_assign(owned, self.partitions)
            assignment = withhold_owned(target, owned)
            group.moved = sum(len(parts) for parts in target.values()) \
                - sum(len(parts) for parts in assignment.values())
            group.handed = sum(1 for mid, parts in assignment.items() for p in parts
                               if p not in owned[mid])
        else:
            assignment = range_assign(mids, self.partitions)
            group.moved = group.handed = self.partitions
        group.assignment = assignment
        self.sim.record({"k": "log.gen", "node": self.id, "group": group.name, "gen": gen,
                         "assignor": group.assignor,
                         "members": {group.members[mid].node: parts
                                     for mid, parts in assignment.items()}})
        self._set_group_state(group, COMPLETING,
                              f"all {len(mids)} members joined: generation {old} → {gen}")
        for mid in mids:
            member = group.members[mid]
            call, member.joined = member.joined, None
            assert call is not None
            call.reply(m.Reply(m.SUCCEEDED, value={"mid": mid, "gen": gen}))

    def _sync(self, call: Call, h: dict[str, Any]) -> None:
        name, mid, gen = str(h["group"]), str(h["mid"]), int(h["gen"])
        group = self.groups.get(name)
        if group is None or mid not in group.members:
            call.reply(UNKNOWN_MEMBER)
            return
        if gen != self.generations[name] or group.state == PREPARING:
            call.reply(REBALANCING)
            return
        member = group.members[mid]
        member.timer.start(member.session_ms)
        parts = group.assignment.get(mid, [])
        committed = self.committed.get(name, {})
        call.reply(m.Reply(m.SUCCEEDED, value={
            "partitions": parts,
            "committed": {p: committed.get(p) for p in parts},
            "start": {p: self.logs[p].start for p in parts},
            "end": {p: self.logs[p].end for p in parts}}))
        if group.state == COMPLETING:
            # The first sync brings the assignment (Kafka: the leader's): the group is stable.
            first, group.first_join = group.first_join, None
            formed, group.fresh = group.fresh, False
            paused = (self.kernel.now - (first or self.kernel.now)) / 1000.0
            if formed:
                why = (f"{name} formed: {len(group.members)} member(s), generation "
                       f"{self.generations[name]}")
            elif group.assignor == COOPERATIVE:
                why = (f"cooperative rebalance: {group.handed} partition(s) handed over, "
                       f"{group.moved} to be revoked first; the others kept flowing")
            else:
                why = f"eager rebalance: {self.partitions} partitions paused {paused:.1f} s"
            self._set_group_state(group, STABLE, why)
            self.note(why)

    def _heartbeat(self, call: Call, h: dict[str, Any]) -> None:
        name, mid, gen = str(h["group"]), str(h["mid"]), int(h["gen"])
        group = self.groups.get(name)
        if group is None or mid not in group.members:
            call.reply(UNKNOWN_MEMBER)
            return
        member = group.members[mid]
        member.timer.start(member.session_ms)
        if group.state == PREPARING:
            call.reply(REBALANCING)
        elif gen != self.generations[name]:
            call.reply(ILLEGAL_GENERATION)
        else:
            call.reply(m.OK)

    def _leave(self, call: Call, h: dict[str, Any]) -> None:
        group = self.groups.get(str(h["group"]))
        mid = str(h["mid"])
        if group is not None and mid in group.members:
            self._remove(group, mid, f"{group.members[mid].node} left {group.name}")
        call.reply(m.OK)

    def set_param(self, name: str, value: Any) -> None:
        self.p[name] = value
        if name == "reset_offsets" and value is not None and not self.down:
            self.reset_offsets(str(value["group"]), str(value["to"]),
                               float(value.get("time_s") or 0.0))

    def reset_offsets(self, name: str, to: str, time_s: float = 0.0) -> None:
        """Move a group's committed offsets. The group's members are removed first (a
        reset needs an inactive group), so none commits over it; they rejoin and read from
        the new offsets."""
        group = self.groups.get(name)
        if group is not None:
            for mid in list(group.members):
                member = group.members[mid]
                self.sim.record({"k": "log.evict", "node": self.id, "group": name,
                                 "member": member.node, "gen": self.generations[name],
                                 "why": "offsets reset"})
                self._remove(group, mid, f"offsets of {name} reset")
        offsets: dict[int, int] = {}
        for p, log in enumerate(self.logs):
            if to == "earliest":
                offsets[p] = log.start
            elif to == "latest":
                offsets[p] = log.end
            else:
                at = bisect.bisect_left(log.times, time_s * 1000.0, lo=log.start)
                offsets[p] = at
        self.committed[name] = offsets
        self.generations.setdefault(name, 0)
        self.sim.record({"k": "log.reset", "node": self.id, "group": name, "to": to,
                         "offsets": {str(p): o for p, o in offsets.items()}})
        where = f"the first record at {time_s:g} s" if to == "time" else f"the {to} offsets"
        self.note(f"{name}'s offsets reset to {where}: {sum(offsets.values())} in all")

    def _expire(self, name: str, mid: str) -> None:
        group = self.groups.get(name)
        if group is None or mid not in group.members:
            return
        member = group.members[mid]
        silent = member.session_ms / 1000.0
        gen = self.generations[name]
        self.sim.record({"k": "log.evict", "node": self.id, "group": name,
                         "member": member.node, "gen": gen})
        self.note(f"{member.node} silent {silent:g} s: removed from {name}, "
                  f"generation {gen} → {gen + 1}")
        self._remove(group, mid, f"{member.node} missed its session timeout")

    def _remove(self, group: _Group, mid: str, reason: str) -> None:
        member = group.members.pop(mid)
        member.timer.cancel()
        self._timers.remove(member.timer)
        if member.joined is not None:
            member.joined.reply(UNKNOWN_MEMBER)
        if not group.members:
            group.assignment = {}
            self._set_group_state(group, EMPTY, reason)
            return
        if group.state != PREPARING:
            self._prepare(group, reason)
        self._maybe_complete(group)

    def _set_group_state(self, group: _Group, new: str, reason: str) -> None:
        old, group.state = group.state, new
        if old == new:
            return
        label = f"{group.name}: {new}"
        self.state = label
        self.states.append({"t": round(self.kernel.now, 3), "group": group.name,
                            "from": old, "to": new, "reason": reason})
        self.emit({"k": "node.state", "node": self.id, "group": group.name, "from": old,
                   "to": new, "reason": reason})

    # -- life ----------------------------------------------------------------------------------
    def on_crash(self) -> None:
        # Members, held joins and fetches were in memory. Their connections close with the
        # process: the callers see a reset at once and retry (after the restart, as
        # unknown members, they join again).
        for fetch in self.waiting:
            fetch.call.reply(m.CONNECTION_RESET)
        for group in self.groups.values():
            for member in group.members.values():
                if member.joined is not None:
                    member.joined.reply(m.CONNECTION_RESET)
        self._timers.clear()

    # -- observing -----------------------------------------------------------------------------
    def _observe(self) -> None:
        """Once a second: each group's lag per partition (log end − committed offset) and
        fetch lag (log end − where it last fetched), kept for the figures."""
        now = self.kernel.now
        start = now - self.p["retention_s"] * 1000.0
        for log in self.logs:
            times = log.times
            while log.start < log.end and times[log.start] < start:
                log.start += 1
                self.expired += 1
        ends = [log.end for log in self.logs]
        for name in self.generations:
            committed = self.committed.get(name, {})
            fetched = self.fetched.get(name, {})
            if not committed and not fetched:
                continue  # not reading yet
            lags, fetch_lags = [], []
            for p, log in enumerate(self.logs):
                base = committed.get(p, fetched.get(p, log.end))
                lags.append(log.end - max(base, log.start))
                fetch_lags.append(log.end - max(fetched.get(p, base), log.start))
            self.lag_history.setdefault(name, []).append((now, lags, fetch_lags, ends))

    def lag(self) -> dict[str, list[int]]:
        return {name: history[-1][1] for name, history in self.lag_history.items()
                if history}

    def sample(self, window_ms: float) -> dict[str, Any]:
        arrived, served = self.appended - self._last_appended, self.served - self._last_served
        self._last_appended, self._last_served = self.appended, self.served
        return {"arr": arrived, "done": served, "lag": self.lag()}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.appended, "utilisation": 0.0, "max_queue": 0,
                "appended": self.appended,
                "end_offsets": [log.end for log in self.logs],
                "committed": {name: [offsets.get(p) for p in range(self.partitions)]
                              for name, offsets in self.committed.items()},
                "generations": dict(self.generations),
                "stale_commits_rejected": self.stale_commits_rejected,
                "stale_commits_accepted": self.stale_commits_accepted}
