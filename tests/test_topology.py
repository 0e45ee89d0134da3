"""The topology document: defaults filled, bad input refused with the exact field path."""

from __future__ import annotations

import copy
import random
import statistics
from typing import Any

import pytest

from patterns.components.client import Client
from patterns.components.service import Service
from patterns.engine import distributions, faults
from patterns.engine.node import KINDS
from patterns.params import Param, resolve
from patterns.topology import EDGE_PARAMS, LIMITS, Limits, TopologyError, validate
from tests.helpers import run


def doc(**scenario: Any) -> dict[str, Any]:
    """users → api → db, the shape most tests bend one field of."""
    return {
        "version": 1,
        "title": "A small system",
        "nodes": [
            {"id": "users", "kind": "client", "label": "Users", "x": 10, "y": 20,
             "params": {"rate_rps": 50}},
            {"id": "api", "kind": "service", "params": {"workers": 4}},
            {"id": "db", "kind": "database", "params": {}},
        ],
        "edges": [
            {"id": "e1", "from": "users", "to": "api", "params": {}},
            {"id": "e2", "from": "api", "to": "db", "params": {"timeout_ms": 500}},
        ],
        "scenario": {"duration_s": 30, "seed": 7, **scenario},
    }


def refused(document: Any, limits: Limits = LIMITS) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        validate(document, limits)
    return info.value


def with_fault(**fault: Any) -> dict[str, Any]:
    return doc(faults=[{"at_s": 5, **fault}])


# -- valid documents ---------------------------------------------------------------------------

def test_it_fills_every_default():
    out = validate({"nodes": [{"id": "a", "kind": "client"}, {"id": "b", "kind": "service"}],
                    "edges": [{"id": "e", "from": "a", "to": "b"}]})
    assert out["version"] == 1
    assert out["title"] == ""
    assert out["pattern"] is None and out["variant"] is None
    assert out["scenario"] == {"duration_s": 60.0, "seed": 42, "drain_s": 0.0, "faults": []}
    a, b = out["nodes"]
    assert (a["label"], a["x"], a["y"]) == ("", 0.0, 0.0)
    assert a["params"] == {p.name: p.default for p in Client.PARAMS if p.type != "dist"} | {
        "think_time_ms": {"dist": "constant", "value": 0.0}}  # a bare default is normalised
    assert b["params"]["workers"] == 4
    assert b["params"]["service_time_ms"] == {"dist": "exponential", "mean": 20.0}
    edge = out["edges"][0]
    assert edge == {"id": "e", "from": "a", "to": "b",
                    "params": {p.name: p.default for p in EDGE_PARAMS}}
    assert edge["params"]["latency_ms"] == {"dist": "lognormal", "median": 0.5, "p99": 2.0}
    assert edge["params"]["retry"] is None


def test_it_keeps_given_values_and_normalises_them():
    d = doc()
    d["nodes"][1]["params"] = {"workers": 8.0, "service_time_ms": 3}
    d["edges"][0]["params"] = {"retry": {"max_attempts": 5}}
    out = validate(d)
    workers = out["nodes"][1]["params"]["workers"]
    assert workers == 8 and isinstance(workers, int)
    assert out["nodes"][1]["params"]["service_time_ms"] == {"dist": "constant", "value": 3.0}
    retry = out["edges"][0]["params"]["retry"]
    assert retry["max_attempts"] == 5
    assert retry["jitter"] == "full"  # the nested defaults are filled too
    assert out["nodes"][0]["label"] == "Users"
    assert out["scenario"]["seed"] == 7


def test_it_returns_a_new_document_and_is_idempotent():
    d = doc()
    before = copy.deepcopy(d)
    out = validate(d)
    assert d == before
    assert validate(out) == out


def test_resolve_is_the_same_declaration_the_form_reads():
    declared = (Param("n", "int", 3, min=1, max=9), Param("mode", "choice", "a",
                                                           choices=("a", "b")))
    assert resolve(declared, {"n": 5}) == {"n": 5, "mode": "a"}
    assert [p.to_json()["name"] for p in declared] == ["n", "mode"]
    assert declared[0].to_json()["min"] == 1


