"""The command line, run as a learner or a script runs it: ``python -m patterns``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from patterns import catalog
from patterns.__main__ import main
from patterns.topology import validate

ROOT = Path(__file__).resolve().parents[2]
SLUG = "request-response"  # the worked example: users → api → db


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "patterns", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def ok(*args: str) -> str:
    out = cli(*args)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


def summary(*args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ok("run", *args))
    return result


def write(tmp_path: Path, document: Any, name: str = "doc.json") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document),
                    encoding="utf-8")
    return str(path)


def small_document() -> dict[str, Any]:
    return {"nodes": [{"id": "users", "kind": "client", "params": {"rate_rps": 20}},
                      {"id": "api", "kind": "service", "params": {}}],
            "edges": [{"id": "e", "from": "users", "to": "api"}],
            "scenario": {"duration_s": 2}}


# -- list and show -----------------------------------------------------------------------------

def test_list_names_every_registered_pattern():
    lines = ok("list").splitlines()
    assert [line.split("\t")[0] for line in lines] == list(catalog.PATTERNS)
    for line, pattern in zip(lines, catalog.PATTERNS.values(), strict=True):
        variants = sorted(pattern.variants())
        assert line == f"{pattern.SLUG}\t{pattern.CATEGORY}\t{pattern.NAME}" + (
            f"\tvariants: {', '.join(variants)}" if variants else "")


def test_a_named_variant_is_shown_and_run():
    document = json.loads(ok("show", "leader-election", "--variant", "lease"))
    assert {n["kind"] for n in document["nodes"]} == {"lease_elector", "lease_store"}
    result = summary("leader-election", "--variant", "lease", "--duration", "20")
    assert result["pattern_slug"] == "leader-election"
    assert "dual_leader_ms" in result["pattern"]


def test_show_prints_the_canonical_document_with_its_teaching_fault():
    document = json.loads(ok("show", SLUG))
    assert document == catalog.get(SLUG).canonical()
    out = validate(document)
    assert out["pattern"] == SLUG
    assert out["scenario"]["faults"], "the teaching fault is in the canonical scenario"


def test_show_baseline_prints_the_baseline_document():
    document = json.loads(ok("show", SLUG, "--baseline"))
    out = validate(document)
    assert out["variant"] == "baseline"
    assert out["scenario"]["faults"] == validate(json.loads(ok("show", SLUG)))["scenario"][
        "faults"], "the baseline sees the same faults"


@pytest.mark.parametrize("slug", list(catalog.PATTERNS))
def test_every_pattern_shows_documents_that_validate(slug, capsys):
    # In-process (the same code as the subprocess) so that 39 patterns stay quick.
    for args in (["show", slug], ["show", slug, "--baseline"]):
        assert main(args) == 0
        out = validate(json.loads(capsys.readouterr().out))
        assert out["pattern"] == slug


# -- run ---------------------------------------------------------------------------------------

def test_run_prints_the_summary():
    result = summary(SLUG, "--duration", "5")
    requests = result["requests"]
    assert {"sent", "succeeded", "failed", "rejected", "timed_out"} <= set(requests)
    finished = sum(requests[k] for k in ("succeeded", "failed", "rejected", "timed_out"))
    assert finished + requests["in_flight"] == requests["sent"] > 500
    assert set(result["latency_ms"]) >= {"mean", "p50", "p90", "p99", "p999", "max"}
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert result["throughput_rps"] == pytest.approx(requests["succeeded"] / 5, abs=0.01)
    assert set(result["nodes"]) == {"users", "api", "db"}
    for node_id, node in result["nodes"].items():
        assert {"kind", "processed", "utilisation", "max_queue", "states"} <= set(node), node_id
    assert result["nodes"]["api"]["kind"] == "service"
    assert result["nodes"]["db"]["processed"] > 500
    assert isinstance(result["pattern"], dict) and result["pattern"]
    assert result["checks"] and all({"name", "ok"} <= set(c) for c in result["checks"])
    assert result["duration_s"] == 5


def test_seed_picks_the_random_draws():
    first = summary(SLUG, "--duration", "3", "--seed", "1")
    again = summary(SLUG, "--duration", "3", "--seed", "1")
    other = summary(SLUG, "--duration", "3", "--seed", "2")
    assert first == again
    assert first["seed"] == 1 and other["seed"] == 2
    assert first["latency_ms"] != other["latency_ms"]


def test_duration_sets_the_simulated_seconds():
    result = summary(SLUG, "--duration", "2")
    assert result["duration_s"] == 2
    assert result["requests"]["sent"] == pytest.approx(2 * 200, rel=0.15)


def test_set_changes_a_node_parameter():
    assert summary(SLUG, "--duration", "3")["nodes"]["api"]["max_busy"] > 1
    result = summary(SLUG, "--duration", "3", "--set", "api.workers=1")
    assert result["nodes"]["api"]["max_busy"] == 1


def test_set_changes_an_edge_parameter():
    result = summary(SLUG, "--duration", "3", "--set", "users-api.drop_rate=1")
    assert result["requests"]["sent"] > 300
    assert result["requests"]["succeeded"] == 0
    assert result["nodes"]["api"]["processed"] == 0


def test_set_takes_json_values():
    before = summary(SLUG, "--duration", "3")["nodes"]["api"]["utilisation"]
    result = summary(SLUG, "--duration", "3", "--set",
                     'api.service_time_ms={"dist": "constant", "value": 30}',
                     "--set", "users.timeout_ms=null")
    # 200 req/s × (30 ms + the database call) over 8 workers, against ≈ 6 ms before.
    assert before < 0.25
    assert result["nodes"]["api"]["utilisation"] > 0.6


def test_baseline_runs_the_system_without_the_pattern():
    result = summary(SLUG, "--duration", "3", "--baseline")
    assert result["variant"] == "baseline"
    assert "inbox" in result["nodes"]
    assert summary(SLUG, "--duration", "3")["variant"] == "pattern"


def test_run_takes_a_document_file(tmp_path):
    result = summary(write(tmp_path, small_document()))
    assert result["duration_s"] == 2
    assert result["requests"]["sent"] > 10
    assert result["pattern_slug"] is None and result["checks"] == []


def test_jsonl_prints_events_in_time_order():
    lines = ok("run", SLUG, "--duration", "2", "--format", "jsonl").splitlines()
    assert len(lines) > 1000
    events = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) and "t" in e and "k" in e for e in events)
    times = [e["t"] for e in events]
    assert times == sorted(times)
    kinds = {e["k"] for e in events}
    assert {"msg.send", "msg.recv", "req.done", "metric"} <= kinds
    assert events[-1]["k"] == "run.end"
    assert events[-1]["summary"]["requests"]["sent"] == sum(
        1 for e in events if e["k"] == "req.done") + events[-1]["summary"]["requests"][
        "in_flight"]


# -- bad input ---------------------------------------------------------------------------------

def bad_documents(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name → (arguments, what the one line on stderr must say)."""
    unknown_kind = small_document()
    unknown_kind["nodes"][1]["kind"] = "mainframe"
    dangling = small_document()
    dangling["edges"][0]["to"] = "ghost"
    negative = small_document()
    negative["nodes"][0]["params"]["rate_rps"] = -5
    huge = {"nodes": [{"id": f"n{i}", "kind": "service"} for i in range(10_000)]}
    odd_key = small_document()
    odd_key["nodes"][1]["params"]["bad\nkey"] = 1
    return {
        "malformed JSON": ([write(tmp_path, '{"nodes": [', "a.json")], "source: "),
        "too many digits": ([write(tmp_path, '{"version": 1' + "0" * 5000 + "}", "b.json")],
                            "source: "),
        "too deep": ([write(tmp_path, "[" * 100_000 + "]" * 100_000, "c.json")], "source: "),
        "an array": ([write(tmp_path, [small_document()], "d.json")],
                     "the document must be a JSON object"),
        "unknown kind": ([write(tmp_path, unknown_kind, "e.json")],
                         "nodes[1].kind: unknown kind 'mainframe'; available: "),
        "dangling edge": ([write(tmp_path, dangling, "f.json")],
                          "edges[0].to: no node with id 'ghost'"),
        "negative rate": ([write(tmp_path, negative, "g.json")],
                          "nodes[0].params.rate_rps: must be ≥ 0"),
        "10,000 nodes": ([write(tmp_path, huge, "h.json")], "nodes: at most 200 nodes"),
        "odd key": ([write(tmp_path, odd_key, "i.json")], "nodes[1].params.'bad\\nkey'"),
        "unknown slug": (["no-such-pattern"], "source: 'no-such-pattern' is neither"),
        "bad --set": ([SLUG, "--set", "workers=4"], "--set: expected node.param=value"),
        "unknown --set target": ([SLUG, "--set", "ghost.workers=4"],
                                 "--set: no node or edge with id 'ghost'"),
        "unknown --set param": ([SLUG, "--set", "api.threads=4"],
                                "nodes[1].params.threads: unknown parameter"),
        "bad --set value": ([SLUG, "--set", "api.workers=0"],
                            "nodes[1].params.workers: must be ≥ 1"),
        "bad --seed": ([SLUG, "--seed", "abc"], "argument --seed: invalid int value"),
        "zero --duration": ([SLUG, "--duration", "0"], "scenario.duration_s: must be > 0"),
        "long --duration": ([SLUG, "--duration", "4000"],
                            "scenario.duration_s: must be ≤ 3600"),
        "baseline of no pattern": ([write(tmp_path, small_document(), "j.json"), "--baseline"],
                                   "pattern: --baseline needs"),
    }


def test_bad_input_is_one_line_on_stderr_naming_the_field(tmp_path):
    for name, (args, says) in bad_documents(tmp_path).items():
        out = cli("run", *args)
        assert out.returncode == 2, (name, out.stderr)
        assert out.stdout == "", name
        lines = out.stderr.splitlines()
        assert len(lines) == 1, (name, out.stderr)
        assert says in lines[0], (name, lines[0])


@pytest.mark.parametrize(("args", "says"), [
    (["show", "no-such-pattern"], f"slug: unknown pattern 'no-such-pattern'; available: "
     f"{', '.join(sorted(catalog.PATTERNS))}"),
    (["frobnicate"], "argument command: invalid choice"),
    (["run", "leader-election", "--variant", "nope"],
     "--variant: leader-election has no variant 'nope'; variants: lease"),
    (["show", "saga", "--variant", "nope"],
     "--variant: saga has no variant 'nope'; variants: choreography"),
    ([], "the following arguments are required: command"),
])
def test_bad_commands_are_one_line_too(args, says):
    out = cli(*args)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.splitlines() == [out.stderr.strip()]
    assert says in out.stderr
