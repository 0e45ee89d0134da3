"""A consumer-group member that reads an event log (a Kafka consumer), and what it did.

``log_consumer`` calls the ``event_log`` at the end of its outgoing edge (see
:mod:`patterns.components.event_log` for the broker's side). It joins its ``group`` at
``join_at_s``, gets partitions from the coordinator, and loops as a Kafka consumer's poll
loop does, on one thread:

- **poll**: rejoin first if the coordinator asked for it; auto-commit what it has processed
  when ``auto_commit_interval_ms`` has passed since the last commit (as ``poll()`` does with
  ``enable_auto_commit``); then fetch up to ``max_poll_records`` from its partitions;
- **process** the batch one record at a time (``service_time_ms`` each), then poll again.

A background heartbeat every ``heartbeat_interval_ms`` keeps it in the group; the
coordinator removes it after ``session_timeout_ms`` of silence. With the eager ``range``
assignor a rebalance makes it commit, revoke every partition and rejoin; with
``cooperative_sticky`` it keeps processing what it owns while the group rebalances and
gives up only what the coordinator takes away. A partition it is given starts at the
group's committed offset, or, when the group has none, at the log's start (``earliest``) or
end (``latest``).

Everything a consumer holds is volatile: a crash loses what it processed since its last
commit, and the next owner processes it again (duplicates). A ``pause`` longer than the
session makes it a zombie: it wakes up believing it still owns its partitions, processes
what it had fetched, and its commit is rejected (the generation moved on), after which it
rejoins.

Pushed messages (a ``queue`` or ``topic`` edge into it, the competing-consumers baseline)
are processed one at a time in arrival order and acknowledged by the reply.

:class:`Ledger` is the observer both modes report to: per group, which records were
processed and in what order, without the consumers or the broker knowing the truth. It
records (``sim.record``) runs of consecutive offsets per partition (``log.run``), ownership
(``log.assign`` / ``log.revoke``) and each key whose order broke (``log.reorder``).
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar

from patterns.components.event_log import ASSIGNORS, RANGE
from patterns.engine import messages as m
from patterns.engine.distributions import parse
from patterns.engine.network import Call, Edge
from patterns.engine.node import Node, register_kind
from patterns.params import Param

if TYPE_CHECKING:
    from patterns.engine.simulation import Simulation

RESETS = ("latest", "earliest")
REQUEST_TIMEOUT_MS = 30_000.0  # Kafka's request.timeout.ms
RETRY_BACKOFF_MS = 100.0  # Kafka's retry.backoff.ms
JOIN_TIMEOUT_MS = 305_000.0  # a join waits up to the rebalance timeout (max.poll.interval) + 5 s
# Out-of-order keys recorded one by one; past that they are only counted.
REORDERS_RECORDED = 50

IDLE, JOINING, SYNCING, STABLE = "IDLE", "JOINING", "SYNCING", "STABLE"


class _Run:
    __slots__ = ("first", "gen", "last", "t0", "t1")

    def __init__(self, gen: int, offset: int, now: float) -> None:
        self.gen = gen
        self.first = self.last = offset
        self.t0 = self.t1 = now


class GroupTally:
    """What one group processed: first times, duplicates, order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started: float | None = None  # when its first member asked to join
        self.processed = 0
        self.first_times = 0
        self.duplicates = 0
        self.replayed = 0  # first-time records appended before the group existed
        self.order_violations = 0
        self.cross_partition_inversions = 0
        self.newest_appended = float("-inf")
        self.high: dict[int, int] = {}  # partition → next offset never processed
        self.last_seq: dict[str, int] = {}  # key → highest seq processed
        self.seen_ids: set[int] = set()  # pushed messages processed (no offsets there)


