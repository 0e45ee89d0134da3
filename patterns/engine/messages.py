"""Requests, replies and their outcomes.

A :class:`Request` is one unit of work a client starts; it keeps its id as it travels
through proxies and services and across retries, so every event about it can be joined.
A :class:`Reply` says how a call ended. Every request ends in exactly one outcome:
``succeeded``, ``failed`` (with an error class), ``rejected`` (with a status) or
``timed_out``; one still running at the end of a run is counted ``in_flight``.
"""

from __future__ import annotations

from typing import Any

SUCCEEDED = "succeeded"
FAILED = "failed"
REJECTED = "rejected"
TIMED_OUT = "timed_out"
OUTCOMES = (SUCCEEDED, FAILED, REJECTED, TIMED_OUT)

# Error classes a failure carries. ``transient`` and ``unavailable`` are worth retrying;
# ``business`` is not (the same request would fail the same way).
TRANSIENT = "transient"
UNAVAILABLE = "unavailable"
BUSINESS = "business"


class Request:
    """One client request (or one published message) as it travels through the topology."""

    __slots__ = ("client", "created", "deadline", "flow", "headers", "id", "key", "op", "size")

    def __init__(self, rid: int, created: float, key: str | None = None, op: str = "read",
                 deadline: float | None = None, size: int = 1024, client: str = "",
                 headers: dict[str, Any] | None = None, flow: str | None = None) -> None:
        self.id = rid
        self.key = key
        self.op = op
        self.created = created
        # Absolute sim time after which nobody waits for the answer (when propagated).
        self.deadline = deadline
        self.size = size
        self.client = client
        self.headers = headers
        # The business process (workflow, saga) the message belongs to, if any.
        self.flow = flow


class Reply:
    """How a call ended. Shared constants exist for the common replies."""

    __slots__ = ("error", "outcome", "reason", "status", "value")

    def __init__(self, outcome: str, error: str | None = None, status: int | None = None,
                 reason: str | None = None, value: Any = None) -> None:
        self.outcome = outcome
        self.error = error
        self.status = status
        self.reason = reason
        self.value = value

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCEEDED

    def __repr__(self) -> str:
        extra = self.error or self.status or ""
        return f"Reply({self.outcome}{', ' if extra else ''}{extra})"


OK = Reply(SUCCEEDED)
TRANSIENT_ERROR = Reply(FAILED, error=TRANSIENT, status=500)
BUSINESS_ERROR = Reply(FAILED, error=BUSINESS, status=422)
CONNECTION_REFUSED = Reply(FAILED, error=UNAVAILABLE, status=503, reason="connection refused")
CONNECTION_RESET = Reply(FAILED, error=UNAVAILABLE, status=503, reason="connection reset")
QUEUE_FULL = Reply(REJECTED, status=503, reason="queue full")
TIMEOUT = Reply(TIMED_OUT, status=504, reason="timeout")
DEADLINE_EXCEEDED = Reply(TIMED_OUT, status=504, reason="deadline exceeded")


def is_retryable(reply: Reply) -> bool:
    """Worth another attempt: transient failures, unavailability, overload and timeouts."""
    if reply.outcome == FAILED:
        return reply.error != BUSINESS
    return reply.outcome in (TIMED_OUT, REJECTED) and reply.status in (429, 503, 504)
