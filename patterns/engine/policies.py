"""Caller-side policies that any edge can carry: retry with backoff and a retry budget.

Backoff follows the AWS Builders' Library ("Timeouts, retries and backoff with jitter",
Brooker 2015), whose ``min(cap, base·2^attempt)`` counts ``attempt`` from 0: retry ``r``
(1 for the first retry) waits ``min(cap, base·multiplier^(r−1))`` with no jitter, so the first
retry waits ``base`` (as Resilience4j's initial interval); ``full`` draws uniform(0, that);
``equal`` keeps half and draws the other half; ``decorrelated`` draws
``min(cap, uniform(base, previous·3))`` with ``previous`` starting at ``base``.

Only retryable failures are retried (:func:`patterns.engine.messages.is_retryable`: never a
business error), and of those only the classes listed in ``retry_on``.

The budget is a token bucket in the style of Finagle's RetryBudget and Envoy's retry
budget: every first attempt deposits ``budget`` tokens (0.1 = retries may add 10% load),
every retry withdraws one, and ``min_retries`` tokens are there from the start so a quiet
caller can still retry. Total attempts stay ≤ (1 + budget) × requests + min_retries.
"""

from __future__ import annotations

import random
from typing import Any

from patterns.engine import messages as m
from patterns.params import Param

JITTERS = ("none", "full", "equal", "decorrelated")
# Classes of retryable failure: a transient error (5xx), the callee unavailable (connection
# refused or reset), the attempt timed out, the callee shed load (429/503 rejection).
RETRY_ON = ("transient", "unavailable", "timeout", "overload")

RETRY_FIELDS = (
    Param("max_attempts", "int", 3, min=1, max=20,
          help="Attempts in all, the first one included."),
    Param("base_ms", "float", 100.0, unit="ms", min=0, max=600_000,
          help="Wait before the first retry, before jitter."),
    Param("cap_ms", "float", 10_000.0, unit="ms", min=0, max=3_600_000,
          help="No wait is longer than this."),
    Param("multiplier", "float", 2.0, min=1, max=10, help="Growth of the wait per attempt."),
    Param("jitter", "choice", "full", choices=JITTERS,
          help="How the wait is randomised so that callers do not retry in step."),
    Param("budget", "float", None, min=0, max=10, nullable=True,
          help="Retries may add at most this fraction of the first attempts (0.1 = 10%)."),
    Param("min_retries", "int", 10, min=0, max=100_000,
          help="Retries the budget allows before any request has deposited."),
    Param("retry_on", "list", list(RETRY_ON), choices=RETRY_ON, max_items=len(RETRY_ON),
          help="Which retryable failures are retried (business errors never are)."),
)


def failure_class(reply: m.Reply) -> str | None:
    """The retry class of a failed reply, or None when it is not worth retrying."""
    if not m.is_retryable(reply):
        return None
    if reply.outcome == m.TIMED_OUT:
        return "timeout"
    if reply.outcome == m.REJECTED:
        return "overload"
    return "unavailable" if reply.error == m.UNAVAILABLE else "transient"


class RetryPolicy:
    """A retry policy bound to one caller's random stream, with its budget and counters."""

    __slots__ = (
        "attempts_histogram",
        "base",
        "budget",
        "budget_exhausted",
        "cap",
        "first_attempts",
        "jitter",
        "max_attempts",
        "max_attempts_seen",
        "min_retries",
        "multiplier",
        "retries",
        "retry_on",
        "rng",
        "tokens",
    )

    def __init__(self, spec: dict[str, Any], rng: random.Random) -> None:
        self.max_attempts: int = spec["max_attempts"]
        self.base: float = spec["base_ms"]
        self.cap: float = spec["cap_ms"]
        self.multiplier: float = spec["multiplier"]
        self.jitter: str = spec["jitter"]
        self.budget: float | None = spec["budget"]
        self.tokens = float(spec["min_retries"])
        self.min_retries = self.tokens
        self.rng = rng
        self.retry_on = frozenset(spec.get("retry_on", RETRY_ON))
        self.retries = 0
        self.budget_exhausted = 0
        self.first_attempts = 0
        # Attempts made by each finished logical call: {attempts: calls}; and the most any
        # call made, finished or not (the "no request exceeds max_attempts" check).
        self.attempts_histogram: dict[int, int] = {}
        self.max_attempts_seen = 0

    def wants_retry(self, reply: m.Reply) -> bool:
        """Whether this failure is of a class the policy retries."""
        kind = failure_class(reply)
        return kind is not None and kind in self.retry_on

    def backoff(self, retry_number: int, previous: float) -> float:
        """The wait before retry ``retry_number`` (1-based); ``previous`` is the last wait."""
        if self.jitter == "decorrelated":
            low = self.base
            high = max(low, (previous if previous > 0 else self.base) * 3)
            return min(self.cap, self.rng.uniform(low, high))
        ceiling = min(self.cap, self.base * self.multiplier ** (retry_number - 1))
        if self.jitter == "full":
            return self.rng.uniform(0.0, ceiling)
        if self.jitter == "equal":
            return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)
        return ceiling

    def on_first_attempt(self) -> None:
        self.first_attempts += 1
        if self.max_attempts_seen == 0:
            self.max_attempts_seen = 1
        if self.budget is not None:
            self.tokens += self.budget

    def may_retry(self, attempts_made: int) -> bool:
        """Whether one more attempt is allowed; takes a budget token when it is.

        Call it only once the retry is certain to be made (it counts the retry).
        """
        if attempts_made >= self.max_attempts:
            return False
        if self.budget is not None:
            if self.tokens < 1.0:
                self.budget_exhausted += 1
                return False
            self.tokens -= 1.0
        self.retries += 1
        if attempts_made + 1 > self.max_attempts_seen:
            self.max_attempts_seen = attempts_made + 1
        return True

    def on_finished(self, attempts_made: int) -> None:
        """A logical call ended (answered, out of attempts, or given up by its caller)."""
        self.attempts_histogram[attempts_made] = self.attempts_histogram.get(attempts_made, 0) + 1

    @property
    def attempts(self) -> int:
        """Attempts made in all: first attempts and retries."""
        return self.first_attempts + self.retries
