"""Lines per class in engine/ (issue 9: no class over ~300 lines). Run: python bench/class_sizes.py [limit]."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "engine"


def parse(text: str) -> ast.Module:
    """``ast.parse``, tried again on CPython 3.11.7's spurious "AST constructor recursion depth mismatch"
    SystemError (python/cpython#106905, fixed in 3.11.8: seen here when other threads run, as in the full test
    suite); any other problem, or the same one three times, is raised."""
    for attempt in range(3):
        try:
            return ast.parse(text)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def sizes() -> list[tuple[int, str]]:
    """(lines, "file:Class") for every class in engine/, biggest first."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT.parent)}:{node.name}"))
    return sorted(found, reverse=True)


if __name__ == "__main__":
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rows = sizes()
    for lines, name in rows[:15]:
        print(f"{lines:5d}  {name}{'  <- over ' + str(limit) if lines > limit else ''}")
    sys.exit(1 if rows and rows[0][0] > limit else 0)
