"""The kernel's contract: ordering, cancelling, timers, processes, conditions, stores, resources.

These also guard the kernel's shortcuts (an event nobody waits for is processed at once; a
process that yields a processed event goes on without a heap round trip; a timeout runs its
callbacks on its own entry): each test states what callers may rely on, not how it is done.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import simpy

from patterns.engine.kernel import (
    INFINITY,
    Interrupt,
    Kernel,
    PriorityStore,
    Resource,
    Store,
    Timer,
)

# -- scheduling ------------------------------------------------------------------------------


def test_entries_run_in_time_order_and_advance_the_clock():
    kernel = Kernel()
    seen: list[tuple[float, str]] = []
    for delay, name in ((5.0, "c"), (1.0, "a"), (3.0, "b")):
        kernel.schedule(delay, lambda n: seen.append((kernel.now, n)), name)
    kernel.run()
    assert seen == [(1.0, "a"), (3.0, "b"), (5.0, "c")]
    assert kernel.now == 5.0
    assert kernel.steps == 3


def test_same_instant_entries_run_in_the_order_they_were_scheduled():
    kernel = Kernel()
    seen: list[str] = []

    def later(_: Any) -> None:
        # Due at 10 like "first" and "second", but scheduled after them.
        kernel.schedule(8.0, seen.append, "third")

    kernel.schedule(10.0, seen.append, "first")
    kernel.schedule(2.0, later)
    kernel.schedule(10.0, seen.append, "second")
    for name in "uvwxyz":
        kernel.schedule(20.0, seen.append, name)
    kernel.run()
    assert seen == ["first", "second", "third", *"uvwxyz"]


def test_a_cancelled_entry_never_runs_and_is_not_counted():
    kernel = Kernel()
    seen: list[str] = []
    entry = kernel.schedule(1.0, seen.append, "cancelled")
    kernel.schedule(2.0, seen.append, "kept")
    Kernel.cancel(entry)
    Kernel.cancel(None)  # cancelling nothing is allowed
    assert kernel.peek() == 2.0  # peek skips the blanked entry
    kernel.run()
    assert seen == ["kept"]
    assert kernel.steps == 1


def test_run_until_stops_before_later_entries_and_resumes():
    kernel = Kernel()
    seen: list[float] = []
    for when in (1.0, 5.0, 5.0000001, 9.0):
        kernel.schedule(when, lambda _: seen.append(kernel.now))
    kernel.run(until=5.0)
    assert seen == [1.0, 5.0]  # an entry due exactly at ``until`` runs
    assert kernel.now == 5.0
    assert kernel.peek() == 5.0000001
    kernel.run(until=7.0)
    assert kernel.now == 7.0  # the clock moves to ``until`` even with nothing due
    kernel.run()
    assert seen == [1.0, 5.0, 5.0000001, 9.0]
    assert kernel.peek() == INFINITY


def test_schedule_at_is_absolute_and_never_in_the_past():
    kernel = Kernel()
    seen: list[float] = []
    kernel.schedule(4.0, lambda _: kernel.schedule_at(2.0, lambda _: seen.append(kernel.now)))
    kernel.schedule_at(7.0, lambda _: seen.append(kernel.now))
    kernel.run()
    assert seen == [4.0, 7.0]


# -- timers ----------------------------------------------------------------------------------


def test_timer_fires_once_with_its_argument():
    kernel = Kernel()
    fired: list[tuple[float, Any]] = []
    timer = Timer(kernel, lambda arg: fired.append((kernel.now, arg)))
    timer.start(10.0, "x")
    assert timer.armed and timer.due == 10.0
    kernel.run()
    assert fired == [(10.0, "x")]
    assert not timer.armed and timer.due is None


def test_timer_reset_pushes_the_deadline_back():
    # Every heartbeat pushes an election timeout back: it fires once, after the last beat.
    kernel = Kernel()
    fired: list[float] = []
    timer = Timer(kernel, lambda _: fired.append(kernel.now))
    timer.start(10.0)
    for beat in (4.0, 8.0, 12.0):
        kernel.schedule(beat, lambda _: timer.reset(10.0))
    kernel.run()
    assert fired == [22.0]


def test_timer_cancel_and_rearm_after_firing():
    kernel = Kernel()
    fired: list[float] = []
    timer = Timer(kernel, lambda _: fired.append(kernel.now))
    timer.start(5.0)
    kernel.schedule(3.0, lambda _: timer.cancel())
    kernel.run()
    assert fired == []
    assert not timer.armed
    timer.start(2.0)  # at now = 3
    kernel.run()
    timer.start(1.0)  # re-armed after it fired
    kernel.run()
    assert fired == [5.0, 6.0]


# -- events and processes --------------------------------------------------------------------


def test_a_process_sleeps_by_yielding_a_number_and_returns_a_value():
    kernel = Kernel()

    def child():
        yield 5
        yield 2.5
        return kernel.now

    def parent(log: list[Any]):
        result = yield kernel.process(child())
        log.append((kernel.now, result))

    log: list[Any] = []
    proc = kernel.process(parent(log))
    assert proc.is_alive
    kernel.run()
    assert log == [(7.5, 7.5)]
    assert not proc.is_alive and proc.processed and proc.value is None


def test_a_process_starts_on_the_heap_not_inside_its_creator():
    kernel = Kernel()
    seen: list[str] = []

    def proc():
        seen.append("process")
        yield 0

    def creator(_: Any) -> None:
        kernel.process(proc())
        seen.append("creator")

    kernel.schedule(1.0, creator)
    kernel.run()
    assert seen == ["creator", "process"]


def test_yield_none_lets_entries_due_at_the_same_instant_run_first():
    kernel = Kernel()
    seen: list[str] = []

    def proc():
        yield 1.0
        seen.append("before")
        kernel.schedule(0.0, seen.append, "other")
        yield None
        seen.append(f"after at {kernel.now}")

    kernel.process(proc())
    kernel.run()
    assert seen == ["before", "other", "after at 1.0"]


def test_timeout_succeeds_with_its_value_after_its_delay():
    kernel = Kernel()
    got: list[Any] = []

    def proc():
        value = yield kernel.timeout(4.0, "ding")
        got.append((kernel.now, value))

    kernel.process(proc())
    kernel.run()
    assert got == [(4.0, "ding")]


def test_an_event_succeeded_later_wakes_every_waiter_in_order():
    kernel = Kernel()
    ev = kernel.event()
    got: list[Any] = []

    def waiter(name: str):
        value = yield ev
        got.append((name, kernel.now, value))

    for name in ("a", "b", "c"):
        kernel.process(waiter(name))
    kernel.schedule(3.0, lambda _: ev.succeed(42))
    kernel.run()
    assert got == [("a", 3.0, 42), ("b", 3.0, 42), ("c", 3.0, 42)]
    with pytest.raises(RuntimeError):
        ev.succeed(1)


def test_a_failed_event_is_thrown_into_the_waiting_process():
    kernel = Kernel()
    ev = kernel.event()
    got: list[str] = []

    def proc():
        try:
            yield ev
        except KeyError as exc:
            got.append(f"caught {exc.args[0]} at {kernel.now}")

    kernel.process(proc())
    kernel.schedule(2.0, lambda _: ev.fail(KeyError("boom")))
    kernel.run()
    assert got == ["caught boom at 2.0"]


def test_yielding_a_processed_event_goes_on_at_once_with_its_outcome():
    kernel = Kernel()
    done = kernel.event().succeed("ready")
    failed = kernel.event().fail(ValueError("bad"))
    assert done.processed and failed.processed  # nobody was waiting
    got: list[Any] = []

    def proc():
        got.append((yield done))
        try:
            yield failed
        except ValueError:
            got.append("thrown")
        got.append(kernel.now)

    kernel.process(proc())
    kernel.run()
    assert got == ["ready", "thrown", 0.0]
    assert kernel.steps == 1  # the start only: no heap round trip for either event


def test_a_late_callback_on_a_processed_event_still_runs():
    kernel = Kernel()
    ev = kernel.event().succeed(7)
    got: list[Any] = []
    ev.add_callback(lambda e: got.append((kernel.now, e.value)))
    assert got == []  # not inside add_callback
    kernel.run()
    assert got == [(0.0, 7)]


def test_removed_callback_is_not_called():
    kernel = Kernel()
    ev = kernel.event()
    got: list[str] = []

    def cb(_: Any) -> None:
        got.append("called")

    ev.add_callback(cb)
    ev.remove_callback(cb)
    ev.succeed()
    kernel.run()
    assert got == []


def test_yielding_something_else_is_a_type_error():
    kernel = Kernel()

    def proc():
        yield "soon"

    kernel.process(proc())
    with pytest.raises(TypeError, match="yield a delay in ms or an Event"):
        kernel.run()


# -- interrupts ------------------------------------------------------------------------------


def test_interrupt_wakes_a_sleeping_process_now_with_its_cause():
    kernel = Kernel()
    got: list[Any] = []

    def sleeper():
        try:
            yield 100.0
            got.append("slept")
        except Interrupt as intr:
            got.append((kernel.now, intr.cause))
        yield 1.0
        got.append(kernel.now)

    proc = kernel.process(sleeper())
    kernel.schedule(10.0, lambda _: proc.interrupt("leader changed"))
    kernel.run()
    # The sleep was cancelled: the process is not resumed a second time at 100.
    assert got == [(10.0, "leader changed"), 11.0]
    assert kernel.now == 11.0


def test_interrupt_detaches_a_process_from_the_event_it_waited_for():
    kernel = Kernel()
    ev = kernel.event()
    got: list[Any] = []

    def waiter():
        try:
            yield ev
            got.append("event")
        except Interrupt:
            got.append(("interrupted", kernel.now))
        value = yield kernel.timeout(5.0, "after")
        got.append(value)

    proc = kernel.process(waiter())
    kernel.schedule(1.0, lambda _: proc.interrupt())
    kernel.schedule(2.0, lambda _: ev.succeed())
    kernel.run()
    assert got == [("interrupted", 1.0), "after"]


def test_an_uncaught_interrupt_ends_the_process_quietly():
    kernel = Kernel()
    got: list[Any] = []

    def worker():
        yield 50.0
        got.append("finished")
        return "result"

    def watcher(proc: Any):
        value = yield proc
        got.append((kernel.now, value))

    proc = kernel.process(worker())
    kernel.process(watcher(proc))
    kernel.schedule(5.0, lambda _: proc.interrupt())
    kernel.run()
    assert got == [(5.0, None)]
    assert not proc.is_alive
    proc.interrupt()  # interrupting a finished process does nothing
    kernel.run()
    assert got == [(5.0, None)]


def test_an_interrupt_raised_by_the_process_itself_is_not_swallowed():
    kernel = Kernel()

    def proc():
        yield 1.0
        raise Interrupt("mine")

    kernel.process(proc())
    with pytest.raises(Interrupt):
        kernel.run()


# -- conditions ------------------------------------------------------------------------------


def test_any_of_succeeds_with_the_first_and_all_of_with_every_value():
    kernel = Kernel()
    got: list[Any] = []

    def proc():
        fast, slow = kernel.timeout(3.0, "fast"), kernel.timeout(8.0, "slow")
        first = yield kernel.any_of([fast, slow])
        got.append((kernel.now, list(first.values())))
        both = yield kernel.all_of([fast, slow])
        got.append((kernel.now, both[fast], both[slow]))
        nothing = yield kernel.all_of([])
        got.append(nothing)

    kernel.process(proc())
    kernel.run()
    assert got == [(3.0, ["fast"]), (8.0, "fast", "slow"), {}]


def test_any_of_races_a_reply_against_a_deadline():
    kernel = Kernel()
    got: list[str] = []

    def caller(reply_after: float):
        reply = kernel.timeout(reply_after, "reply")
        deadline = kernel.timeout(10.0, "deadline")
        done = yield kernel.any_of([reply, deadline])
        got.append("ok" if reply in done else "timed out")

    kernel.process(caller(4.0))
    kernel.process(caller(12.0))
    kernel.run()
    assert got == ["ok", "timed out"]


def test_a_condition_fails_when_one_of_its_events_fails():
    kernel = Kernel()
    bad = kernel.event()
    got: list[str] = []

    def proc():
        try:
            yield kernel.all_of([kernel.timeout(5.0), bad])
        except RuntimeError as exc:
            got.append(f"{exc} at {kernel.now}")

    kernel.process(proc())
    kernel.schedule(2.0, lambda _: bad.fail(RuntimeError("lost")))
    kernel.run()
    assert got == ["lost at 2.0"]


# -- stores ----------------------------------------------------------------------------------


def test_store_get_waits_while_empty_and_hands_items_out_fifo():
    kernel = Kernel()
    store = Store(kernel)
    got: list[tuple[str, float, Any]] = []

    def consumer(name: str):
        while True:
            item = yield store.get()
            got.append((name, kernel.now, item))

    kernel.process(consumer("c1"))
    kernel.process(consumer("c2"))
    for when, item in ((1.0, "a"), (2.0, "b"), (3.0, "c")):
        kernel.schedule(when, lambda it: store.put(it), item)
    kernel.run()
    # Waiting getters are served in the order they asked.
    assert got == [("c1", 1.0, "a"), ("c2", 2.0, "b"), ("c1", 3.0, "c")]
    assert store.max_len == 0  # every item went straight to a waiting getter


def test_store_capacity_makes_put_wait_and_try_put_refuse():
    kernel = Kernel()
    store = Store(kernel, capacity=2)
    log: list[tuple[str, float]] = []

    def producer():
        for item in range(4):
            yield store.put(item)
            log.append((f"put {item}", kernel.now))

    def consumer():
        yield 10.0
        for _ in range(4):
            item = yield store.get()
            log.append((f"got {item}", kernel.now))
            yield 1.0

    kernel.process(producer())
    kernel.process(consumer())
    kernel.run(until=5.0)
    assert len(store) == 2 and store.max_len == 2
    assert not store.try_put("overflow")
    kernel.run()
    assert [entry for entry in log if entry[0].startswith("got")] == [
        ("got 0", 10.0), ("got 1", 11.0), ("got 2", 12.0), ("got 3", 13.0)]
    assert ("put 2", 10.0) in log and ("put 3", 11.0) in log
    assert store.max_len == 2


def test_cancel_get_withdraws_a_waiting_getter():
    kernel = Kernel()
    store = Store(kernel)
    withdrawn = store.get()
    kept = store.get()
    store.cancel_get(withdrawn)
    store.put("item")
    kernel.run()
    assert kept.value == "item" and not withdrawn.triggered


def test_priority_store_hands_out_lowest_priority_first_then_fifo():
    kernel = Kernel()
    store = PriorityStore(kernel)
    for priority, item in ((5, "low-1"), (1, "high-1"), (5, "low-2"), (1, "high-2"), (3, "mid")):
        store.put_with_priority(priority, item)
    got = []

    def consumer():
        for _ in range(5):
            got.append((yield store.get()))

    kernel.process(consumer())
    kernel.run()
    assert got == ["high-1", "high-2", "mid", "low-1", "low-2"]
    assert store.max_len == 5
    waiting = store.get()
    store.put_with_priority(9, "direct")
    kernel.run()
    assert waiting.value == "direct"


# -- resources -------------------------------------------------------------------------------


def test_resource_hands_slots_over_fifo_and_keeps_exact_high_water_marks():
    kernel = Kernel()
    pool = Resource(kernel, capacity=2)
    log: list[tuple[str, float]] = []

    def user(name: str, hold: float):
        yield pool.request()
        log.append((name, kernel.now))
        yield hold
        pool.release()

    for name, hold in (("a", 10.0), ("b", 4.0), ("c", 1.0), ("d", 1.0), ("e", 1.0)):
        kernel.process(user(name, hold))
    kernel.run()
    # b frees a slot at 4: c, then d, then e in request order on that one slot.
    assert log == [("a", 0.0), ("b", 0.0), ("c", 4.0), ("d", 5.0), ("e", 6.0)]
    assert pool.max_in_use == 2
    assert pool.max_waiting == 3
    assert pool.in_use == 0 and not pool.waiting
    # Slot-ms in use: a 10 + b 4 + c, d, e 1 each.
    assert pool.busy_area() == pytest.approx(17.0)


def test_a_handoff_keeps_the_slot_taken():
    kernel = Kernel()
    pool = Resource(kernel, capacity=1)
    first = pool.request()
    second = pool.request()
    assert first.triggered and not second.triggered
    pool.release()
    assert pool.in_use == 1  # handed to ``second``, never free in between
    assert not pool.try_acquire()
    kernel.run()
    assert second.processed
    pool.release()
    assert pool.in_use == 0 and pool.try_acquire() and pool.in_use == 1


def test_a_cancelled_request_is_never_granted():
    kernel = Kernel()
    pool = Resource(kernel, capacity=1)
    pool.request()
    gave_up = pool.request()
    waits = pool.request()
    pool.cancel(gave_up)
    pool.release()
    kernel.run()
    assert waits.processed and not gave_up.triggered
    assert pool.max_waiting == 2


def test_resize_grants_waiting_requests():
    kernel = Kernel()
    pool = Resource(kernel, capacity=1)
    requests = [pool.request() for _ in range(3)]
    pool.resize(3)
    kernel.run()
    assert all(r.triggered for r in requests)
    assert pool.in_use == 3 and pool.max_in_use == 3


# -- against SimPy, the correctness oracle ---------------------------------------------------


def _kernel_trace(seed: int, requests: int) -> list[tuple[str, int, float]]:
    """Requests through a 2-slot resource, then a store read by one consumer process."""
    kernel = Kernel()
    rng = random.Random(seed)
    servers = Resource(kernel, 2)
    outbox = Store(kernel)
    trace: list[tuple[str, int, float]] = []

    def request(i: int):
        yield servers.request()
        trace.append(("start", i, kernel.now))
        yield rng.expovariate(1 / 3)
        servers.release()
        yield outbox.put(i)

    def source():
        for i in range(requests):
            yield rng.expovariate(1 / 2)
            kernel.process(request(i))

    def consumer():
        while True:
            i = yield outbox.get()
            yield kernel.timeout(rng.expovariate(1 / 1.5))
            trace.append(("sent", i, kernel.now))

    kernel.process(source())
    kernel.process(consumer())
    kernel.run()
    return trace


def _simpy_trace(seed: int, requests: int) -> list[tuple[str, int, float]]:
    env = simpy.Environment()
    rng = random.Random(seed)
    servers = simpy.Resource(env, 2)
    outbox = simpy.Store(env)
    trace: list[tuple[str, int, float]] = []

    def request(i: int):
        with servers.request() as req:
            yield req
            trace.append(("start", i, env.now))
            yield env.timeout(rng.expovariate(1 / 3))
        yield outbox.put(i)

    def source():
        for i in range(requests):
            yield env.timeout(rng.expovariate(1 / 2))
            env.process(request(i))

    def consumer():
        while True:
            i = yield outbox.get()
            yield env.timeout(rng.expovariate(1 / 1.5))
            trace.append(("sent", i, env.now))

    env.process(source())
    env.process(consumer())
    env.run()
    return trace


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_processes_resources_and_stores_replay_simpy_exactly(seed):
    # Same draws in the same order only if every wake-up happens in the same order.
    ours = _kernel_trace(seed, 2000)
    assert len(ours) == 4000
    assert ours == _simpy_trace(seed, 2000)


def test_a_loop_with_no_delay_stops_with_a_clear_error_instead_of_hanging():
    from patterns.engine.kernel import Stalled
    from patterns.run import prepare, simulate

    doc = prepare({
        "nodes": [{"id": "c", "kind": "client", "params": {"concurrency": 1}},
                  {"id": "s", "kind": "service", "params": {"service_time_ms": 0}}],
        "edges": [{"id": "e", "from": "c", "to": "s", "params": {"latency_ms": 0}}]})
    with pytest.raises(Stalled, match=r"stopped at 0\.000 s"):
        simulate(doc, trace="off").advance(1000)