def test_defaults_are_copies_not_the_shared_declaration():
    declared = (Param("tags", "list", ["a"]),)
    first = resolve(declared, {})
    first["tags"].append("b")
    assert resolve(declared, {}) == {"tags": ["a"]}
    out = validate(doc())
    out["edges"][0]["params"]["latency_ms"]["median"] = 99
    assert validate(doc())["edges"][0]["params"]["latency_ms"]["median"] == 0.5


def test_errors_are_value_errors_with_the_field():
    err = refused({"nodes": [{"id": "a", "kind": "service", "params": {"workers": 0}}]})
    assert isinstance(err, ValueError)
    assert err.field == "nodes[0].params.workers"
    assert err.message == "must be ≥ 1"
    assert str(err) == "nodes[0].params.workers: must be ≥ 1"


# -- structure ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "field"), [
    (lambda d: d, "colour"),
    (lambda d: d["nodes"][1], "nodes[1].colour"),
    (lambda d: d["edges"][0], "edges[0].colour"),
    (lambda d: d["scenario"], "scenario.colour"),
    (lambda d: d["scenario"]["faults"][0], "scenario.faults[0].colour"),
])
def test_unknown_fields_are_refused_everywhere(where, field):
    d = with_fault(target="api", action="crash")
    where(d)["colour"] = "red"
    err = refused(d)
    assert (err.field, err.message) == (field, "unknown field")


@pytest.mark.parametrize(("where", "field", "known"), [
    (lambda d: d["nodes"][1]["params"], "nodes[1].params.wrokers", "workers"),
    (lambda d: d["edges"][0]["params"], "edges[0].params.wrokers", "latency_ms"),
])
def test_unknown_parameters_name_the_known_ones(where, field, known):
    d = doc()
    where(d)["wrokers"] = 4
    err = refused(d)
    assert err.field == field
    assert err.message.startswith("unknown parameter; known: ")
    assert known in err.message


def test_unknown_retry_field_is_refused():
    d = doc()
    d["edges"][0]["params"]["retry"] = {"attempts": 3}
    err = refused(d)
    assert err.field == "edges[0].params.retry.attempts"


def test_an_odd_key_is_quoted_so_the_message_stays_on_one_line():
    d = doc()
    d["nodes"][1]["params"]["bad\nkey"] = 1
    err = refused(d)
    assert err.field == "nodes[1].params.'bad\\nkey'"
    assert "\n" not in str(err)


@pytest.mark.parametrize(("mutate", "field", "message"), [
    (lambda d: d.__setitem__("version", 2), "version", "must be 1"),
    (lambda d: d.__setitem__("version", True), "version", "must be 1"),
    (lambda d: d.pop("nodes"), "nodes", "is required"),
    (lambda d: d.__setitem__("nodes", []), "nodes", "must hold at least one node"),
    (lambda d: d.__setitem__("nodes", {"a": 1}), "nodes", "must be a list"),
    (lambda d: d["nodes"][0].pop("kind"), "nodes[0].kind", "is required"),
    (lambda d: d["nodes"][0].__setitem__("x", "10"), "nodes[0].x", "must be a number"),
    (lambda d: d["nodes"][0].__setitem__("x", float("nan")), "nodes[0].x", "must be finite"),
    (lambda d: d["nodes"][0].__setitem__("id", 5), "nodes[0].id", "must be text"),
    (lambda d: d["scenario"].__setitem__("duration_s", "30"), "scenario.duration_s",
     "must be a number"),
    (lambda d: d["scenario"].__setitem__("duration_s", 0), "scenario.duration_s",
     "must be > 0"),
    (lambda d: d["scenario"].__setitem__("seed", True), "scenario.seed",
     "must be a whole number"),
    (lambda d: d["scenario"].__setitem__("seed", -1), "scenario.seed", "must be ≥ 0"),
    (lambda d: d.__setitem__("scenario", []), "scenario", "must be an object"),
    (lambda d: d.__setitem__("nodes", ({"id": "a", "kind": "client"},)), "nodes",
     "must be a JSON value, not tuple"),
])
def test_structure_errors_name_the_field(mutate, field, message):
    d = doc()
    mutate(d)
    err = refused(d)
    assert (err.field, err.message) == (field, message)


def test_a_document_must_be_an_object():
    assert refused([doc()]).message == "the document must be a JSON object"


def test_keys_must_be_text():
    d = doc()
    d["nodes"][1]["params"][3] = 4
    err = refused(d)
    assert err.field == "nodes[1].params"
    assert err.message == "keys must be text, got 3"


