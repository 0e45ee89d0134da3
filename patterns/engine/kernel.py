"""The discrete-event kernel: a heap of timed callbacks with generator processes on top.

Time is a float in simulated milliseconds. The vocabulary follows SimPy's (``timeout``,
``process``, ``Store``, ``Resource``, ``any_of``, ``interrupt``) but the core is leaner:

- a process may ``yield`` a plain number to sleep that many ms (no event object is made),
  an :class:`Event` to wait for it, or ``None`` to let others run at the same instant;
- every entry on the heap carries a global sequence number, so callbacks scheduled for the
  same instant run in the order they were scheduled: a run replays byte for byte;
- a scheduled callback can be cancelled (lazily: the heap entry is blanked), which is what
  makes resettable timers cheap.

When things happen at one instant:

- entries run in the order they were scheduled (time, then the global sequence number);
- an event's callbacks run on one heap entry: for :meth:`Event.succeed` and
  :meth:`Event.fail` one scheduled at that moment, for :meth:`Kernel.timeout` the timeout's
  own entry;
- an event that nobody has subscribed to when it is triggered is processed at once, with no
  heap entry (a slot granted at once, an item already in a store, a process that nobody waits
  for ending); a callback added to a processed event runs on its own entry, scheduled then;
- a process that yields an event already processed goes on at once, without a round trip
  through the heap (``yield resource.request()`` with a free slot costs nothing); starting a
  process, a sleep, and ``yield None`` always go through the heap.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any

Callback = Callable[[Any], None]
# A heap entry: [time, seq, callback or None when cancelled, argument].
Entry = list[Any]
ProcessGenerator = Generator[Any, Any, Any]

INFINITY = float("inf")

# Bound once: the hot paths below call them hundreds of thousands of times per second.
_heappush = heapq.heappush
_heappop = heapq.heappop


# More events than this at one instant means time has stopped: a loop with no delay.
MAX_EVENTS_AT_ONE_INSTANT = 250_000


class Stalled(RuntimeError):
    """Simulated time stopped advancing (a cycle of zero-delay steps)."""

    def __init__(self, at_ms: float) -> None:
        super().__init__(
            f"simulated time stopped at {at_ms / 1000:.3f} s: more than "
            f"{MAX_EVENTS_AT_ONE_INSTANT:,} events at one instant. Something loops with no "
            "delay, such as a closed-loop client with no think time calling zero-time work "
            "over zero-latency edges; give one of them a duration.")
        self.at_ms = at_ms


class Interrupt(Exception):
    """Thrown into a process by :meth:`Process.interrupt`; ``cause`` says why."""

    def __init__(self, cause: Any = None) -> None:
        super().__init__(cause)
        self.cause = cause


class Kernel:
    """The clock and the agenda. ``now`` is the current simulated time in ms."""

    __slots__ = ("_heap", "_next_seq", "now", "steps")

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        # The global sequence number: the tie-break between entries due at the same instant.
        self._next_seq = itertools.count(1).__next__
        self.now = 0.0
        self.steps = 0

    # -- scheduling -------------------------------------------------------------------------
    def schedule(self, delay: float, fn: Callback, arg: Any = None) -> Entry:
        """Run ``fn(arg)`` after ``delay`` ms; returns a handle for :meth:`cancel`."""
        entry = [self.now + delay, self._next_seq(), fn, arg]
        _heappush(self._heap, entry)
        return entry

    def schedule_at(self, when: float, fn: Callback, arg: Any = None) -> Entry:
        return self.schedule(max(0.0, when - self.now), fn, arg)

    @staticmethod
    def cancel(entry: Entry | None) -> None:
        if entry is not None:
            entry[2] = None

    def run(self, until: float = INFINITY) -> None:
        """Advance until the agenda is empty or the next entry lies beyond ``until``.

        Raises :class:`Stalled` when time stops moving: a loop with no delay in it (a
        closed-loop client with no think time calling zero-time work over zero-latency
        edges) would otherwise never return.
        """
        heap = self._heap
        pop = _heappop
        steps = 0
        same_instant = 0
        try:
            while heap:
                # Pop first and put back the one entry beyond ``until``: cheaper than peeking
                # at every step.
                entry = pop(heap)
                when, _, fn, arg = entry
                if when > until:
                    _heappush(heap, entry)
                    break
                if fn is None:
                    continue
                if when == self.now:
                    same_instant += 1
                    if same_instant > MAX_EVENTS_AT_ONE_INSTANT:
                        raise Stalled(when)
                else:
                    same_instant = 0
                    self.now = when
                steps += 1
                fn(arg)
        finally:
            self.steps += steps
        if until != INFINITY and self.now < until:
            self.now = until

    def peek(self) -> float:
        """Time of the next live entry, or infinity."""
        heap = self._heap
        while heap and heap[0][2] is None:
            _heappop(heap)
        return heap[0][0] if heap else INFINITY

    # -- vocabulary -------------------------------------------------------------------------
    def event(self) -> Event:
        return Event(self)

    def timeout(self, delay: float, value: Any = None) -> Event:
        """An event that succeeds with ``value`` after ``delay`` ms.

        Its callbacks run on the timeout's own heap entry, not on a second one.
        """
        ev = Event(self)
        self.schedule(delay, ev._fire, value)
        return ev

    def process(self, gen: ProcessGenerator) -> Process:
        return Process(self, gen)

    def any_of(self, events: Iterable[Event]) -> Condition:
        return Condition(self, list(events), need_all=False)

    def all_of(self, events: Iterable[Event]) -> Condition:
        return Condition(self, list(events), need_all=True)


class Event:
    """Something that happens once, with a value (or an exception when it fails)."""

    __slots__ = ("callbacks", "kernel", "ok", "triggered", "value")

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        # None once processed (the callbacks have run, or there were none to run when the
        # event was triggered): a late subscriber is called on an entry of its own.
        self.callbacks: list[Callback] | None = []
        self.value: Any = None
        self.ok = True
        self.triggered = False

    def succeed(self, value: Any = None) -> Event:
        """Trigger the event with ``value``; its callbacks run at this instant, on the heap."""
        if self.triggered:
            raise RuntimeError(f"{self!r} has already been triggered")
        self.triggered = True
        self.value = value
        if self.callbacks:
            kernel = self.kernel
            _heappush(kernel._heap, [kernel.now, kernel._next_seq(), self._dispatch, None])
        else:
            # Nobody waits yet: processed now, and no heap entry is spent on it.
            self.callbacks = None
        return self

    def fail(self, exc: BaseException) -> Event:
        """Trigger the event with an exception, which is thrown into waiting processes."""
        if self.triggered:
            raise RuntimeError(f"{self!r} has already been triggered")
        self.triggered = True
        self.ok = False
        self.value = exc
        if self.callbacks:
            self.kernel.schedule(0.0, self._dispatch)
        else:
            self.callbacks = None
        return self

    def _fire(self, value: Any) -> None:
        """A timeout's entry: trigger and run the callbacks in one step."""
        if self.triggered:
            raise RuntimeError(f"{self!r} has already been triggered")
        self.triggered = True
        self.value = value
        self._dispatch(None)

    def _dispatch(self, _: Any) -> None:
        callbacks, self.callbacks = self.callbacks, None
        if callbacks:
            for cb in callbacks:
                cb(self)

    def add_callback(self, cb: Callback) -> None:
        """Call ``cb(event)`` once the event is processed (on an entry of its own if it is)."""
        if self.callbacks is None:
            self.kernel.schedule(0.0, cb, self)
        else:
            self.callbacks.append(cb)

    def remove_callback(self, cb: Callback) -> None:
        if self.callbacks:
            try:
                self.callbacks.remove(cb)
            except ValueError:
                pass

    @property
    def processed(self) -> bool:
        return self.callbacks is None


