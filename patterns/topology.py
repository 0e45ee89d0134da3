"""The topology document: schema, validation and defaults.

:func:`validate` takes a parsed JSON value and returns the document with every default
filled in, or raises :class:`TopologyError` naming the first bad field by its path
(``nodes[3].params.workers: must be ≥ 1``). The structure is checked by pydantic (unknown
fields refused, no type coercion: ``"60"`` is not a number); parameters by each kind's own
declaration (:mod:`patterns.params`). Whatever it is given, :func:`validate` raises nothing
but :class:`TopologyError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from patterns.engine import faults
from patterns.engine.distributions import finite
from patterns.engine.node import KINDS
from patterns.engine.policies import RETRY_FIELDS
from patterns.params import Param, ParamError, check_value, field_name, resolve

ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$"
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class Limits:
    max_nodes: int = 200
    max_edges: int = 1000
    max_duration_s: float = 3600.0
    max_rate_rps: float = 100_000.0
    max_label: int = 80
    max_faults: int = 200
    # A document nests about six levels (nodes[0].params.retry.…); far deeper is an attack
    # or a mistake, and a recursive reader should never meet it.
    max_depth: int = 32


LIMITS = Limits()

EDGE_PARAMS: tuple[Param, ...] = (
    Param("latency_ms", "dist", {"dist": "lognormal", "median": 0.5, "p99": 2.0}, unit="ms",
          max=600_000, help="One-way latency of each message (LAN by default)."),
    Param("weight", "float", 1.0, min=0, max=1_000_000,
          help="Share of traffic (weighted round robin, client split)."),
    Param("drop_rate", "float", 0.0, min=0, max=1, help="Share of messages lost."),
    Param("timeout_ms", "float", None, unit="ms", min=0, max=3_600_000, nullable=True,
          exclusive_min=True, help="The caller gives up on an attempt after this long."),
    Param("retry", "object", None, nullable=True, fields=RETRY_FIELDS,
          help="Retry failed attempts with backoff (null = no retries)."),
    Param("deadline_propagation", "bool", False,
          help="The callee learns the caller's deadline and skips work nobody waits for."),
)


class TopologyError(ValueError):
    """A document is invalid; ``field`` is the path of the first bad field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


_Strict = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
Id = Annotated[str, Field(pattern=ID_PATTERN)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class NodeDoc(BaseModel):
    model_config = _Strict
    id: Id
    kind: str
    label: str = ""
    x: Finite = 0.0
    y: Finite = 0.0
    params: dict[str, Any] = Field(default_factory=dict)


class EdgeDoc(BaseModel):
    model_config = _Strict
    id: Id
    from_: Id = Field(alias="from")
    to: Id
    params: dict[str, Any] = Field(default_factory=dict)


class FaultDoc(BaseModel):
    model_config = _Strict
    at_s: Finite = Field(ge=0)
    until_s: Finite | None = Field(default=None, ge=0)
    target: Id
    action: Literal[faults.ACTIONS]  # type: ignore[valid-type]
    value: Any = None
    error_class: Literal["transient", "business"] | None = None
    param: str | None = None
    # partition
    groups: list[list[Id]] | None = None
    mode: Literal[faults.PARTITION_MODES] | None = None  # type: ignore[valid-type]
    direction: Literal[faults.DIRECTIONS] | None = None  # type: ignore[valid-type]
    # crash at a named point
    point: str | None = Field(default=None, max_length=100)
    down_s: Finite | None = Field(default=None, gt=0, le=3600)
    # clock_skew
    offset_ms: Finite | None = None
    rate: Finite | None = None


class ScenarioDoc(BaseModel):
    model_config = _Strict
    duration_s: Finite = Field(default=60.0, gt=0)
    seed: int = Field(default=42, ge=0, le=2**63 - 1)
    drain_s: Finite = Field(default=0.0, ge=0, le=3600)
    faults: list[FaultDoc] = Field(default_factory=list)


class Document(BaseModel):
    model_config = _Strict
    version: int = 1
    title: str = ""
    pattern: str | None = None
    variant: str | None = None
    nodes: list[NodeDoc]
    edges: list[EdgeDoc] = Field(default_factory=list)
    scenario: ScenarioDoc = Field(default_factory=ScenarioDoc)

    @field_validator("version", mode="before")
    @classmethod
    def _only_version_one(cls, value: Any) -> Any:
        # A Literal[1] would take ``true`` (True == 1): compare the type too.
        if type(value) is not int or value != 1:
            raise ValueError("must be 1")
        return value


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("from" if part == "from_" else field_name(part))
    return out


# pydantic's error types, said the way :mod:`patterns.params` says them.
_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "is required",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "string_type": "must be text",
    "float_type": "must be a number",
    "int_type": "must be a whole number",
    "finite_number": "must be finite",
    "string_pattern_mismatch": "must be 1 to 64 letters, digits or _ . : - "
                               "(starting with a letter, digit or _)",
}
_BOUNDS = {"greater_than_equal": ("ge", "≥"), "greater_than": ("gt", ">"),
           "less_than_equal": ("le", "≤"), "less_than": ("lt", "<")}


