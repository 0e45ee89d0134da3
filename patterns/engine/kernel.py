"""The discrete-event kernel: a heap of timed callbacks with generator processes on top.

Time is a float in simulated milliseconds. The vocabulary follows SimPy's (``timeout``,
``process``, ``Store``, ``Resource``, ``any_of``, ``interrupt``) but the core is leaner:

- a process may ``yield`` a plain number to sleep that many ms (no event object is made),
  an :class:`Event` to wait for it, or ``None`` to let others run at the same instant;
- every entry on the heap carries a global sequence number, so callbacks scheduled for the
  same instant run in the order they were scheduled: a run replays byte for byte;
- a scheduled callback can be cancelled (lazily: the heap entry is blanked), which is what
  makes resettable timers cheap.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any

Callback = Callable[[Any], None]
# A heap entry: [time, seq, callback or None when cancelled, argument].
Entry = list[Any]
ProcessGenerator = Generator[Any, Any, Any]

INFINITY = float("inf")


class Interrupt(Exception):
    """Thrown into a process by :meth:`Process.interrupt`; ``cause`` says why."""

    def __init__(self, cause: Any = None) -> None:
        super().__init__(cause)
        self.cause = cause


class Kernel:
    """The clock and the agenda. ``now`` is the current simulated time in ms."""

    __slots__ = ("_heap", "_seq", "now", "steps")

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._seq = 0
        self.now = 0.0
        self.steps = 0

    # -- scheduling -------------------------------------------------------------------------
    def schedule(self, delay: float, fn: Callback, arg: Any = None) -> Entry:
        """Run ``fn(arg)`` after ``delay`` ms; returns a handle for :meth:`cancel`."""
        self._seq += 1
        entry = [self.now + delay, self._seq, fn, arg]
        heapq.heappush(self._heap, entry)
        return entry

    def schedule_at(self, when: float, fn: Callback, arg: Any = None) -> Entry:
        return self.schedule(max(0.0, when - self.now), fn, arg)

    @staticmethod
    def cancel(entry: Entry | None) -> None:
        if entry is not None:
            entry[2] = None

    def run(self, until: float = INFINITY) -> None:
        """Advance until the agenda is empty or the next entry lies beyond ``until``."""
        heap = self._heap
        pop = heapq.heappop
        steps = 0
        while heap:
            entry = heap[0]
            if entry[0] > until:
                break
            pop(heap)
            fn = entry[2]
            if fn is None:
                continue
            self.now = entry[0]
            steps += 1
            fn(entry[3])
        self.steps += steps
        if until != INFINITY and self.now < until:
            self.now = until

    def peek(self) -> float:
        """Time of the next live entry, or infinity."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else INFINITY

    # -- vocabulary -------------------------------------------------------------------------
    def event(self) -> Event:
        return Event(self)

    def timeout(self, delay: float, value: Any = None) -> Event:
        """An event that succeeds with ``value`` after ``delay`` ms."""
        ev = Event(self)
        self.schedule(delay, ev._succeed_later, value)
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
        # None once the callbacks have run: late subscribers are called on the next step.
        self.callbacks: list[Callback] | None = []
        self.value: Any = None
        self.ok = True
        self.triggered = False

    def succeed(self, value: Any = None) -> Event:
        if self.triggered:
            raise RuntimeError(f"{self!r} has already been triggered")
        self.triggered = True
        self.value = value
        self.kernel.schedule(0.0, self._dispatch)
        return self

    def fail(self, exc: BaseException) -> Event:
        if self.triggered:
            raise RuntimeError(f"{self!r} has already been triggered")
        self.triggered = True
        self.ok = False
        self.value = exc
        self.kernel.schedule(0.0, self._dispatch)
        return self

    def _succeed_later(self, value: Any) -> None:
        self.succeed(value)

    def _dispatch(self, _: Any) -> None:
        callbacks, self.callbacks = self.callbacks, None
        if callbacks:
            for cb in callbacks:
                cb(self)

    def add_callback(self, cb: Callback) -> None:
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


class Process(Event):
    """Runs a generator; succeeds with its return value when it ends."""

    __slots__ = ("_target", "gen")

    def __init__(self, kernel: Kernel, gen: ProcessGenerator) -> None:
        super().__init__(kernel)
        self.gen = gen
        # What the process waits for: a heap entry (a sleep) or an event.
        self._target: Entry | Event | None = kernel.schedule(0.0, self._resume_value, None)

    @property
    def is_alive(self) -> bool:
        return not self.triggered

    def _resume_value(self, value: Any) -> None:
        self._target = None
        try:
            yielded = self.gen.send(value)
        except StopIteration as stop:
            self.succeed(stop.value)
            return
        self._wait(yielded)

    def _resume_event(self, ev: Event) -> None:
        self._target = None
        try:
            if ev.ok:
                yielded = self.gen.send(ev.value)
            else:
                yielded = self.gen.throw(ev.value)
        except StopIteration as stop:
            self.succeed(stop.value)
            return
        self._wait(yielded)

    def _throw(self, exc: BaseException) -> None:
        try:
            yielded = self.gen.throw(exc)
        except StopIteration as stop:
            self.succeed(stop.value)
            return
        except Interrupt:
            # An uncaught interrupt ends the process quietly: it was told to stop.
            self.succeed(None)
            return
        self._wait(yielded)

    def _wait(self, yielded: Any) -> None:
        cls = yielded.__class__
        if cls is float or cls is int:
            self._target = self.kernel.schedule(yielded, self._resume_value, None)
        elif yielded is None:
            self._target = self.kernel.schedule(0.0, self._resume_value, None)
        elif isinstance(yielded, Event):
            self._target = yielded
            yielded.add_callback(self._resume_event)
        else:
            raise TypeError(f"a process yielded {yielded!r}: yield a delay in ms or an Event")

    def interrupt(self, cause: Any = None) -> None:
        """Throw :class:`Interrupt` into the process at the current instant."""
        if self.triggered:
            return
        target = self._target
        if isinstance(target, Event):
            target.remove_callback(self._resume_event)
        elif target is not None:
            Kernel.cancel(target)
        self._target = self.kernel.schedule(0.0, self._throw, Interrupt(cause))


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
        ev = Event(self.kernel)
        if self.in_use < self.capacity:
            self._account()
            self.in_use += 1
            if self.in_use > self.max_in_use:
                self.max_in_use = self.in_use
            ev.succeed()
        else:
            self.waiting.append(ev)
            if len(self.waiting) > self.max_waiting:
                self.max_waiting = len(self.waiting)
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
        if self.waiting and self.in_use <= self.capacity:
            # Hand the slot straight to the next in line: in_use is unchanged.
            self.waiting.popleft().succeed()
            return
        self._account()
        self.in_use -= 1

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        while self.waiting and self.in_use < self.capacity:
            self._account()
            self.in_use += 1
            self.max_in_use = max(self.max_in_use, self.in_use)
            self.waiting.popleft().succeed()
