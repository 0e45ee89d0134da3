"""Export and import of curated scenarios as a JSON file (a list of scenario objects).

The file is what :meth:`Scenario.as_json` gives for each scenario. Importing checks every
item first and stores either all of them, in one transaction, or none: a bad file raises
:class:`ImportProblems` listing what is wrong, each problem naming the item and the field.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.core.exceptions import ValidationError
from django.db import transaction

from playground.models import Scenario

MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ITEMS = 500
# Reported per file: enough to fix a batch of mistakes, not a wall of text.
MAX_PROBLEMS = 20

# field → (the JSON type it must have, how to say so). ``document`` is checked by the schema.
FIELDS: dict[str, tuple[type | None, str]] = {
    "pattern": (str, "must be text"),
    "title": (str, "must be text"),
    "description": (str, "must be text"),
    "document": (None, ""),
    "featured": (bool, "must be true or false"),
    "order": (int, "must be a whole number"),
    "published": (bool, "must be true or false"),
}
REQUIRED = ("pattern", "title", "document")


class ImportProblems(ValueError):
    """A file that cannot be imported; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def export_json(scenarios: Any) -> bytes:
    """The export file for these scenarios, in their order."""
    return orjson.dumps([s.as_json() for s in scenarios], option=orjson.OPT_INDENT_2)


def _item(index: int, raw: Any) -> tuple[Scenario | None, list[str]]:
    """One item as an unsaved, validated Scenario, or the problems that stop it."""
    if not isinstance(raw, dict):
        return None, [f"item {index}: must be an object (a scenario), got "
                      f"{type(raw).__name__}"]
    title = raw.get("title")
    where = f"item {index}" + (f" (“{title[:60]}”)" if isinstance(title, str) and title else "")
    problems = [f"{where}: {key[:40]}: unknown field; expected "
                f"{', '.join(FIELDS)}" for key in raw if key not in FIELDS]
    problems += [f"{where}: {key}: is required" for key in REQUIRED if key not in raw]
    for key, (kind, message) in FIELDS.items():
        value = raw.get(key)
        # bool is an int in Python; JSON says true is not a number.
        if key in raw and kind is not None and (
                not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            problems.append(f"{where}: {key}: {message}")
    if problems:
        return None, problems
    scenario = Scenario(**{key: raw[key] for key in FIELDS if key in raw})
    try:
        scenario.full_clean()  # validates the document and replaces it by its checked form
    except ValidationError as exc:
        return None, [f"{where}: {field}: {message}"
                      for field, messages in exc.message_dict.items() for message in messages]
    return scenario, []


def parse_import(raw: bytes) -> list[Scenario]:
    """Every scenario in an export file, validated and unsaved; or ImportProblems."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise ImportProblems([f"the file is larger than {MAX_IMPORT_BYTES // 1024 // 1024} MB"])
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ImportProblems([f"the file is not valid JSON: {exc}"]) from None
    if not isinstance(data, list):
        raise ImportProblems(["the file must hold a list of scenarios (as the export gives), "
                              f"not a JSON {type(data).__name__}"])
    if not data:
        raise ImportProblems(["the file holds no scenarios"])
    if len(data) > MAX_IMPORT_ITEMS:
        raise ImportProblems([f"at most {MAX_IMPORT_ITEMS} scenarios per file, got "
                              f"{len(data)}"])
    scenarios: list[Scenario] = []
    problems: list[str] = []
    for index, item in enumerate(data, start=1):
        scenario, found = _item(index, item)
        problems += found
        if scenario is not None:
            scenarios.append(scenario)
    if problems:
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], f"… and {more} more problems"]
        raise ImportProblems(problems)
    return scenarios


def import_scenarios(raw: bytes) -> list[Scenario]:
    """Store every scenario of an export file as a new one, all or nothing."""
    scenarios = parse_import(raw)
    with transaction.atomic():
        for scenario in scenarios:
            scenario.save()
    return scenarios