def _pydantic_error(exc: ValidationError) -> TopologyError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # A literal's error location ends in the literal's repr; drop it.
    loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("literal[")))
    kind = err["type"]
    if kind in _MESSAGES:
        message = _MESSAGES[kind]
    elif kind == "literal_error":
        message = f"must be {err.get('ctx', {}).get('expected')}"
    elif kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        bound = err.get("ctx", {}).get(key)
        message = f"must be {sign} {bound:g}" if isinstance(bound, (int, float)) \
            else f"must be {sign} {bound}"
    else:
        message = err["msg"].removeprefix("Value error, ") or "is invalid"
        message = message[0].lower() + message[1:]
    return TopologyError(_path(loc), message)


def _check_json(raw: Any, limits: Limits) -> None:
    """Refuse what JSON cannot hold (non-text keys, tuples, bytes…) and deep nesting.

    Iterative, so a hostile nesting depth cannot exhaust the interpreter's stack.
    """
    stack: list[tuple[Any, str, int]] = [(raw, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limits.max_depth:
            raise TopologyError(path, f"nested too deeply (more than {limits.max_depth} "
                                "levels)")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TopologyError(path, f"keys must be text, got {key!r}")
                stack.append((item, f"{path}.{field_name(key)}" if path else field_name(key),
                              depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            raise TopologyError(path, f"must be a JSON value, not {type(value).__name__}")


def validate(raw: Any, limits: Limits = LIMITS) -> dict[str, Any]:
    """Check a parsed document; return it with defaults filled in (a new dict)."""
    if not isinstance(raw, dict):
        raise TopologyError("", "the document must be a JSON object")
    nodes_raw, edges_raw = raw.get("nodes"), raw.get("edges")
    if isinstance(nodes_raw, list) and len(nodes_raw) > limits.max_nodes:
        raise TopologyError("nodes", f"at most {limits.max_nodes} nodes, got {len(nodes_raw)}")
    if isinstance(edges_raw, list) and len(edges_raw) > limits.max_edges:
        raise TopologyError("edges", f"at most {limits.max_edges} edges, got {len(edges_raw)}")
    _check_json(raw, limits)
    try:
        doc = Document.model_validate(raw)
    except ValidationError as exc:
        raise _pydantic_error(exc) from None
    return _check(doc, limits)


def _check(doc: Document, limits: Limits) -> dict[str, Any]:
    for name in ("title", "pattern", "variant"):
        text = getattr(doc, name)
        if text is not None and len(text) > limits.max_label:
            raise TopologyError(name, f"must be at most {limits.max_label} characters")
    if not doc.nodes:
        raise TopologyError("nodes", "must hold at least one node")
    nodes_out: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    for i, node in enumerate(doc.nodes):
        path = f"nodes[{i}]"
        if node.id in ids:
            raise TopologyError(f"{path}.id", f"duplicate id {node.id!r}")
        ids[node.id] = i
        if node.kind not in KINDS:
            raise TopologyError(f"{path}.kind", f"unknown kind {node.kind!r}; available: "
                                f"{', '.join(sorted(KINDS))}")
        if len(node.label) > limits.max_label:
            raise TopologyError(f"{path}.label",
                                f"must be at most {limits.max_label} characters")
        try:
            params = resolve(KINDS[node.kind].PARAMS, node.params, f"{path}.params")
            KINDS[node.kind].check_params(params)
        except ParamError as exc:
            field = exc.field if exc.field.startswith(path) else f"{path}.params.{exc.field}"
            raise TopologyError(field, exc.message) from None
        rate = params.get("rate_rps")
        if isinstance(rate, float) and rate > limits.max_rate_rps:
            raise TopologyError(f"{path}.params.rate_rps", f"must be ≤ {limits.max_rate_rps:g}")
        nodes_out.append({"id": node.id, "kind": node.kind, "label": node.label,
                          "x": node.x, "y": node.y, "params": params})

    edges_out: list[dict[str, Any]] = []
    edge_ids: set[str] = set()
    out_degree: dict[str, int] = {}
    for i, edge in enumerate(doc.edges):
        path = f"edges[{i}]"
        if edge.id in edge_ids or edge.id in ids:
            raise TopologyError(f"{path}.id", f"duplicate id {edge.id!r}")
        edge_ids.add(edge.id)
        for end, node_id in (("from", edge.from_), ("to", edge.to)):
            if node_id not in ids:
                raise TopologyError(f"{path}.{end}", f"no node with id {node_id!r}")
        if edge.from_ == edge.to:
            raise TopologyError(f"{path}.to", "an edge cannot join a node to itself")
        out_degree[edge.from_] = out_degree.get(edge.from_, 0) + 1
        try:
            params = resolve(EDGE_PARAMS, edge.params, f"{path}.params")
        except ParamError as exc:
            raise TopologyError(exc.field, exc.message) from None
        edges_out.append({"id": edge.id, "from": edge.from_, "to": edge.to, "params": params})

    targets: dict[str, list[str]] = {}
    for edge_out in edges_out:
        targets.setdefault(edge_out["from"], []).append(edge_out["to"])
    for i, node_out in enumerate(nodes_out):
        try:
            KINDS[node_out["kind"]].check_wiring(node_out["params"],
                                                 targets.get(node_out["id"], []))
        except ParamError as exc:
            raise TopologyError(f"nodes[{i}].params.{exc.field}", exc.message) from None

    for node_out in nodes_out:
        limit = KINDS[node_out["kind"]].MAX_OUT_EDGES
        if limit is not None and out_degree.get(node_out["id"], 0) > limit:
            i = ids[node_out["id"]]
            raise TopologyError(f"nodes[{i}].kind", f"a {node_out['kind']} takes at most "
                                f"{limit} outgoing edge{'s' if limit != 1 else ''}")

    clusters = _clusters(nodes_out, ids, edge_ids)

    scenario = doc.scenario
    if scenario.duration_s > limits.max_duration_s:
        raise TopologyError("scenario.duration_s", f"must be ≤ {limits.max_duration_s:g}")
    if len(scenario.faults) > limits.max_faults:
        raise TopologyError("scenario.faults", f"at most {limits.max_faults} faults")
    faults_out = [_check_fault(i, f, ids, edge_ids, nodes_out, clusters)
                  for i, f in enumerate(scenario.faults)]

    return {
        "version": 1, "title": doc.title, "pattern": doc.pattern, "variant": doc.variant,
        "nodes": nodes_out, "edges": edges_out,
        "scenario": {"duration_s": scenario.duration_s, "seed": scenario.seed,
                     "drain_s": scenario.drain_s, "faults": faults_out},
    }


def _clusters(nodes: list[dict[str, Any]], ids: dict[str, int],
              edge_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Cluster name → its members; a name may not be a node's or an edge's id."""
    clusters: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        name = node["params"].get("cluster")
        if not name:
            continue
        if not isinstance(name, str) or not _ID.fullmatch(name) or ":" in name:
            raise TopologyError(f"nodes[{ids[node['id']]}].params.cluster",
                                "must be 1 to 64 letters, digits or _ . - (no ':')")
        if name in ids or name in edge_ids:
            raise TopologyError(f"nodes[{ids[node['id']]}].params.cluster",
                                f"{name!r} is already a node's or an edge's id")
        clusters.setdefault(name, []).append(node)
    return clusters


def _check_target(path: str, fault: FaultDoc, ids: dict[str, int], edge_ids: set[str],
                  clusters: dict[str, list[dict[str, Any]]]) -> str:
    """What the target is: "node", "edge", "cluster" or "selector"."""
    target = fault.target
    if target in ids:
        return "node"
    if target in edge_ids:
        return "edge"
    if target in clusters:
        return "cluster"
    if faults.is_selector(target):
        role, _, group = target.partition(":")
        if group not in clusters:
            known = ", ".join(sorted(clusters)) or "none in this document"
            raise TopologyError(f"{path}.target", f"no cluster {group!r} for the role "
                                f"selector {target!r}; clusters: {known}")
        roles = {r for n in clusters[group] for r in KINDS[n["kind"]].ROLES}
        if role not in roles:
            raise TopologyError(f"{path}.target", f"no member of {group!r} takes the role "
                                f"{role!r}; roles: {', '.join(sorted(roles)) or 'none'}")
        return "selector"
    raise TopologyError(f"{path}.target", f"no node or edge with id {target!r}")


def _check_fault(i: int, fault: FaultDoc, ids: dict[str, int], edge_ids: set[str],
                 nodes: list[dict[str, Any]],
                 clusters: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    path = f"scenario.faults[{i}]"
    action = fault.action
    what = _check_target(path, fault, ids, edge_ids, clusters)
    is_node = what == "node"
    if what == "selector" and action in ("set", "rate"):
        raise TopologyError(f"{path}.target", f"{action!r} needs a node id, not a role "
                            "selector")
    if what == "cluster" and action != "partition":
        raise TopologyError(f"{path}.action", f"a cluster takes only 'partition', not "
                            f"{action!r}")
    if what == "edge" and action not in faults.EDGE_ACTIONS:
        raise TopologyError(f"{path}.action", f"{action!r} applies to nodes, not edges")
    if fault.until_s is not None and fault.until_s <= fault.at_s:
        raise TopologyError(f"{path}.until_s", "must be after at_s")
    out: dict[str, Any] = {"at_s": fault.at_s, "target": fault.target, "action": action}
    if fault.until_s is not None:
        out["until_s"] = fault.until_s
    if fault.param is not None and action != "set":
        raise TopologyError(f"{path}.param", "only 'set' takes a parameter")
    if action in faults.VALUE_BOUNDS:
        low, high = faults.VALUE_BOUNDS[action]
        value = finite(fault.value)
        if value is None or not low <= value <= high:
            raise TopologyError(f"{path}.value", f"must be a number from {low:g} to {high:g}")
        out["value"] = value
    elif action == "set":
        if not is_node:
            raise TopologyError(f"{path}.target", "'set' targets a node")
        node = nodes[ids[fault.target]]
        declared = {p.name: p for p in KINDS[node["kind"]].PARAMS}
        if fault.param is None:
            raise TopologyError(f"{path}.param", f"'set' needs the parameter to set; "
                                f"{node['kind']} has: {', '.join(declared)}")
        if fault.param not in declared:
            raise TopologyError(f"{path}.param", f"{node['kind']} has no parameter "
                                f"{fault.param!r}; known: {', '.join(declared)}")
        try:
            out["value"] = check_value(declared[fault.param], fault.value, f"{path}.value")
        except ParamError as exc:
            raise TopologyError(exc.field, exc.message) from None
        out["param"] = fault.param
    elif fault.value is not None:
        raise TopologyError(f"{path}.value", f"{action!r} takes no value")
    if action == "rate" and nodes[ids[fault.target]]["kind"] != "client":
        raise TopologyError(f"{path}.target", "'rate' targets a client")
    if fault.error_class is not None:
        if action != "error_rate":
            raise TopologyError(f"{path}.error_class", "only 'error_rate' takes an error class")
        out["error_class"] = fault.error_class
    _check_partition(path, fault, what, ids, clusters, out)
    _check_crash_point(path, fault, what, ids, nodes, clusters, out)
    _check_pause_and_clock(path, fault, what, ids, nodes, clusters, out)
    return out


def _check_partition(path: str, fault: FaultDoc, what: str, ids: dict[str, int],
                     clusters: dict[str, list[dict[str, Any]]], out: dict[str, Any]) -> None:
    if fault.action != "partition":
        for name in ("groups", "mode", "direction"):
            if getattr(fault, name) is not None:
                raise TopologyError(f"{path}.{name}", "only 'partition' takes "
                                    f"{'groups' if name == 'groups' else 'a ' + name}")
        return
    if what == "cluster":
        if not fault.groups:
            raise TopologyError(f"{path}.groups", "a partition of a cluster needs groups: "
                                "lists of node ids (unlisted members form one more group)")
        seen: set[str] = set()
        members = {n["id"] for n in clusters[fault.target]}
        for g, group in enumerate(fault.groups):
            if not group:
                raise TopologyError(f"{path}.groups[{g}]", "must hold at least one node id")
            for j, node_id in enumerate(group):
                if node_id not in ids:
                    raise TopologyError(f"{path}.groups[{g}][{j}]",
                                        f"no node with id {node_id!r}")
                if node_id in seen:
                    raise TopologyError(f"{path}.groups[{g}][{j}]",
                                        f"{node_id!r} is in two groups")
                seen.add(node_id)
        if not seen & members:
            raise TopologyError(f"{path}.groups", f"no group holds a member of "
                                f"{fault.target!r}")
        if len(fault.groups) < 2 and members <= seen:
            raise TopologyError(f"{path}.groups", "one group holding every member splits "
                                "nothing: give two groups or leave members out")
        out["groups"] = [list(g) for g in fault.groups]
    elif fault.groups is not None:
        raise TopologyError(f"{path}.groups", "only a partition of a cluster takes groups")
    if fault.mode is not None:
        out["mode"] = fault.mode
    if fault.direction is not None:
        out["direction"] = fault.direction


def _check_crash_point(path: str, fault: FaultDoc, what: str, ids: dict[str, int],
                       nodes: list[dict[str, Any]],
                       clusters: dict[str, list[dict[str, Any]]], out: dict[str, Any]) -> None:
    if fault.point is None:
        if fault.down_s is not None:
            raise TopologyError(f"{path}.down_s", "only a crash at a point takes down_s")
        return
    if fault.action != "crash":
        raise TopologyError(f"{path}.point", "only 'crash' takes a point")
    kinds = ([n["kind"] for n in clusters[fault.target.partition(":")[2]]]
             if what == "selector" else [nodes[ids[fault.target]]["kind"]])
    for kind in kinds:
        points = KINDS[kind].CRASH_POINTS
        if fault.point not in points:
            known = ", ".join(points) if points else "none"
            raise TopologyError(f"{path}.point", f"a {kind} has no crash point "
                                f"{fault.point!r}; its points: {known}")
    out["point"] = fault.point
    if fault.down_s is not None:
        out["down_s"] = fault.down_s


def _check_pause_and_clock(path: str, fault: FaultDoc, what: str, ids: dict[str, int],
                           nodes: list[dict[str, Any]],
                           clusters: dict[str, list[dict[str, Any]]],
                           out: dict[str, Any]) -> None:
    action = fault.action
    if action != "clock_skew":
        for name in ("offset_ms", "rate"):
            if getattr(fault, name) is not None:
                raise TopologyError(f"{path}.{name}", "only 'clock_skew' takes " + name)
    if action == "pause":
        kinds = ([n["kind"] for n in clusters[fault.target.partition(":")[2]]]
                 if what == "selector" else [nodes[ids[fault.target]]["kind"]])
        for kind in kinds:
            if not KINDS[kind].PAUSABLE:
                raise TopologyError(f"{path}.target", f"a {kind} cannot be paused (its "
                                    "timers are not all on its own clock)")
    if action == "clock_skew":
        if fault.offset_ms is None and fault.rate is None:
            raise TopologyError(f"{path}.offset_ms", "'clock_skew' needs offset_ms, rate "
                                "or both")
        if fault.offset_ms is not None:
            if abs(fault.offset_ms) > faults.MAX_CLOCK_OFFSET_MS:
                raise TopologyError(f"{path}.offset_ms",
                                    f"must be within ±{faults.MAX_CLOCK_OFFSET_MS:g}")
            out["offset_ms"] = float(fault.offset_ms)
        if fault.rate is not None:
            low, high = faults.CLOCK_RATE_BOUNDS
            if not low <= fault.rate <= high:
                raise TopologyError(f"{path}.rate", f"must be a number from {low:g} to "
                                    f"{high:g}")
            out["rate"] = float(fault.rate)