def test_deep_nesting_is_refused_without_recursion():
    nested: Any = 1
    for _ in range(100_000):
        nested = [nested]
    d = doc()
    d["nodes"][1]["params"]["service_time_ms"] = nested
    err = refused(d)
    assert err.field.startswith("nodes[1].params.service_time_ms[0][0]")
    assert err.message == "nested too deeply (more than 32 levels)"


# -- ids and edges -----------------------------------------------------------------------------

def test_node_ids_are_unique():
    d = doc()
    d["nodes"][2]["id"] = "api"
    err = refused(d)
    assert (err.field, err.message) == ("nodes[2].id", "duplicate id 'api'")


def test_ids_are_unique_across_nodes_and_edges():
    d = doc()
    d["edges"][1]["id"] = "db"
    assert refused(d).field == "edges[1].id"
    d = doc()
    d["edges"][1]["id"] = "e1"
    assert (refused(d).field, refused(d).message) == ("edges[1].id", "duplicate id 'e1'")


def test_ids_have_a_shape():
    d = doc()
    d["nodes"][1]["id"] = "my api"
    err = refused(d)
    assert err.field == "nodes[1].id"
    assert err.message.startswith("must be 1 to 64 letters")


@pytest.mark.parametrize("end", ["from", "to"])
def test_dangling_edges_are_refused(end):
    d = doc()
    d["edges"][1][end] = "ghost"
    err = refused(d)
    assert (err.field, err.message) == (f"edges[1].{end}", "no node with id 'ghost'")


def test_an_edge_cannot_loop_on_one_node():
    d = doc()
    d["edges"][1]["to"] = "api"
    assert refused(d).field == "edges[1].to"


def test_a_kind_limits_its_outgoing_edges():
    d = doc()
    d["nodes"].append({"id": "other", "kind": "service"})
    d["edges"].append({"id": "e3", "from": "db", "to": "other"})
    err = refused(d)
    assert err.field == "nodes[2].kind"
    assert err.message == "a database takes at most 0 outgoing edges"


def test_unknown_kinds_list_the_available_ones():
    d = doc()
    d["nodes"][1]["kind"] = "mainframe"
    err = refused(d)
    assert err.field == "nodes[1].kind"
    assert err.message.startswith("unknown kind 'mainframe'; available: ")
    assert err.message.endswith(", ".join(sorted(KINDS)))
    assert {"client", "service", "database", "queue", "cache"} <= set(KINDS)


# -- parameters --------------------------------------------------------------------------------

@pytest.mark.parametrize(("node", "param", "value", "message"), [
    (1, "workers", 0, "must be ≥ 1"),
    (1, "workers", 10_001, "must be ≤ 10000"),
    (1, "workers", 2.5, "must be a whole number"),
    (1, "workers", "4", "must be a whole number"),
    (1, "workers", True, "must be a whole number"),
    (1, "workers", None, "must not be null"),
    (1, "workers", 10**400, "must be finite"),
    (1, "error_rate", 1.5, "must be ≤ 1"),
    (1, "error_rate", float("inf"), "must be finite"),
    (1, "fanout", "random", "must be one of: sequential, parallel"),
    (1, "fanout", ["sequential"], "must be one of: sequential, parallel"),
    (0, "rate_rps", -1, "must be ≥ 0"),
    (0, "rate_rps", 100_001, "must be ≤ 100000"),
    (0, "rate_rps", "fast", "must be a number"),
    (0, "timeout_ms", 0, "must be > 0"),
    (2, "pool_size", 0, "must be ≥ 1"),
])
def test_node_params_are_typed_and_bounded(node, param, value, message):
    d = doc()
    d["nodes"][node]["params"][param] = value
    err = refused(d)
    assert (err.field, err.message) == (f"nodes[{node}].params.{param}", message)