class _Interruption(Event):
    """The failed event through which :meth:`Process.interrupt` wakes a process."""

    __slots__ = ()


class Process(Event):
    """Runs a generator; succeeds with its return value when it ends."""

    __slots__ = ("_target", "gen")

    def __init__(self, kernel: Kernel, gen: ProcessGenerator) -> None:
        # Event.__init__, inlined: some models make one process per request.
        self.kernel = kernel
        self.callbacks = []
        self.value = None
        self.ok = True
        self.triggered = False
        self.gen = gen
        # What the process waits for: a heap entry (its start, a sleep) or an event. It
        # starts on the heap, never inside its creator (Kernel.schedule, inlined).
        entry = [kernel.now, kernel._next_seq(), self._wake, None]
        _heappush(kernel._heap, entry)
        self._target: Entry | Event | None = entry

    @property
    def is_alive(self) -> bool:
        return not self.triggered

    def _wake(self, ev: Event | None) -> None:
        """Go on with the generator until it has to wait; ``ev`` is what woke it, if any.

        The one entry point for starts, sleeps, events and interrupts: the run loop calls it
        straight from the heap, so each wake-up costs a single Python call.
        """
        self._target = None
        gen = self.gen
        if ev is None:
            value, exc = None, None
        elif ev.ok:
            value, exc = ev.value, None
        else:
            value, exc = None, ev.value
        while True:
            try:
                if exc is None:
                    yielded = gen.send(value)
                else:
                    yielded = gen.throw(exc)
            except StopIteration as stop:
                self.succeed(stop.value)
                return
            except Interrupt:
                if ev.__class__ is not _Interruption:
                    raise
                # An uncaught interrupt ends the process quietly: it was told to stop.
                self.succeed(None)
                return
            cls = yielded.__class__
            if cls is float or cls is int:
                # Kernel.schedule, inlined: a sleep is the commonest wait.
                kernel = self.kernel
                entry = [kernel.now + yielded, kernel._next_seq(), self._wake, None]
                _heappush(kernel._heap, entry)
                self._target = entry
                return
            if yielded is None:
                self._target = self.kernel.schedule(0.0, self._wake, None)
                return
            if not isinstance(yielded, Event):
                raise TypeError(
                    f"a process yielded {yielded!r}: yield a delay in ms or an Event")
            callbacks = yielded.callbacks
            if callbacks is not None:
                self._target = yielded
                callbacks.append(self._wake)
                return
            # Already processed: go on at once with its outcome.
            ev = yielded
            if ev.ok:
                value, exc = ev.value, None
            else:
                value, exc = None, ev.value

    def interrupt(self, cause: Any = None) -> None:
        """Throw :class:`Interrupt` into the process at the current instant."""
        if self.triggered:
            return
        target = self._target
        if isinstance(target, Event):
            target.remove_callback(self._wake)
        elif target is not None:
            Kernel.cancel(target)
        interruption = _Interruption(self.kernel)
        interruption.triggered = True
        interruption.ok = False
        interruption.value = Interrupt(cause)
        interruption.callbacks = None
        self._target = self.kernel.schedule(0.0, self._wake, interruption)


