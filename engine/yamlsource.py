"""Reading YAML with positions: every value keeps the file, line and column it came from.

ruamel.yaml's round-trip loader builds only plain mappings, sequences and scalars (no
arbitrary objects); positions come from ``node.lc`` (0-based, reported 1-based).
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from .errors import Problem

PathItem = str | int


class YamlSource:
    """One parsed definition file: ``tree`` keeps positions, ``data`` is plain JSON-like Python.

    Give ``tree`` (a round-trip parse), or ``data`` and the ``text`` it came from: then the tree is parsed
    only when a position is first asked for, which is when there is a problem to report. The pure-Python
    round-trip parser is six times slower than libyaml's, and a server parses every definition at start.
    """

    def __init__(self, file: str, tree: Any = None, *, data: Any = None, text: str | None = None):
        self.file = file
        self._tree = tree
        self._text = text
        self.data = plain(tree) if data is None else data

    @property
    def text(self) -> str:
        """The source as read: kept versions of definitions are stored as text (``engine.versions``)."""
        return self._text or ""

    @property
    def tree(self) -> Any:
        if self._tree is None and self._text is not None:
            self._tree = YAML(typ="rt", pure=True).load(self._text)
        return self._tree

    def position(self, path: Sequence[PathItem], key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the deepest node of ``path`` that exists.

        ``key=True`` points at the last mapping key instead of its value (for
        "unknown key" problems).
        """
        node = self.tree
        line, col = 0, 0
        if isinstance(node, (CommentedMap, CommentedSeq)) and node.lc.line is not None:
            line, col = node.lc.line, node.lc.col
        for i, step in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, CommentedMap) and step in node:
                line, col = node.lc.key(step) if (last and key) else node.lc.value(step)
                node = node[step]
            elif isinstance(node, CommentedSeq) and isinstance(step, int) and 0 <= step < len(node):
                line, col = node.lc.item(step)
                node = node[step]
            else:
                break
        return line + 1, col + 1

    def problem(self, path: Sequence[PathItem], message: str, hint: str = "", key: bool = False) -> Problem:
        line, col = self.position(path, key=key)
        return Problem(self.file, line, col, format_path(path), message, hint)


def format_path(path: Sequence[PathItem]) -> str:
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else str(step)
    return text


def plain(node: Any) -> Any:
    """ruamel's round-trip types as plain dict/list/str/int/float/bool (dates as ISO text)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or type(node).__name__ == "ScalarBoolean":
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, dt.date):  # an unquoted 2024-01-01 is a YAML timestamp; JSON data holds text
        return node.isoformat()
    return node


def _fast_parser() -> YAML | None:
    """ruamel's safe loader on libyaml (``ruamel.yaml.clib``), if installed: plain values only, the same
    YAML 1.2 resolution and duplicate-key check as the round-trip loader (tests/test_loader.py compares them)."""
    try:
        import _ruamel_yaml  # noqa: F401 - ruamel.yaml.clib; only asking whether it is there
    except ImportError:
        return None
    return YAML(typ="safe", pure=False)


def read_yaml(path: Path, display: str) -> tuple[YamlSource | None, list[Problem]]:
    """Parse one file; a syntax error or duplicate key becomes a positioned Problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(display, 1, 1, "", f"cannot read file: {exc}")]
    return parse_yaml(text, display)


_DATE_LIKE = re.compile(r"(?<![\w.-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\w.:-])")


def _bad_date(text: str) -> tuple[int, int]:
    """1-based (line, col) of the first date-like word that is no day (1, 1 if none is found)."""
    for number, line in enumerate(text.splitlines(), 1):
        for match in _DATE_LIKE.finditer(line.split("#", 1)[0]):
            try:
                dt.date(*(int(g) for g in match.groups()))
            except ValueError:
                return number, match.start() + 1
    return 1, 1


def parse_yaml(text: str, display: str) -> tuple[YamlSource | None, list[Problem]]:
    """Parse definition text that is not (or no longer) a file, e.g. a version kept in the store;
    ``display`` is the virtual file name problems carry (``workflows/leave.yaml@v1``)."""
    # The round-trip parser builds only plain mappings, sequences and scalars (it never constructs
    # arbitrary Python objects), and unlike the "safe" one it keeps the positions we report.
    parser = YAML(typ="rt", pure=True)
    fast = _fast_parser()
    if fast is not None:
        try:
            data = fast.load(text)
        except Exception:  # noqa: BLE001 - any trouble: the round-trip parser below says where, exactly
            data = None
        else:
            if data is not None:
                return YamlSource(display, data=plain(data), text=text), []
    try:
        tree = parser.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = (exc.problem or exc.context or "invalid YAML").strip()
        hint = "each key may appear only once in a mapping" if "duplicate key" in what else "check indentation, colons and quotes"
        return None, [Problem(display, line, col, "", f"YAML error: {what}", hint)]
    except ValueError as exc:  # an unquoted 2027-02-30 is a YAML timestamp that is no day: ruamel raises plainly
        line, col = _bad_date(text)
        return None, [Problem(display, line, col, "", f"YAML error: not a date: {exc}",
                              "write a real day as 2027-10-01, or quote a text that looks like a date")]
    if tree is None:
        return None, [Problem(display, 1, 1, "", "file is empty", "a definition file holds one mapping")]
    return YamlSource(display, tree, text=text), []
