"""Parameter declarations: one source for validation, defaults, forms and documentation.

A component kind (or an edge, or an edge policy) declares its parameters as a tuple of
:class:`Param`. :func:`resolve` checks a ``params`` object from a topology document against
the declaration and returns it with defaults filled in; every error names the field path.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from patterns.engine import distributions

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_:-]{0,63}")

ParamType = Literal["int", "float", "bool", "choice", "dist", "str", "object", "list"]


class ParamError(ValueError):
    """A parameter is invalid; ``field`` is its path relative to the params object."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    default: Any = None
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    # For type "object": the nested declaration. ``nullable`` lets the value be null
    # (an optional policy that is off by default).
    fields: tuple[Param, ...] = ()
    nullable: bool = False
    # For type "list": the type of each item ("str" or "float").
    item: Literal["str", "float"] = "str"
    max_items: int = 100
    # Exclusive lower bound: "must be > min" rather than "≥ min".
    exclusive_min: bool = False

    def to_json(self) -> dict[str, Any]:
        """The declaration as the browser's parameter form and the API read it."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default}
        for key in ("unit", "help"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.choices:
            out["choices"] = list(self.choices)
        if self.fields:
            out["fields"] = [f.to_json() for f in self.fields]
        if self.nullable:
            out["nullable"] = True
        return out


@dataclass(frozen=True)
class ParamSet:
    params: tuple[Param, ...] = field(default_factory=tuple)

    def names(self) -> list[str]:
        return [p.name for p in self.params]


def _fmt(value: float) -> str:
    return f"{value:g}"


def field_name(key: Any) -> str:
    """A key as a field path shows it: plain names bare, anything else quoted.

    Quoting keeps a path on one line and unambiguous whatever the key holds.
    """
    if isinstance(key, str) and _PLAIN_NAME.fullmatch(key):
        return key
    return repr(key)


def _check_number(p: Param, value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(path, "must be a number")
    if distributions.finite(value) is None:
        raise ParamError(path, "must be finite")
    if p.min is not None:
        if p.exclusive_min and value <= p.min:
            raise ParamError(path, f"must be > {_fmt(p.min)}")
        if value < p.min:
            raise ParamError(path, f"must be ≥ {_fmt(p.min)}")
    if p.max is not None and value > p.max:
        raise ParamError(path, f"must be ≤ {_fmt(p.max)}")
    return value


def check_value(p: Param, value: Any, path: str) -> Any:
    """Check one value against its declaration; returns it normalised."""
    if value is None:
        if p.nullable:
            return None
        raise ParamError(path, "must not be null")
    if p.type == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(path, "must be a whole number")
        _check_number(p, value, path)
        return value
    if p.type == "float":
        return float(_check_number(p, value, path))
    if p.type == "bool":
        if not isinstance(value, bool):
            raise ParamError(path, "must be true or false")
        return value
    if p.type == "choice":
        if value not in p.choices:
            raise ParamError(path, f"must be one of: {', '.join(p.choices)}")
        return value
    if p.type == "str":
        if not isinstance(value, str):
            raise ParamError(path, "must be text")
        if p.max is not None and len(value) > p.max:
            raise ParamError(path, f"must be at most {_fmt(p.max)} characters")
        return value
    if p.type == "dist":
        try:
            dist = distributions.parse(value)
        except distributions.DistributionError as exc:
            sub = f"{path}.{exc.field}" if exc.field else path
            raise ParamError(sub, str(exc)) from None
        if p.max is not None:
            # A Pareto's mean may be infinite by design (alpha ≤ 1); bound its scale, the
            # smallest value it draws, so that a draw stays a finite float.
            if dist.name == "pareto":
                if dist.arg("scale") > p.max:
                    raise ParamError(f"{path}.scale", f"must be ≤ {_fmt(p.max)}")
            elif dist.mean > p.max:
                raise ParamError(path, f"mean must be ≤ {_fmt(p.max)} {p.unit}".rstrip())
        return dist.to_json()
    if p.type == "list":
        if not isinstance(value, list):
            raise ParamError(path, "must be a list")
        if len(value) > p.max_items:
            raise ParamError(path, f"must hold at most {p.max_items} items")
        out: list[Any] = []
        for i, item in enumerate(value):
            item_path = f"{path}[{i}]"
            if p.item == "str":
                if not isinstance(item, str) or len(item) > 80:
                    raise ParamError(item_path, "must be text of at most 80 characters")
                if p.choices and item not in p.choices:
                    raise ParamError(item_path, f"must be one of: {', '.join(p.choices)}")
                out.append(item)
            else:
                out.append(_check_number(p, item, item_path))
        return out
    # object
    if not isinstance(value, Mapping):
        raise ParamError(path, "must be an object")
    return resolve(p.fields, value, path)


def resolve(declared: Sequence[Param], given: Any, path: str = "params") -> dict[str, Any]:
    """Check ``given`` against ``declared`` and return it with every default filled in."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ParamError(path, "must be an object")
    by_name = {p.name: p for p in declared}
    for key in given:
        if key not in by_name:
            known = ", ".join(by_name) or "none"
            raise ParamError(f"{path}.{field_name(key)}", f"unknown parameter; known: {known}")
    out: dict[str, Any] = {}
    for p in declared:
        if p.name in given:
            out[p.name] = check_value(p, given[p.name], f"{path}.{p.name}")
        elif p.type == "object" and not p.nullable:
            out[p.name] = resolve(p.fields, {}, f"{path}.{p.name}")
        elif p.type == "dist" and p.default is not None:
            # One form in the output whether given or defaulted: a bare 0 becomes a constant.
            out[p.name] = distributions.parse(p.default).to_json()
        else:
            # A copy: a node that changes its params (a ``set`` fault) must not change the
            # declaration every other node and document shares.
            out[p.name] = copy.deepcopy(p.default)
    return out
