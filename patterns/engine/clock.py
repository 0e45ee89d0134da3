"""Node-local clocks and the timers that run on them.

Simulated time (``kernel.now``) is the truth nobody inside the system can read. A node reads
its own :class:`Clock`, which a ``clock_skew`` fault can move (an offset, a jump) or make
run fast or slow (a rate: 1.1 means 10% fast). A node's :class:`LocalTimer` measures its
delay on that clock: a timer of 100 local ms fires after 100 / rate simulated ms, and a
rate change while it is armed re-times what is left of it.

Local timers are what make ``pause`` and ``crash`` generic: the node owns every timer it
made, so a pause freezes them (the time left is kept and runs on after the resume) and a
crash cancels them (timers are volatile state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patterns.engine.kernel import Entry, Kernel


class Clock:
    """A clock that reads ``local = base_local + (now - base_real) × rate``."""

    __slots__ = ("_base_local", "_base_real", "kernel", "offset_ms", "rate")

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.rate = 1.0
        self.offset_ms = 0.0
        self._base_real = 0.0
        self._base_local = 0.0

    def now(self) -> float:
        """The node's reading of the time, in local ms."""
        return self._base_local + (self.kernel.now - self._base_real) * self.rate

    def skew(self, offset_ms: float, rate: float) -> None:
        """Jump by ``offset_ms`` now and run at ``rate`` from now on."""
        if rate <= 0.0:
            raise ValueError("a clock rate must be > 0")
        local = self.now()
        self._base_real = self.kernel.now
        self._base_local = local + offset_ms
        self.offset_ms += offset_ms
        self.rate = rate

    def to_real(self, local_ms: float) -> float:
        """How many simulated ms ``local_ms`` of this clock take at its current rate."""
        return local_ms / self.rate


class LocalTimer:
    """A resettable one-shot timer measured on its node's clock.

    ``start(delay)`` (re)arms it, cancelling an earlier arming; ``cancel`` disarms it. While
    its node is paused it is frozen: arming it then only records the delay, which starts to
    run at the resume. Made with :meth:`patterns.engine.node.Node.timer`.
    """

    __slots__ = ("_entry", "_frozen", "clock", "fn", "kernel")

    def __init__(self, kernel: Kernel, clock: Clock, fn: Callable[[], None]) -> None:
        self.kernel = kernel
        self.clock = clock
        self.fn = fn
        self._entry: Entry | None = None
        # Local ms left when frozen by a pause (None when not frozen or not armed).
        self._frozen: float | None = None

    def _fire(self, _: Any) -> None:
        self._entry = None
        self.fn()

    def start(self, local_delay_ms: float) -> None:
        Kernel.cancel(self._entry)
        self._entry = None
        if self._frozen is not None:
            self._frozen = local_delay_ms
            return
        self._entry = self.kernel.schedule(local_delay_ms / self.clock.rate, self._fire)

    reset = start

    def cancel(self) -> None:
        Kernel.cancel(self._entry)
        self._entry = None
        if self._frozen is not None:
            self._frozen = -1.0

    @property
    def armed(self) -> bool:
        return self._entry is not None or (self._frozen is not None and self._frozen >= 0.0)

    def remaining(self) -> float | None:
        """Local ms until it fires, or None when it is not armed."""
        if self._frozen is not None:
            return self._frozen if self._frozen >= 0.0 else None
        if self._entry is None:
            return None
        due: float = self._entry[0]
        return (due - self.kernel.now) * self.clock.rate

    # -- what the node does to all its timers --------------------------------------------------
    def freeze(self) -> None:
        """Stop the timer where it is (a pause); -1 marks a frozen timer that is not armed."""
        left = self.remaining()
        Kernel.cancel(self._entry)
        self._entry = None
        self._frozen = left if left is not None else -1.0

    def thaw(self) -> None:
        """Run on from where :meth:`freeze` stopped it."""
        left, self._frozen = self._frozen, None
        if left is not None and left >= 0.0:
            self._entry = self.kernel.schedule(left / self.clock.rate, self._fire)

    def retime(self, old_rate: float) -> None:
        """The clock's rate changed: what is left (in local ms) runs at the new rate."""
        if self._entry is None:
            return
        left = (self._entry[0] - self.kernel.now) * old_rate
        Kernel.cancel(self._entry)
        self._entry = self.kernel.schedule(left / self.clock.rate, self._fire)