@pytest.mark.parametrize(("param", "value", "field", "message"), [
    ("timeout_ms", 0, "timeout_ms", "must be > 0"),
    ("timeout_ms", -5, "timeout_ms", "must be > 0"),
    ("drop_rate", 2, "drop_rate", "must be ≤ 1"),
    ("weight", -1, "weight", "must be ≥ 0"),
    ("deadline_propagation", 1, "deadline_propagation", "must be true or false"),
    ("retry", [], "retry", "must be an object"),
    ("retry", {"max_attempts": 0}, "retry.max_attempts", "must be ≥ 1"),
    ("retry", {"jitter": "lots"}, "retry.jitter",
     "must be one of: none, full, equal, decorrelated"),
    ("retry", {"budget": -0.1}, "retry.budget", "must be ≥ 0"),
])
def test_edge_params_are_typed_and_bounded(param, value, field, message):
    d = doc()
    d["edges"][0]["params"][param] = value
    err = refused(d)
    assert (err.field, err.message) == (f"edges[0].params.{field}", message)


def test_nullable_params_take_null():
    d = doc()
    d["edges"][0]["params"].update(timeout_ms=None, retry=None)
    d["nodes"][0]["params"]["timeout_ms"] = None
    out = validate(d)
    assert out["edges"][0]["params"]["timeout_ms"] is None
    assert out["edges"][0]["params"]["retry"] is None


# -- distributions -----------------------------------------------------------------------------

SHAPES = [
    ({"dist": "constant", "value": 4}, 4.0),
    ({"dist": "uniform", "low": 2, "high": 6}, 4.0),
    ({"dist": "exponential", "mean": 4}, 4.0),
    ({"dist": "normal", "mean": 40, "std": 5}, 40.0),
    ({"dist": "lognormal", "median": 4, "p99": 20}, None),
    ({"dist": "pareto", "scale": 2, "alpha": 3}, 3.0),
    ({"dist": "empirical", "values": [1, 2, 3, 10]}, 4.0),
    ({"dist": "mixture", "weights": [3, 1], "parts": [2, {"dist": "exponential", "mean": 10}]},
     4.0),
    (4, 4.0),
]


def test_every_shape_of_the_vocabulary_is_covered():
    named = {s["dist"] for s, _ in SHAPES if isinstance(s, dict)}
    assert named == set(distributions.NAMES)


@pytest.mark.parametrize(("spec", "mean"), SHAPES)
def test_every_distribution_shape_validates_and_draws_its_mean(spec, mean):
    d = doc()
    d["nodes"][1]["params"]["service_time_ms"] = spec
    out = validate(d)["nodes"][1]["params"]["service_time_ms"]
    parsed = distributions.parse(out)
    assert out["dist"] == (spec["dist"] if isinstance(spec, dict) else "constant")
    assert distributions.parse(parsed.to_json()) == parsed  # a round trip changes nothing
    draw = parsed.sampler(random.Random(3))
    samples = [draw() for _ in range(40_000)]
    assert min(samples) >= 0
    expected = parsed.mean if mean is None else mean
    assert parsed.mean == pytest.approx(expected)
    assert statistics.fmean(samples) == pytest.approx(expected, rel=0.04)


