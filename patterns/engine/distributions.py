"""The distribution vocabulary used everywhere a duration or size is drawn.

A distribution is written in the topology document either as a bare number (a constant) or
as an object: ``{"dist": "exponential", "mean": 20}``. :func:`parse` checks one and returns a
:class:`Distribution`; :meth:`Distribution.sampler` binds it to a random stream and returns
a plain zero-argument function, which is what hot paths call.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# z-score of the 99th percentile of the standard normal: lognormal by (median, p99).
Z99 = 2.3263478740408408

Sampler = Callable[[], float]


class DistributionError(ValueError):
    """A distribution spec is malformed; ``field`` is the offending key ('' for the whole)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


# name → (required fields, optional fields with defaults)
_SHAPES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "constant": (("value",), {}),
    "uniform": (("low", "high"), {}),
    "exponential": (("mean",), {}),
    "normal": (("mean", "std"), {}),
    "lognormal": (("median", "p99"), {}),
    "pareto": (("scale", "alpha"), {}),
    "empirical": (("values",), {}),
}
NAMES = tuple(_SHAPES)


@dataclass(frozen=True)
class Distribution:
    name: str
    args: tuple[tuple[str, Any], ...]

    def arg(self, key: str) -> Any:
        return dict(self.args)[key]

    @property
    def mean(self) -> float:
        a = dict(self.args)
        if self.name == "constant":
            return float(a["value"])
        if self.name == "uniform":
            return (float(a["low"]) + float(a["high"])) / 2
        if self.name in ("exponential", "normal"):
            return float(a["mean"])
        if self.name == "lognormal":
            mu, sigma = _lognormal_params(a["median"], a["p99"])
            return math.exp(mu + sigma * sigma / 2)
        if self.name == "pareto":
            alpha, scale = float(a["alpha"]), float(a["scale"])
            return math.inf if alpha <= 1 else alpha * scale / (alpha - 1)
        values = a["values"]
        return float(sum(values)) / len(values)

    def scaled(self, factor: float) -> Distribution:
        """The same shape with every duration multiplied by ``factor``."""
        out = []
        for key, value in self.args:
            if key == "alpha":
                out.append((key, value))
            elif key == "values":
                out.append((key, tuple(v * factor for v in value)))
            else:
                out.append((key, value * factor))
        return Distribution(self.name, tuple(out))

    def sampler(self, rng: random.Random) -> Sampler:
        a = dict(self.args)
        name = self.name
        if name == "constant":
            value = float(a["value"])
            return lambda: value
        if name == "uniform":
            low, high = float(a["low"]), float(a["high"])
            uniform = rng.uniform
            return lambda: uniform(low, high)
        if name == "exponential":
            mean = float(a["mean"])
            if mean == 0:
                return lambda: 0.0
            rate = 1.0 / mean
            expo = rng.expovariate
            return lambda: expo(rate)
        if name == "normal":
            mean, std = float(a["mean"]), float(a["std"])
            gauss = rng.gauss
            # Durations cannot be negative: a draw below zero is clamped.
            return lambda: max(0.0, gauss(mean, std))
        if name == "lognormal":
            mu, sigma = _lognormal_params(a["median"], a["p99"])
            lognorm = rng.lognormvariate
            return lambda: lognorm(mu, sigma)
        if name == "pareto":
            alpha, scale = float(a["alpha"]), float(a["scale"])
            paretov = rng.paretovariate
            return lambda: scale * paretov(alpha)
        values = tuple(float(v) for v in a["values"])
        choice = rng.choice
        return lambda: choice(values)

    def to_json(self) -> dict[str, Any]:
        return {"dist": self.name, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in self.args}}


def _lognormal_params(median: float, p99: float) -> tuple[float, float]:
    mu = math.log(median)
    sigma = (math.log(p99) - mu) / Z99
    return mu, sigma


def _number(spec: Mapping[str, Any], key: str) -> float:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DistributionError("must be a number", key)
    if not math.isfinite(value):
        raise DistributionError("must be finite", key)
    if value < 0:
        raise DistributionError("must be ≥ 0", key)
    return float(value)


def parse(spec: Any) -> Distribution:
    """Check a distribution spec and return it; raises :class:`DistributionError`."""
    if isinstance(spec, bool):
        raise DistributionError("must be a number or a distribution object")
    if isinstance(spec, (int, float)):
        if not math.isfinite(spec) or spec < 0:
            raise DistributionError("must be a finite number ≥ 0")
        return Distribution("constant", (("value", float(spec)),))
    if not isinstance(spec, Mapping):
        raise DistributionError("must be a number or a distribution object")
    name = spec.get("dist")
    if name not in _SHAPES:
        raise DistributionError(
            f"unknown distribution {name!r}; available: {', '.join(NAMES)}", "dist")
    required, optional = _SHAPES[name]
    for key in spec:
        if key != "dist" and key not in required and key not in optional:
            raise DistributionError(f"unknown field for {name}", str(key))
    for key in required:
        if key not in spec:
            raise DistributionError(f"{name} needs {key}", key)
    args: dict[str, Any] = {}
    if name == "empirical":
        values = spec["values"]
        if not isinstance(values, list) or not values or len(values) > 1000:
            raise DistributionError("must be a list of 1 to 1000 numbers", "values")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise DistributionError("must hold only finite numbers ≥ 0", "values")
        args["values"] = tuple(float(v) for v in values)
    else:
        for key in required:
            args[key] = _number(spec, key)
    if name == "uniform" and args["low"] > args["high"]:
        raise DistributionError("must be ≥ low", "high")
    if name == "lognormal":
        if args["median"] <= 0:
            raise DistributionError("must be > 0", "median")
        if args["p99"] <= args["median"]:
            raise DistributionError("must be > median", "p99")
    if name == "pareto":
        if args["alpha"] <= 0:
            raise DistributionError("must be > 0", "alpha")
        if args["scale"] <= 0:
            raise DistributionError("must be > 0", "scale")
    return Distribution(name, tuple(args.items()))
