"""Seeded random streams, one per (seed, owner, purpose).

Every random draw in a run comes from a stream derived from the scenario's seed and the id
of the node or edge that draws it, so adding a node changes no other node's draws.
"""

from __future__ import annotations

import hashlib
import random


def stream(seed: int, owner: str, purpose: str = "") -> random.Random:
    """A ``random.Random`` that depends only on ``seed``, ``owner`` and ``purpose``."""
    digest = hashlib.blake2b(f"{seed}\x1f{owner}\x1f{purpose}".encode(), digest_size=16)
    return random.Random(int.from_bytes(digest.digest(), "big"))


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
