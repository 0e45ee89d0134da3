"""Closed-form queueing results the engine is checked against (tests and benchmarks)."""

from __future__ import annotations

import math


def erlang_c_mean_latency(c: int, lam: float, mu: float) -> float:
    """Mean time in system of an M/M/c queue: the Erlang C wait plus the service time.

    ``lam`` and ``mu`` are rates in the same unit (per ms, say); the result is in the
    inverse of that unit. Needs ``lam < c·mu``.
    """
    a = lam / mu
    rho = a / c
    if rho >= 1:
        raise ValueError(f"unstable queue: utilisation {rho:.3f} ≥ 1")
    below = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) / (1 - rho)
    p_wait = top / (below + top)
    return p_wait / (c * mu - lam) + 1 / mu
