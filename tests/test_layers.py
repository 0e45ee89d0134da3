"""patterns/ is pure Python: no Django import anywhere below it."""

import ast
from pathlib import Path

PATTERNS = Path(__file__).resolve().parent.parent / "patterns"


def test_patterns_imports_no_django():
    offenders = []
    for path in PATTERNS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}: {n}" for n in names
                          if n.split(".")[0] in ("django", "channels", "celery")]
    assert offenders == []
