"""Every registered pattern: runs, passes its own checks, and matches its golden summary.

The golden files in tests/golden/ are each pattern's canonical scenario and baseline with
the canonical seed. A change in behaviour shows up as a diff that someone must accept on
purpose: `PATTERNS_UPDATE_GOLDEN=1 pytest tests/patterns/test_catalog.py` rewrites them.
"""

import json
import os
from pathlib import Path

import pytest

from patterns import catalog
from patterns.topology import validate
from tests.helpers import run

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SLUGS = sorted(catalog.PATTERNS)
# Every pattern's canonical scenario (variant None) and each named variant's.
SCENARIOS = [(slug, None) for slug in SLUGS] + [
    (slug, name) for slug in SLUGS for name in sorted(catalog.get(slug).variants())]


@pytest.mark.parametrize("slug", SLUGS)
def test_canonical_and_baseline_documents_validate(slug):
    pattern = catalog.get(slug)
    canonical = validate(pattern.canonical())
    assert canonical["pattern"] == slug
    assert canonical["scenario"]["faults"], "the canonical scenario carries its teaching fault"
    baseline = validate(pattern.baseline_document(pattern.canonical()))
    assert baseline["variant"] == "baseline"
    # Same seed, load and faults; a rewrite into another topology moves faults by its map.
    moved = [{**f, "target": pattern.BASELINE_NODE_MAP.get(f["target"], f["target"])}
             for f in canonical["scenario"]["faults"]]
    assert baseline["scenario"] == {**canonical["scenario"], "faults": moved}


@pytest.mark.parametrize("slug", SLUGS)
def test_texts_are_there(slug):
    text = catalog.get(slug).describe()
    for key in ("name", "summary", "problem", "tradeoffs", "teaching_fault", "baseline"):
        assert text[key], key
    assert text["observations"]


@pytest.mark.parametrize(("slug", "variant"), SCENARIOS)
def test_the_pattern_passes_its_own_checks(slug, variant):
    summary, _ = run(slug, variant=variant)
    assert summary["checks"], "a pattern evaluates at least one invariant"
    failing = [c for c in summary["checks"] if not c["ok"]]
    assert failing == []


def _golden(slug: str, scenario: str | None, variant: str) -> dict:
    summary, _ = run(slug, variant=scenario, baseline=variant == "baseline")
    # Round-trip through JSON so tuples and floats compare as the file stores them.
    return json.loads(json.dumps(summary))


@pytest.mark.parametrize("variant", ["pattern", "baseline"])
@pytest.mark.parametrize(("slug", "scenario"), SCENARIOS)
def test_golden_summary(slug, scenario, variant):
    name = f"{slug}.{variant}" if scenario is None else f"{slug}.{scenario}-{variant}"
    path = GOLDEN / f"{name}.json"
    summary = _golden(slug, scenario, variant)
    if os.environ.get("PATTERNS_UPDATE_GOLDEN") or not path.exists():
        path.write_text(json.dumps(summary, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        if not os.environ.get("PATTERNS_UPDATE_GOLDEN"):
            pytest.fail(f"{path.name} did not exist: written now, check it and commit it")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert summary == expected