class Ledger:
    """The observer of every group in a run; see the module docstring."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.groups: dict[str, GroupTally] = {}
        self._runs: dict[tuple[str, str, int], _Run] = {}

    def group(self, name: str) -> GroupTally:
        tally = self.groups.get(name)
        if tally is None:
            tally = self.groups[name] = GroupTally(name)
        return tally

    def joining(self, name: str) -> None:
        tally = self.group(name)
        if tally.started is None:
            tally.started = self.sim.kernel.now

    def _first_time(self, tally: GroupTally, member: str, key: str | None, seq: int,
                    appended: float) -> None:
        tally.first_times += 1
        if tally.started is not None and appended < tally.started:
            tally.replayed += 1
        if appended < tally.newest_appended:
            tally.cross_partition_inversions += 1
        else:
            tally.newest_appended = appended
        if key is None:
            return
        last = tally.last_seq.get(key, 0)
        if seq < last:
            tally.order_violations += 1
            if tally.order_violations <= REORDERS_RECORDED:
                self.sim.record({"k": "log.reorder", "group": tally.name, "member": member,
                                 "key": key, "seq": seq, "after": last})
        else:
            tally.last_seq[key] = seq

    def processed(self, group: str, member: str, gen: int, record: tuple[Any, ...]) -> None:
        """A log record (partition, offset, key, seq, appended at, event) was processed."""
        p, offset, key, seq, appended = record[:5]
        tally = self.group(group)
        tally.processed += 1
        high = tally.high.get(p, 0)
        if offset < high:
            tally.duplicates += 1
        else:
            tally.high[p] = offset + 1
            self._first_time(tally, member, key, seq, appended)
        now = self.sim.kernel.now
        run = self._runs.get((group, member, p))
        if run is not None and (run.gen != gen or offset != run.last + 1):
            self._close(group, member, p)
            run = None
        if run is None:
            self._runs[(group, member, p)] = _Run(gen, offset, now)
        else:
            run.last, run.t1 = offset, now

    def pushed(self, group: str, member: str, req: m.Request) -> None:
        """A pushed message (from a queue or topic) was processed."""
        tally = self.group(group)
        tally.processed += 1
        if req.id in tally.seen_ids:
            tally.duplicates += 1
            return
        tally.seen_ids.add(req.id)
        seq = int((req.headers or {}).get("seq", 0))
        self._first_time(tally, member, req.key, seq, req.created)

    def _close(self, group: str, member: str, p: int) -> None:
        run = self._runs.pop((group, member, p), None)
        if run is not None:
            self.sim.record({"k": "log.run", "group": group, "member": member, "p": p,
                             "gen": run.gen, "from": run.first, "to": run.last,
                             "t0": round(run.t0, 3), "t1": round(run.t1, 3)})

    def close_member(self, group: str, member: str) -> None:
        for g, who, p in [k for k in self._runs if k[0] == group and k[1] == member]:
            self._close(g, who, p)

    def close_all(self) -> None:
        """End of the run: the runs still open are recorded (idempotent)."""
        for g, who, p in list(self._runs):
            self._close(g, who, p)


_LEDGERS: weakref.WeakKeyDictionary[Simulation, Ledger] = weakref.WeakKeyDictionary()


def ledger(sim: Simulation) -> Ledger:
    """The run's ledger (made on first use)."""
    found = _LEDGERS.get(sim)
    if found is None:
        found = _LEDGERS[sim] = Ledger(sim)
    return found