def test_lognormal_is_given_by_its_median_and_p99():
    parsed = distributions.parse({"dist": "lognormal", "median": 4, "p99": 20})
    draw = parsed.sampler(random.Random(5))
    samples = sorted(draw() for _ in range(100_000))
    assert samples[50_000] == pytest.approx(4, rel=0.03)
    assert samples[99_000] == pytest.approx(20, rel=0.06)


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({"dist": "gamma", "k": 2}, ".dist", "unknown distribution 'gamma'; available: "
     + ", ".join(distributions.NAMES)),
    ({"mean": 4}, "", "needs a field 'dist', one of: " + ", ".join(distributions.NAMES)),
    ({"dist": "exponential"}, ".mean", "exponential needs mean"),
    ({"dist": "uniform", "low": 1}, ".high", "uniform needs high"),
    ({"dist": "lognormal", "median": 5, "p99": 5}, ".p99", "must be > median"),
    ({"dist": "lognormal", "median": 5, "p99": 4}, ".p99", "must be > median"),
    ({"dist": "lognormal", "median": 0, "p99": 4}, ".median", "must be > 0"),
    ({"dist": "exponential", "mean": -1}, ".mean", "must be ≥ 0"),
    ({"dist": "normal", "mean": 5, "std": -1}, ".std", "must be ≥ 0"),
    ({"dist": "uniform", "low": 5, "high": 1}, ".high", "must be ≥ low"),
    ({"dist": "pareto", "scale": 1, "alpha": 0.01}, ".alpha", "must be ≥ 0.1"),
    ({"dist": "empirical", "values": []}, ".values", "must be a list of 1 to 1000 numbers"),
    ({"dist": "empirical", "values": [1] * 1001}, ".values",
     "must be a list of 1 to 1000 numbers"),
    ({"dist": "empirical", "values": [1, -2]}, ".values", "must hold only finite numbers ≥ 0"),
    ({"dist": "exponential", "mean": 4, "std": 1}, ".std",
     "unknown field for exponential; known: mean"),
    ({"dist": "exponential", "mean": "4"}, ".mean", "must be a number"),
    ({"dist": "exponential", "mean": float("nan")}, ".mean", "must be finite"),
    ({"dist": "exponential", "mean": 10**400}, ".mean", "must be finite"),
    (-3, "", "must be a finite number ≥ 0"),
    (float("inf"), "", "must be a finite number ≥ 0"),
    (True, "", "must be a number or a distribution object"),
    ("fast", "", "must be a number or a distribution object"),
    ({"dist": "exponential", "mean": 4e6}, "", "mean must be ≤ 3.6e+06 ms"),
    ({"dist": "lognormal", "median": 1, "p99": 1e300}, "", "mean must be ≤ 3.6e+06 ms"),
    ({"dist": "pareto", "scale": 4e6, "alpha": 1}, ".scale", "must be ≤ 3.6e+06"),
    ({"dist": "mixture", "weights": [1], "parts": [{"dist": "exponential", "mean": -1}]},
     ".parts[0].mean", "must be ≥ 0"),
])
def test_bad_distributions_are_refused(spec, field, message):
    d = doc()
    d["nodes"][1]["params"]["service_time_ms"] = spec
    err = refused(d)
    assert (err.field, err.message) == (f"nodes[1].params.service_time_ms{field}", message)


def test_scaling_a_distribution_by_zero_gives_zero():
    lognormal = distributions.parse({"dist": "lognormal", "median": 0.5, "p99": 2})
    for factor in (0.0, 5e-324):
        draw = lognormal.scaled(factor).sampler(random.Random(1))
        assert draw() == 0.0
    assert lognormal.scaled(2).arg("median") == 1.0


# -- limits ------------------------------------------------------------------------------------

