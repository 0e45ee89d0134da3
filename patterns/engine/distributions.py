"""The distribution vocabulary used everywhere a duration or size is drawn.

A distribution is written in the topology document either as a bare number (a constant) or
as an object: ``{"dist": "exponential", "mean": 20}``. :func:`parse` checks one and returns a
:class:`Distribution`; :meth:`Distribution.sampler` binds it to a random stream and returns
a plain zero-argument function, which is what hot paths call.

A ``mixture`` draws from one of its ``parts`` (each a distribution or a number) chosen by
``weights``: the way to say "10% of calls take 5 s", a bimodal latency (cache hit or miss),
or a healthy body with a separate tail, which no single shape above expresses.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# z-score of the 99th percentile of the standard normal: lognormal by (median, p99).
Z99 = 2.3263478740408408

Sampler = Callable[[], float]

_LOG_MAX_FLOAT = math.log(sys.float_info.max)
# Pareto draws are scale · U^(−1/alpha) with U ≥ 2^−53; below this alpha they overflow a float.
MIN_PARETO_ALPHA = 0.1


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
    "mixture": (("weights", "parts"), {}),
}
MAX_MIXTURE_PARTS = 10
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
        if self.name == "mixture":
            weights: tuple[float, ...] = a["weights"]
            parts: tuple[Distribution, ...] = a["parts"]
            return sum(w * part.mean for w, part in zip(weights, parts, strict=True) if w) \
                / sum(weights)
        if self.name == "constant":
            return float(a["value"])
        if self.name == "uniform":
            return (float(a["low"]) + float(a["high"])) / 2
        if self.name in ("exponential", "normal"):
            return float(a["mean"])
        if self.name == "lognormal":
            mu, sigma = _lognormal_params(a["median"], a["p99"])
            # A wide enough spread has a mean beyond any float: call it infinite.
            exponent = mu + sigma * sigma / 2
            return math.inf if exponent > _LOG_MAX_FLOAT else math.exp(exponent)
        if self.name == "pareto":
            alpha, scale = float(a["alpha"]), float(a["scale"])
            return math.inf if alpha <= 1 else alpha * scale / (alpha - 1)
        values = a["values"]
        return float(sum(values)) / len(values)

    def scaled(self, factor: float) -> Distribution:
        """The same shape with every duration multiplied by ``factor``.

        A factor of 0 (or one so small that a lognormal's median underflows to 0) gives
        the constant 0: a lognormal cannot have a zero median.
        """
        if factor == 0 or (self.name == "lognormal" and self.arg("median") * factor <= 0):
            return Distribution("constant", (("value", 0.0),))
        if self.name == "mixture":
            parts = tuple(part.scaled(factor) for part in self.arg("parts"))
            return Distribution("mixture", (("weights", self.arg("weights")), ("parts", parts)))
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
        if name == "mixture":
            return _mixture_sampler(a["weights"], a["parts"], rng)
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
        if self.name == "mixture":
            return {"dist": "mixture", "weights": list(self.arg("weights")),
                    "parts": [part.to_json() for part in self.arg("parts")]}
        return {"dist": self.name, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in self.args}}


def _mixture_sampler(weights: tuple[float, ...], parts: tuple[Distribution, ...],
                     rng: random.Random) -> Sampler:
    total = sum(weights)
    # Cumulative shares; the last is 1 exactly so a draw always lands in a part.
    bounds = [sum(weights[:i + 1]) / total for i in range(len(weights))]
    bounds[-1] = 1.0
    samplers = [part.sampler(rng) for part in parts]
    draw = rng.random

    def sample() -> float:
        u = draw()
        for bound, part in zip(bounds, samplers, strict=True):
            if u < bound:
                return part()
        return samplers[-1]()
    return sample


def _parse_mixture(spec: Mapping[str, Any]) -> dict[str, Any]:
    weights, parts = spec["weights"], spec["parts"]
    if not isinstance(weights, list) or not 1 <= len(weights) <= MAX_MIXTURE_PARTS:
        raise DistributionError(f"must be a list of 1 to {MAX_MIXTURE_PARTS} numbers",
                                "weights")
    numbers = [finite(w) for w in weights]
    if any(w is None or w < 0 for w in numbers) or not sum(w or 0.0 for w in numbers):
        raise DistributionError("must hold finite numbers ≥ 0, not all 0", "weights")
    if not isinstance(parts, list) or len(parts) != len(weights):
        raise DistributionError("must be a list with one distribution per weight", "parts")
    parsed = []
    for i, part in enumerate(parts):
        if isinstance(part, Mapping) and part.get("dist") == "mixture":
            raise DistributionError("a mixture's parts cannot be mixtures", f"parts[{i}]")
        try:
            parsed.append(parse(part))
        except DistributionError as exc:
            sub = f"parts[{i}].{exc.field}" if exc.field else f"parts[{i}]"
            raise DistributionError(str(exc), sub) from None
    return {"weights": tuple(w or 0.0 for w in numbers), "parts": tuple(parsed)}


def _lognormal_params(median: float, p99: float) -> tuple[float, float]:
    mu = math.log(median)
    sigma = (math.log(p99) - mu) / Z99
    return mu, sigma


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a finite number.

    Booleans are not numbers here, and an integer too large for a float is not finite
    (JSON allows any number of digits; ``math.isfinite`` would raise on it).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _number(spec: Mapping[str, Any], key: str) -> float:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DistributionError("must be a number", key)
    number = finite(value)
    if number is None:
        raise DistributionError("must be finite", key)
    if number < 0:
        raise DistributionError("must be ≥ 0", key)
    return number


def parse(spec: Any) -> Distribution:
    """Check a distribution spec and return it; raises :class:`DistributionError`."""
    if isinstance(spec, bool):
        raise DistributionError("must be a number or a distribution object")
    if isinstance(spec, (int, float)):
        value = finite(spec)
        if value is None or value < 0:
            raise DistributionError("must be a finite number ≥ 0")
        return Distribution("constant", (("value", value),))
    if not isinstance(spec, Mapping):
        raise DistributionError("must be a number or a distribution object")
    if "dist" not in spec:
        raise DistributionError(f"needs a field 'dist', one of: {', '.join(NAMES)}")
    name = spec["dist"]
    if not isinstance(name, str) or name not in _SHAPES:
        raise DistributionError(
            f"unknown distribution {name!r}; available: {', '.join(NAMES)}", "dist")
    required, optional = _SHAPES[name]
    for key in spec:
        if key != "dist" and key not in required and key not in optional:
            # Quote an odd key so that the field path stays one readable line.
            shown = key if isinstance(key, str) and key.isidentifier() else repr(key)
            raise DistributionError(f"unknown field for {name}; known: {', '.join(required)}",
                                    shown)
    for key in required:
        if key not in spec:
            raise DistributionError(f"{name} needs {key}", key)
    args: dict[str, Any] = {}
    if name == "mixture":
        args = _parse_mixture(spec)
    elif name == "empirical":
        values = spec["values"]
        if not isinstance(values, list) or not values or len(values) > 1000:
            raise DistributionError("must be a list of 1 to 1000 numbers", "values")
        numbers = [finite(v) for v in values]
        if any(v is None or v < 0 for v in numbers):
            raise DistributionError("must hold only finite numbers ≥ 0", "values")
        args["values"] = tuple(numbers)
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
        if args["alpha"] < MIN_PARETO_ALPHA:
            raise DistributionError(f"must be ≥ {MIN_PARETO_ALPHA:g}", "alpha")
        if args["scale"] <= 0:
            raise DistributionError("must be > 0", "scale")
    return Distribution(name, tuple(args.items()))
