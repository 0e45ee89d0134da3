"""bench/engine.py runs end to end: ``--quick`` prints the table and writes the JSON.

A smoke test, not a timed one: nothing here asserts a speed. It does check that the
benchmark's own correctness checks passed (every configuration agrees with Erlang C, and the
kernel tiers replay SimPy's sample path), since the script exits non-zero when one fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "engine.py"
TIERS = ("callbacks", "processes", "stack", "simpy")


def test_quick_run_prints_the_table_and_writes_results(tmp_path):
    out = tmp_path / "engine.json"
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("engine"))
    for column in ("wall s", "requests/s", "events/s", "× SimPy", "mean latency ms"):
        assert column in header
    for label in ("kernel, plain callbacks", "kernel, generator processes",
                  "full stack (client → service)", "SimPy"):
        assert any(line.startswith(label) for line in lines), label
    assert "Erlang C mean latency" in done.stdout

    result = json.loads(out.read_text())
    assert result["model"]["requests"] == 20_000 and result["repeats"] == 1
    assert result["events_per_request"] == 3
    assert set(result["tiers"]) == set(TIERS)
    for key in TIERS:
        tier = result["tiers"][key]
        assert tier["events_per_s"] > 0
        assert tier["events_per_s"] == pytest.approx(3 * tier["requests_per_s"])
        assert tier["agrees_with_erlang_c"]
    assert result["tiers"]["simpy"]["ratio_to_simpy"] == 1.0
    for key in ("callbacks", "processes"):
        assert result["tiers"][key]["agrees_with_simpy"] is True