class Condition(Event):
    """Succeeds when any (or all) of its events have; the value maps event → value."""

    __slots__ = ("_pending", "events", "need_all")

    def __init__(self, kernel: Kernel, events: list[Event], need_all: bool) -> None:
        super().__init__(kernel)
        self.events = events
        self.need_all = need_all
        self._pending = len(events)
        if not events:
            self.succeed({})
            return
        for ev in events:
            ev.add_callback(self._check)

    def _check(self, ev: Event) -> None:
        if self.triggered:
            return
        if not ev.ok:
            self.fail(ev.value)
            return
        self._pending -= 1
        if not self.need_all or self._pending == 0:
            self.succeed({e: e.value for e in self.events if e.processed or e is ev})


class Timer:
    """A one-shot timer that can be reset (pushed back) or cancelled, cheaply."""

    __slots__ = ("_entry", "fn", "kernel")

    def __init__(self, kernel: Kernel, fn: Callback) -> None:
        self.kernel = kernel
        self.fn = fn
        self._entry: Entry | None = None

    def _fire(self, arg: Any) -> None:
        self._entry = None
        self.fn(arg)

    def start(self, delay: float, arg: Any = None) -> None:
        """(Re)arm the timer to fire after ``delay`` ms, cancelling any earlier arming."""
        Kernel.cancel(self._entry)
        self._entry = self.kernel.schedule(delay, self._fire, arg)

    reset = start

    def cancel(self) -> None:
        Kernel.cancel(self._entry)
        self._entry = None

    @property
    def armed(self) -> bool:
        return self._entry is not None

    @property
    def due(self) -> float | None:
        return self._entry[0] if self._entry is not None else None


class Store:
    """A FIFO buffer of items with an optional capacity; ``get`` waits while it is empty."""

    __slots__ = ("_getters", "_putters", "capacity", "items", "kernel", "max_len")

    def __init__(self, kernel: Kernel, capacity: float = INFINITY) -> None:
        self.kernel = kernel
        self.capacity = capacity
        self.items: Any = self._make_items()
        self._getters: deque[Event] = deque()
        self._putters: deque[tuple[Event, Any]] = deque()
        self.max_len = 0

    @staticmethod
    def _make_items() -> Any:
        return deque()

    def __len__(self) -> int:
        return len(self.items)

    # The two narrow hooks a subclass overrides (as in SimPy).
    def _push(self, item: Any) -> None:
        self.items.append(item)

    def _pop(self) -> Any:
        return self.items.popleft()

    def try_put(self, item: Any) -> bool:
        """Put without waiting; ``False`` when the store is full."""
        if self._getters:
            self._getters.popleft().succeed(item)
            return True
        if len(self.items) >= self.capacity:
            return False
        self._push(item)
        if len(self.items) > self.max_len:
            self.max_len = len(self.items)
        return True

    def put(self, item: Any) -> Event:
        ev = Event(self.kernel)
        if self.try_put(item):
            ev.succeed()
        else:
            self._putters.append((ev, item))
        return ev

    def get(self) -> Event:
        ev = Event(self.kernel)
        if self.items:
            ev.succeed(self._pop())
            self._admit_putter()
        else:
            self._getters.append(ev)
        return ev

    def cancel_get(self, ev: Event) -> None:
        try:
            self._getters.remove(ev)
        except ValueError:
            pass

    def _admit_putter(self) -> None:
        while self._putters and len(self.items) < self.capacity:
            ev, item = self._putters.popleft()
            self._push(item)
            ev.succeed()


