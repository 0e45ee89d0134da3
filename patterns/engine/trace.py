"""The event stream of a run: what the browser animates and the tests assert.

Events are compact dicts in sim-time order: ``t`` (sim ms), ``k`` (kind), then fields by
kind. The level decides what is kept: ``full`` keeps every message; ``fast`` (what a
fast-forwarded run streams) keeps metrics, state changes, faults and notes; ``off`` keeps
nothing (benchmarks). Events are serialised in batches with orjson.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

Level = Literal["off", "fast", "full"]
LEVELS: tuple[Level, ...] = ("off", "fast", "full")

Event = dict[str, Any]


class Trace:
    __slots__ = ("count", "events", "full", "level", "on")

    def __init__(self, level: Level = "full") -> None:
        if level not in LEVELS:
            raise ValueError(f"Unknown trace level: {level}. Available: {', '.join(LEVELS)}")
        self.level = level
        self.on = level != "off"
        self.full = level == "full"
        self.events: list[Event] = []
        self.count = 0

    def emit(self, event: Event) -> None:
        if self.on:
            event["t"] = round(event["t"], 3)
            self.events.append(event)
            self.count += 1

    def drain(self) -> list[Event]:
        """Hand over the events gathered since the last drain."""
        events, self.events = self.events, []
        return events


def dumps_lines(events: list[Event]) -> bytes:
    """One JSON object per line, as ``--format jsonl`` prints them."""
    if not events:
        return b""
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


def dumps_batch(events: list[Event]) -> bytes:
    """A JSON array of events, as one stream frame carries them."""
    return orjson.dumps(events)