@register_kind
class LogConsumer(Node):
    KIND = "log_consumer"
    LABEL = "Log consumer"
    DESCRIPTION = ("A member of a consumer group: reads its partitions of an event log in "
                   "order, commits its offsets, rebalances with the group.")
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("group", "str", "group", help="The consumer group it belongs to."),
        Param("service_time_ms", "dist", {"dist": "exponential", "mean": 5.0}, unit="ms",
              max=3_600_000, help="Time to process one record."),
        Param("max_poll_records", "int", 500, min=1, max=100_000,
              help="Records one poll returns at most (Kafka: 500)."),
        Param("auto_offset_reset", "choice", "latest", choices=RESETS,
              help="Where a group with no committed offset starts: the log's end "
                   "(latest, Kafka's default) or its start (earliest: replay)."),
        Param("enable_auto_commit", "bool", True,
              help="Commit processed offsets from the poll loop (Kafka's default)."),
        Param("auto_commit_interval_ms", "float", 5000.0, unit="ms", min=1, max=3_600_000,
              help="Auto-commit at most this often (Kafka: 5 s)."),
        Param("heartbeat_interval_ms", "float", 3000.0, unit="ms", min=1, max=3_600_000,
              help="Heartbeats to the coordinator (Kafka: 3 s)."),
        Param("session_timeout_ms", "float", 10_000.0, unit="ms", min=1, max=3_600_000,
              help="Silence after which the coordinator removes it (Kafka < 3.0: 10 s; "
                   "45 s since KIP-735)."),
        Param("assignor", "choice", RANGE, choices=ASSIGNORS,
              help="range: eager, every partition is revoked during a rebalance; "
                   "cooperative_sticky: only partitions that move pause."),
        Param("fetch_max_wait_ms", "float", 500.0, unit="ms", min=0, max=60_000,
              help="How long the broker holds a fetch with nothing to return (Kafka: 500)."),
        Param("join_at_s", "float", 0.0, unit="s", min=0, max=86_400,
              help="When it starts and joins its group."),
    )
    PAUSABLE = True

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        self.ledger = ledger(sim)
        self._service = parse(params["service_time_ms"]).sampler(self.rng)
        self._seq = 0
        self.processed = 0
        self.commits_rejected = 0
        self.expired = 0
        self.busy_ms = 0.0
        self._last_processed = 0
        self._last_busy = 0.0
        self.edge: Edge | None = None
        self.heartbeat = self.timer(self._heartbeat)
        self.work = self.timer(self._worked)
        self.wake = self.timer(self._poll)
        self.init_state()

    def init_state(self) -> None:
        self.mid: str | None = None
        self.gen = -1
        self.phase = IDLE
        self.rejoin = False
        self.positions: dict[int, int] = {}  # owned partition → next offset to process
        self.committed: dict[int, int] = {}  # what this member last had accepted
        self.ends: dict[int, int] = {}  # each partition's end, as the last fetch said
        self.batch: deque[tuple[Any, ...]] = deque()
        self.current: tuple[Any, ...] | None = None
        self.fetching = False
        self.committing = False
        self.next_commit = 0.0
        self.inbox: deque[Call] = deque()  # pushed messages waiting
        self.serving: Call | None = None

    def start(self) -> None:
        self.edge = next((e for e in self.out_edges if e.dst.KIND == "event_log"), None)
        self.wake.start(self.p["join_at_s"] * 1000.0)

    def on_crash(self) -> None:
        self._revoke(list(self.positions), "crashed")

    def on_recover(self) -> None:
        self.wake.start(0.0)

    @property
    def group(self) -> str:
        return str(self.p["group"])

    @property
    def started(self) -> bool:
        return bool(self.kernel.now >= self.p["join_at_s"] * 1000.0)

    # -- calling the broker --------------------------------------------------------------------
    def _call(self, op: str, headers: dict[str, Any], then: Any,
              timeout_ms: float = REQUEST_TIMEOUT_MS) -> None:
        assert self.edge is not None
        self._seq += 1
        req = m.Request(-self._seq, self.kernel.now, key=self.group, op=op, size=256,
                        client=self.id, headers={"group": self.group, "member": self.id,
                                                 **headers})
        life = self.incarnation

        def on_reply(_: Any, reply: m.Reply) -> None:
            if self.down or self.incarnation != life:
                return  # an answer to a past life
            if self.paused:  # stop-the-world: handled when the pause ends
                later = self.timer(lambda: self._deferred(later, then, reply))
                later.start(0.0)
                return
            then(reply)
        self.net.call(self.edge, req, on_reply, timeout_ms=timeout_ms)

    def _deferred(self, timer: Any, then: Any, reply: m.Reply) -> None:
        self._timers.remove(timer)
        then(reply)

    # -- membership ----------------------------------------------------------------------------
    def _join(self) -> None:
        self.rejoin = False
        self.phase = JOINING
        self.ledger.joining(self.group)
        if self.p["assignor"] == RANGE and self.positions:
            # Eager: commit what was processed, give everything up, then rejoin.
            self._commit(then=self._join_eager)
            return
        self._send_join()

    def _join_eager(self) -> None:
        self._revoke(list(self.positions), "rebalance")
        self._send_join()

    def _send_join(self) -> None:
        self.phase = JOINING
        if not self.heartbeat.armed:
            # The heartbeat thread runs at its own phase, not in step with other members'.
            self.heartbeat.start(self.rng.uniform(0.0, self.p["heartbeat_interval_ms"]))
        self._call("join", {"mid": self.mid, "session_ms": self.p["session_timeout_ms"],
                            "assignor": self.p["assignor"], "owned": sorted(self.positions)},
                   self._on_join,
                   timeout_ms=JOIN_TIMEOUT_MS)

    def _on_join(self, reply: m.Reply) -> None:
        if not reply.ok:
            if reply.status == 410:
                self._fenced(reply)
            self.phase = IDLE
            self.rejoin = True
            self.wake.start(RETRY_BACKOFF_MS)
            return
        self.mid, self.gen = reply.value["mid"], int(reply.value["gen"])
        self.phase = SYNCING
        self._call("sync", {"mid": self.mid, "gen": self.gen}, self._on_sync)

    def _on_sync(self, reply: m.Reply) -> None:
        if not reply.ok:
            if reply.status == 410:
                self._fenced(reply)
            self.phase = IDLE
            self.rejoin = True
            self.wake.start(RETRY_BACKOFF_MS if reply.status != 409 else 0.0)
            return
        value = reply.value
        given = [int(p) for p in value["partitions"]]
        taken = [p for p in self.positions if p not in given]
        if taken:
            # Cooperative: give up what moves (its offsets committed first), then rejoin
            # so the next generation can hand it over.
            self._commit(only=taken)
            self._revoke(taken, "moved")
            self.rejoin = True
        start: dict[int, int] = {}
        how = "committed"
        for p in given:
            if p in self.positions:
                continue
            committed = value["committed"].get(p)
            if committed is None:
                how = self.p["auto_offset_reset"]
                committed = value["start"][p] if how == "earliest" else value["end"][p]
            self.positions[p] = start[p] = int(committed)
            self.committed[p] = int(committed)
            self.ends[p] = int(value["end"][p])
        if start:
            self.sim.record({"k": "log.assign", "group": self.group, "member": self.id,
                             "gen": self.gen, "at": {str(p): o for p, o in start.items()},
                             "from": how})
        self.phase = STABLE
        self.next_commit = self.local_now() + self.p["auto_commit_interval_ms"]
        self.set_state(" ".join(f"p{p}" for p in sorted(self.positions)) or "no partitions",
                       f"generation {self.gen}")
        self._idle_poll()

    def _revoke(self, parts: list[int], why: str) -> None:
        if not parts:
            return
        self.ledger.close_member(self.group, self.id)
        self.sim.record({"k": "log.revoke", "group": self.group, "member": self.id,
                         "gen": self.gen, "parts": sorted(parts), "why": why})
        for p in parts:
            self.positions.pop(p, None)
            self.committed.pop(p, None)

    def _fenced(self, reply: m.Reply) -> None:
        """The coordinator no longer knows this member (or its generation): its partitions
        are lost, without a commit, and it joins again as a new member."""
        if self.positions:
            self.note(f"{self.id} learns it was removed from {self.group} "
                      f"({reply.reason}): partitions {sorted(self.positions)} lost")
        self._revoke(list(self.positions), "fenced")
        self.mid = None
        self.gen = -1
        self.rejoin = True

    def _heartbeat(self) -> None:
        self.heartbeat.start(self.p["heartbeat_interval_ms"])
        if self.mid is None:
            return
        self._call("heartbeat", {"mid": self.mid, "gen": self.gen}, self._on_heartbeat)

    def _on_heartbeat(self, reply: m.Reply) -> None:
        if reply.ok or self.phase in (JOINING, SYNCING):
            return
        if reply.status == 410:
            self._fenced(reply)
        else:
            self.rejoin = True
        self._idle_poll()

    # -- the poll loop -------------------------------------------------------------------------
    def _idle_poll(self) -> None:
        """Poll now unless the loop is busy (processing or waiting on a fetch or a commit)."""
        if self.current is None and not self.batch and not self.fetching \
                and not self.committing:
            self.wake.start(0.0)

    def _poll(self) -> None:
        if self.down or not self.started:
            return
        if self.edge is None:
            self.ledger.joining(self.group)  # a pushed consumer: it exists from now on
            return
        if self.current is not None or self.batch or self.fetching or self.committing:
            return
        rebalancing = self.phase in (JOINING, SYNCING)
        if not rebalancing and (self.phase == IDLE or self.rejoin):
            self._join()
            return
        if rebalancing and self.p["assignor"] == RANGE:
            return  # eager: nothing is owned until the sync
        if self.p["enable_auto_commit"] and self.local_now() >= self.next_commit:
            self.next_commit = self.local_now() + self.p["auto_commit_interval_ms"]
            self._commit()
        if not self.positions:
            return  # nothing assigned: wait for a rebalance (the heartbeat says)
        self.fetching = True
        self._call("fetch", {"positions": dict(self.positions),
                             "max": self.p["max_poll_records"],
                             "wait_ms": self.p["fetch_max_wait_ms"]},
                   self._on_fetch, timeout_ms=self.p["fetch_max_wait_ms"] + REQUEST_TIMEOUT_MS)

    def _on_fetch(self, reply: m.Reply) -> None:
        self.fetching = False
        if not reply.ok:
            self.wake.start(RETRY_BACKOFF_MS)
            return
        for p, start in reply.value["expired"].items():
            if p in self.positions and self.positions[p] < start:
                self.expired += start - self.positions[p]
                self.positions[p] = start
        self.ends.update(reply.value["ends"])
        self.batch.extend(reply.value["records"])
        self._next_record()

    def _next_record(self) -> None:
        while self.batch:
            record = self.batch.popleft()
            # A record of a partition given up, or already passed, is not processed.
            if self.positions.get(record[0]) == record[1]:
                self.current = record
                duration = self._service() * self.slow
                self.busy_ms += duration
                self.work.start(duration)
                return
        self.current = None
        self._poll()

    def _worked(self) -> None:
        record, self.current = self.current, None
        if record is not None:
            self.processed += 1
            self.ledger.processed(self.group, self.id, self.gen, record)
            p = record[0]
            if p in self.positions:
                self.positions[p] = record[1] + 1
        if self.serving is not None:
            self._served()
            return
        self._next_record()

    # -- committing ----------------------------------------------------------------------------
    def _commit(self, only: list[int] | None = None, then: Any = None) -> None:
        offsets = {p: o for p, o in self.positions.items()
                   if (only is None or p in only) and self.committed.get(p) != o}
        if not offsets or self.mid is None:
            if then is not None:
                then()
            return
        if then is not None:
            self.committing = True

        def on_reply(reply: m.Reply) -> None:
            if then is not None:
                self.committing = False
            if reply.ok:
                for p, o in offsets.items():
                    self.committed[p] = max(o, self.committed.get(p, 0))
            elif reply.status == 410:
                self.commits_rejected += 1
                self._fenced(reply)
            if then is not None:
                then()
            elif not reply.ok:
                self._idle_poll()
        self._call("commit", {"mid": self.mid, "gen": self.gen,
                              "offsets": {str(p): o for p, o in offsets.items()}}, on_reply)

    # -- pushed messages (the competing-consumers baseline) --------------------------------------
    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        if not self.started:
            call.reply(m.CONNECTION_REFUSED)
            return
        self.ledger.joining(self.group)
        self.inbox.append(call)
        if self.serving is None and self.current is None:
            self._serve_next()

    def _serve_next(self) -> None:
        if not self.inbox:
            return
        self.serving = self.inbox.popleft()
        duration = self._service() * self.slow
        self.busy_ms += duration
        self.work.start(duration)

    def _served(self) -> None:
        call, self.serving = self.serving, None
        assert call is not None
        self.processed += 1
        self.ledger.pushed(self.group, self.id, call.req)
        call.reply(m.OK)
        self._serve_next()

    # -- reporting -----------------------------------------------------------------------------
    def sample(self, window_ms: float) -> dict[str, Any]:
        done = self.processed - self._last_processed
        busy = self.busy_ms - self._last_busy
        self._last_processed, self._last_busy = self.processed, self.busy_ms
        return {"q": len(self.batch) + len(self.inbox), "done": done,
                "util": round(min(1.0, busy / window_ms), 3),
                "plag": {f"p{p}": max(0, self.ends.get(p, at) - at)
                         for p, at in sorted(self.positions.items())}}

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.processed,
                "utilisation": round(self.busy_ms / duration_ms, 4) if duration_ms else 0.0,
                "max_queue": 0, "group": self.group, "generation": self.gen,
                "partitions": sorted(self.positions),
                "commits_rejected": self.commits_rejected}