class PriorityStore(Store):
    """A store that hands out the item with the lowest ``(priority, arrival)`` first."""

    __slots__ = ("_arrivals",)

    def __init__(self, kernel: Kernel, capacity: float = INFINITY) -> None:
        super().__init__(kernel, capacity)
        self._arrivals = 0

    @staticmethod
    def _make_items() -> Any:
        return []

    def put_with_priority(self, priority: float, item: Any) -> Event:
        return self.put((priority, item))

    def _push(self, item: Any) -> None:
        priority, payload = item
        self._arrivals += 1
        heapq.heappush(self.items, (priority, self._arrivals, payload))

    def _pop(self) -> Any:
        return heapq.heappop(self.items)[2]

    def try_put(self, item: Any) -> bool:
        if self._getters:
            self._getters.popleft().succeed(item[1])
            return True
        return super().try_put(item)


class Resource:
    """``capacity`` identical slots (workers, connections, permits) with a FIFO wait list.

    Keeps the exact high-water marks of slots in use and of the wait list, and the
    time-integral of slots in use (for utilisation).
    """

    __slots__ = (
        "_busy_area",
        "_last_change",
        "capacity",
        "in_use",
        "kernel",
        "max_in_use",
        "max_waiting",
        "waiting",
    )

    def __init__(self, kernel: Kernel, capacity: int) -> None:
        self.kernel = kernel
        self.capacity = capacity
        self.in_use = 0
        self.waiting: deque[Event] = deque()
        self.max_in_use = 0
        self.max_waiting = 0
        self._busy_area = 0.0
        self._last_change = 0.0

    def _account(self) -> None:
        now = self.kernel.now
        self._busy_area += self.in_use * (now - self._last_change)
        self._last_change = now

    def busy_area(self) -> float:
        """Slot-milliseconds in use since the start."""
        return self._busy_area + self.in_use * (self.kernel.now - self._last_change)

    def request(self) -> Event:
        """An event that succeeds when a slot is this caller's (at once when one is free)."""
        kernel = self.kernel
        ev = Event(kernel)
        in_use = self.in_use
        if in_use < self.capacity:
            now = kernel.now
            self._busy_area += in_use * (now - self._last_change)
            self._last_change = now
            self.in_use = in_use = in_use + 1
            if in_use > self.max_in_use:
                self.max_in_use = in_use
            # Granted: processed at once (nobody can wait on it yet), no heap entry.
            ev.triggered = True
            ev.callbacks = None
        else:
            waiting = self.waiting
            waiting.append(ev)
            if len(waiting) > self.max_waiting:
                self.max_waiting = len(waiting)
        return ev

    def try_acquire(self) -> bool:
        """Take a slot without waiting; ``False`` when none is free."""
        if self.in_use < self.capacity:
            self._account()
            self.in_use += 1
            if self.in_use > self.max_in_use:
                self.max_in_use = self.in_use
            return True
        return False

    def cancel(self, ev: Event) -> None:
        """Withdraw a request that is still waiting (e.g. its caller timed out)."""
        try:
            self.waiting.remove(ev)
        except ValueError:
            pass

    def release(self) -> None:
        """Give a slot back: the first in line gets it at this instant, else it is free."""
        if self.waiting and self.in_use <= self.capacity:
            # Hand the slot straight to the next in line: in_use is unchanged.
            self.waiting.popleft().succeed()
            return
        now = self.kernel.now
        self._busy_area += self.in_use * (now - self._last_change)
        self._last_change = now
        self.in_use -= 1

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        while self.waiting and self.in_use < self.capacity:
            self._account()
            self.in_use += 1
            self.max_in_use = max(self.max_in_use, self.in_use)
            self.waiting.popleft().succeed()
