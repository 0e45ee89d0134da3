"""The headless command line.

    python -m patterns list
    python -m patterns show SLUG
    python -m patterns run SLUG|FILE.json [--seed N] [--duration S]
                           [--set node.param=value]... [--baseline]
                           [--format summary|jsonl]

``run`` prints the summary as one JSON object, or every event as one JSON object per line.
A bad document or argument prints one line naming the field on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import orjson

from patterns import catalog
from patterns.engine.kernel import Stalled
from patterns.run import prepare, simulate, summarise
from patterns.topology import TopologyError

EXIT_BAD_INPUT = 2
# How much simulated time runs between two writes of the event stream.
SLICE_MS = 10_000.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line and exit 2, like a bad document
        self.exit(EXIT_BAD_INPUT, f"patterns: error: {_one_line(message)}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m patterns", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the patterns, one per line: slug, category, name")
    show = sub.add_parser("show", help="a pattern's canonical topology as JSON")
    show.add_argument("slug")
    show.add_argument("--baseline", action="store_true", help="show the baseline instead")
    show.add_argument("--variant", help="a named variant of the pattern (e.g. lease)")
    run = sub.add_parser("run", help="run a pattern's canonical scenario or a document")
    run.add_argument("source", help="a pattern slug or a topology JSON file")
    run.add_argument("--seed", type=int)
    run.add_argument("--duration", type=float, help="simulated seconds")
    run.add_argument("--set", dest="assignments", action="append", default=[],
                     metavar="NODE.PARAM=VALUE", help="override a parameter (repeatable)")
    run.add_argument("--baseline", action="store_true",
                     help="run the pattern's baseline (the system without it)")
    run.add_argument("--variant", help="a named variant of the pattern's canonical scenario")
    run.add_argument("--format", choices=("summary", "jsonl"), default="summary")
    return parser


def _load(source: str) -> str | dict[str, Any]:
    if source in catalog.PATTERNS:
        return source
    path = Path(source)
    if not path.exists():
        raise TopologyError("source", f"{source!r} is neither a pattern slug nor a file; "
                            f"patterns: {', '.join(sorted(catalog.PATTERNS))}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError("source", f"cannot read {source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise TopologyError("source", f"{source} is not valid JSON: {exc.msg} at line "
                            f"{exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. a number of more digits than Python will convert
        raise TopologyError("source", f"{source} is not usable JSON: {exc}") from None
    except RecursionError:
        raise TopologyError("source", f"{source} is nested too deeply") from None
    if not isinstance(raw, dict):
        raise TopologyError("", "the document must be a JSON object")
    return raw


def _run(args: argparse.Namespace) -> int:
    document = prepare(_load(args.source), seed=args.seed, duration_s=args.duration,
                       assignments=args.assignments, baseline=args.baseline,
                       variant=args.variant)
    out = sys.stdout.buffer
    if args.format == "summary":
        sim = simulate(document, trace="off").run()
    else:
        sim = simulate(document, trace="full")
        while not sim.done:
            sim.advance(sim.now + SLICE_MS)
            for event in sim.trace.drain():
                out.write(orjson.dumps(event))
                out.write(b"\n")
        out.write(orjson.dumps({"t": round(sim.now, 3), "k": "run.end",
                                "summary": summarise(sim)}))
        out.write(b"\n")
        return 0
    out.write(orjson.dumps(summarise(sim), option=orjson.OPT_INDENT_2))
    out.write(b"\n")
    return 0


def _pattern(slug: str) -> catalog.Pattern:
    if slug not in catalog.PATTERNS:
        raise TopologyError("slug", f"unknown pattern {slug!r}; available: "
                            f"{', '.join(sorted(catalog.PATTERNS))}")
    return catalog.PATTERNS[slug]


def _one_line(text: str) -> str:
    """Bad input is reported on exactly one line, whatever the input held."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            for pattern in catalog.PATTERNS.values():
                variants = ", ".join(sorted(pattern.variants()))
                print(f"{pattern.SLUG}\t{pattern.CATEGORY}\t{pattern.NAME}"
                      + (f"\tvariants: {variants}" if variants else ""))
            return 0
        if args.command == "show":
            pattern = _pattern(args.slug)
            try:
                document = pattern.document(args.variant)
            except KeyError as exc:
                raise TopologyError("--variant", str(exc.args[0])) from None
            if args.baseline:
                document = pattern.baseline_document(document)
            print(json.dumps(document, indent=2, ensure_ascii=False))
            return 0
        return _run(args)
    except TopologyError as exc:
        print(f"patterns: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stalled as exc:
        # A valid document whose model loops without delay: the scenario is what to fix.
        print(f"patterns: scenario: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