def many(nodes: int, edges: int) -> dict[str, Any]:
    """``nodes`` services joined by ``edges`` edges (no loops, ids unique)."""
    out: dict[str, Any] = {"nodes": [{"id": f"n{i}", "kind": "service"} for i in range(nodes)],
                           "edges": []}
    for i in range(edges):
        src = i % nodes
        dst = (src + 1 + i // nodes) % nodes
        out["edges"].append({"id": f"e{i}", "from": f"n{src}", "to": f"n{dst}"})
    return out


def test_two_hundred_nodes_and_a_thousand_edges_are_allowed():
    out = validate(many(200, 1000))
    assert (len(out["nodes"]), len(out["edges"])) == (200, 1000)


def test_more_than_two_hundred_nodes_are_refused():
    err = refused(many(201, 0))
    assert (err.field, err.message) == ("nodes", "at most 200 nodes, got 201")


def test_a_ten_thousand_node_document_is_refused_before_it_is_read():
    err = refused({"nodes": [{"id": f"n{i}", "kind": "nope"} for i in range(10_000)]})
    assert (err.field, err.message) == ("nodes", "at most 200 nodes, got 10000")


def test_more_than_a_thousand_edges_are_refused():
    err = refused(many(200, 1001))
    assert (err.field, err.message) == ("edges", "at most 1000 edges, got 1001")


def test_limits_can_be_tightened():
    assert refused(doc(), Limits(max_nodes=2)).field == "nodes"


def test_duration_is_at_most_an_hour():
    assert validate(doc(duration_s=3600))["scenario"]["duration_s"] == 3600
    err = refused(doc(duration_s=3600.5))
    assert (err.field, err.message) == ("scenario.duration_s", "must be ≤ 3600")


def test_rate_is_at_most_a_hundred_thousand_rps():
    d = doc()
    d["nodes"][0]["params"]["rate_rps"] = 100_000
    assert validate(d)["nodes"][0]["params"]["rate_rps"] == 100_000
    d["nodes"][0]["params"]["rate_rps"] = 100_000.5
    err = refused(d)
    assert (err.field, err.message) == ("nodes[0].params.rate_rps", "must be ≤ 100000")


@pytest.mark.parametrize(("path", "field"), [
    (("nodes", 1, "label"), "nodes[1].label"),
    (("title",), "title"),
    (("pattern",), "pattern"),
])
def test_labels_are_at_most_eighty_characters(path, field):
    d = doc()
    target: Any = d
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = "é" * 80
    validate(d)
    target[path[-1]] = "é" * 81
    err = refused(d)
    assert (err.field, err.message) == (field, "must be at most 80 characters")


def test_faults_are_limited_in_number():
    d = doc(faults=[{"at_s": i, "target": "api", "action": "hang"} for i in range(201)])
    assert refused(d).field == "scenario.faults"


# -- faults ------------------------------------------------------------------------------------

def test_a_valid_fault_is_kept():
    out = validate(with_fault(until_s=9, target="api", action="error_rate", value=1,
                              error_class="business"))
    assert out["scenario"]["faults"] == [{"at_s": 5, "until_s": 9, "target": "api",
                                          "action": "error_rate", "value": 1.0,
                                          "error_class": "business"}]


@pytest.mark.parametrize(("fault", "field", "message"), [
    ({"target": "ghost", "action": "crash"}, "target", "no node or edge with id 'ghost'"),
    ({"target": "api", "action": "explode"}, "action",
     "must be " + ", ".join(repr(a) for a in faults.ACTIONS[:-1])
     + f" or {faults.ACTIONS[-1]!r}"),
    ({"target": "api", "action": "error_rate", "value": 1.5}, "value",
     "must be a number from 0 to 1"),
    ({"target": "api", "action": "error_rate"}, "value", "must be a number from 0 to 1"),
    ({"target": "api", "action": "error_rate", "value": "half"}, "value",
     "must be a number from 0 to 1"),
    ({"target": "api", "action": "error_rate", "value": 10**400}, "value",
     "must be a number from 0 to 1"),
    ({"target": "api", "action": "slow", "value": 10_001}, "value",
     "must be a number from 0 to 10000"),
    ({"target": "e1", "action": "drop_rate", "value": -0.1}, "value",
     "must be a number from 0 to 1"),
    ({"target": "users", "action": "rate", "value": 1001}, "value",
     "must be a number from 0 to 1000"),
    ({"target": "api", "action": "rate", "value": 2}, "target", "'rate' targets a client"),
    ({"target": "api", "action": "crash", "value": 1}, "value", "'crash' takes no value"),
    ({"target": "api", "action": "crash", "until_s": 5}, "until_s", "must be after at_s"),
    ({"target": "api", "action": "crash", "until_s": 4}, "until_s", "must be after at_s"),
    ({"target": "api", "action": "crash", "at_s": -1}, "at_s", "must be ≥ 0"),
    ({"target": "api", "action": "slow", "value": 2, "error_class": "business"},
     "error_class", "only 'error_rate' takes an error class"),
    ({"target": "api", "action": "crash", "param": "workers"}, "param",
     "only 'set' takes a parameter"),
    ({"target": "api", "action": "set", "param": "threads", "value": 2}, "param",
     "service has no parameter 'threads'; known: "
     + ", ".join(p.name for p in Service.PARAMS)),
    ({"target": "api", "action": "set", "value": 2}, "param",
     "'set' needs the parameter to set; service has: "
     + ", ".join(p.name for p in Service.PARAMS)),
    ({"target": "e1", "action": "set", "param": "timeout_ms", "value": 2}, "action",
     "'set' applies to nodes, not edges"),
])
def test_bad_faults_are_refused(fault, field, message):
    err = refused(doc(faults=[{"at_s": 5, **fault}]))
    assert (err.field, err.message) == (f"scenario.faults[0].{field}", message)


def test_a_set_fault_checks_its_value_against_the_declaration():
    err = refused(with_fault(target="api", action="set", param="workers", value=0))
    assert (err.field, err.message) == ("scenario.faults[0].value", "must be ≥ 1")
    out = validate(with_fault(target="api", action="set", param="workers", value=2.0))
    assert out["scenario"]["faults"][0] == {"at_s": 5, "target": "api", "action": "set",
                                            "value": 2, "param": "workers"}


@pytest.mark.parametrize("action", [a for a in faults.NODE_ACTIONS
                                    if a not in faults.EDGE_ACTIONS])
def test_node_only_actions_are_refused_on_edges(action):
    fault: dict[str, Any] = {"target": "e1", "action": action}
    if action in faults.VALUE_BOUNDS:
        fault["value"] = 0.5
    if action == "set":
        fault.update(param="timeout_ms", value=5)
    err = refused(with_fault(**fault))
    assert (err.field, err.message) == ("scenario.faults[0].action",
                                        f"{action!r} applies to nodes, not edges")


@pytest.mark.parametrize(("action", "value"), [("drop_rate", 1.0), ("partition", None)])
def test_edge_actions_on_a_node_cut_every_edge_touching_it(action, value):
    # Deliberately allowed: aimed at a node, an edge action isolates it (faults.py).
    fault: dict[str, Any] = {"at_s": 0, "target": "api", "action": action}
    if value is not None:
        fault["value"] = value
    d = doc(faults=[fault], duration_s=2)
    d["nodes"][0]["params"]["timeout_ms"] = 200
    summary, _ = run(d)
    assert summary["requests"]["sent"] > 50
    assert summary["requests"]["succeeded"] == 0
    assert summary["nodes"]["api"]["processed"] == 0


# -- crashes at named points, and parameters checked against the wiring ------------------------
def flow_doc(**fault: Any) -> dict[str, Any]:
    """shop → orchestrator → payment, inventory (participants that declare crash points)."""
    document = {
        "version": 1,
        "nodes": [{"id": "shop", "kind": "client", "params": {}},
                  {"id": "boss", "kind": "orchestrator",
                   "params": {"steps": ["payment.charge", "inventory.reserve"]}},
                  {"id": "payment", "kind": "participant", "params": {}},
                  {"id": "inventory", "kind": "participant", "params": {}}],
        "edges": [{"id": "e1", "from": "shop", "to": "boss"},
                  {"id": "e2", "from": "boss", "to": "payment"},
                  {"id": "e3", "from": "boss", "to": "inventory"}],
        "scenario": {"duration_s": 10, "faults": [fault] if fault else []},
    }
    return document


def test_a_crash_at_a_declared_point_is_kept_with_its_downtime():
    checked = validate(flow_doc(at_s=1, target="payment", action="crash",
                                point="after_commit_before_reply", down_s=0.5))
    fault = checked["scenario"]["faults"][0]
    assert fault["point"] == "after_commit_before_reply" and fault["down_s"] == 0.5


@pytest.mark.parametrize(("fault", "field", "message"), [
    ({"target": "payment", "action": "crash", "point": "before_lunch"},
     "scenario.faults[0].point", "a participant has no crash point 'before_lunch'; its "
                                 "points: after_commit_before_reply"),
    ({"target": "shop", "action": "crash", "point": "after_commit"},
     "scenario.faults[0].point", "its points: none"),
    ({"target": "payment", "action": "slow", "value": 2, "point": "after_commit_before_reply"},
     "scenario.faults[0].point", "only 'crash' takes a point"),
    ({"target": "payment", "action": "crash", "down_s": 2},
     "scenario.faults[0].down_s", "only a crash at a point takes down_s"),
    ({"target": "payment", "action": "crash", "point": "after_commit_before_reply",
      "down_s": 0}, "scenario.faults[0].down_s", "must be > 0"),
])
def test_a_bad_crash_point_names_the_field(fault, field, message):
    error = refused(flow_doc(at_s=1, **fault))
    assert error.field == field
    assert message in error.message


def test_an_orchestrator_step_needs_an_edge_to_its_participant():
    document = flow_doc()
    document["nodes"][1]["params"]["steps"] = ["payment.charge", "shipping.schedule"]
    error = refused(document)
    assert error.field == "nodes[1].params.steps[1]"
    assert "no edge from this node to 'shipping'" in error.message


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"steps": ["payment"]}, "steps[0]", "'payment' is not participant.action"),
    ({"steps": ["payment.charge/inventory.refund"]}, "steps[0]",
     "a compensation runs on its step's participant"),
    ({"steps": []}, "steps", "needs at least one step"),
    ({"pivot": "shipping.schedule"}, "pivot", "is not one of the steps"),
])
def test_orchestrator_steps_are_checked(params, field, message):
    document = flow_doc()
    document["nodes"][1]["params"].update(params)
    error = refused(document)
    assert error.field == f"nodes[1].params.{field}"
    assert message in error.message
