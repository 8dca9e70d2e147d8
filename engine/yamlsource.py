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
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import Problem

PathItem = str | int
#: Definitions nest a handful of levels; far deeper is a mistake (or an attack) that would exhaust the stack.
MAX_DEPTH = 64
#: Values once aliases (``*name``) are expanded: a few anchors can otherwise stand for billions of items.
MAX_NODES = 100_000
#: The largest shipped definition is about 7 KB; a file far larger is a mistake (a paste, a log), and reading
#: its positions with the pure-Python parser would take minutes.
MAX_BYTES = 1_000_000


class TooLarge(ValueError):
    """A document nested too deeply or too large once its aliases are expanded."""


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
        #: paths of keys written in an old spelling, as the rewritten ``data`` has them -> as the file has them
        #: (``engine.spelling``): problems point at, and name, what the file says
        self.renamed: dict[tuple[PathItem, ...], tuple[PathItem, ...]] = {}

    def respelled(self, data: Any, renamed: dict[tuple[PathItem, ...], tuple[PathItem, ...]]) -> "YamlSource":
        """The same file with ``data`` rewritten to the new spelling; positions still come from the file."""
        copy = YamlSource(self.file, self._tree, data=data, text=self._text)
        copy.renamed = dict(renamed)
        return copy

    def original(self, path: Sequence[PathItem]) -> list[PathItem]:
        """``path`` in the data as the file writes it (the longest renamed prefix replaced)."""
        steps = tuple(path)
        for n in range(len(steps), 0, -1):
            if steps[:n] in self.renamed:
                return list(self.renamed[steps[:n]]) + list(steps[n:])
        return list(steps)

    @property
    def text(self) -> str:
        """The source as read: kept versions of definitions are stored as text (``engine.versions``)."""
        return self._text or ""

    @property
    def tree(self) -> Any:
        if self._tree is None and self._text is not None:
            try:
                self._tree = YAML(typ="rt", pure=True).load(self._text)
            except (YAMLError, RecursionError, ValueError):
                self._text = None  # libyaml read it but the position parser does not: problems go to line 1
        return self._tree

    def position(self, path: Sequence[PathItem], key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the deepest node of ``path`` that exists.

        ``key=True`` points at the last mapping key instead of its value (for
        "unknown key" problems).
        """
        path = self.original(path)
        node = self.tree
        line, col = 0, 0
        if isinstance(node, (CommentedMap, CommentedSeq)) and node.lc.line is not None:
            line, col = node.lc.line, node.lc.col
        for i, step in enumerate(path):
            last = i == len(path) - 1
            try:
                if isinstance(node, CommentedMap) and step in node:
                    line, col = node.lc.key(step) if (last and key) else node.lc.value(step)
                    node = node[step]
                elif isinstance(node, CommentedSeq) and isinstance(step, int) and 0 <= step < len(node):
                    line, col = node.lc.item(step)
                    node = node[step]
                else:
                    break
            except (KeyError, IndexError, TypeError):
                break  # a key merged in by ``<<:`` has no position of its own: the mapping's is the nearest
        return line + 1, col + 1

    def problem(self, path: Sequence[PathItem], message: str, hint: str = "", key: bool = False) -> Problem:
        line, col = self.position(path, key=key)
        return Problem(self.file, line, col, format_path(self.original(path)), message, hint)


def format_path(path: Sequence[PathItem]) -> str:
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else str(step)
    return text


def plain(node: Any) -> Any:
    """ruamel's round-trip types as plain dict/list/str/int/float/bool (dates as ISO text).

    Raises :class:`TooLarge` beyond :data:`MAX_DEPTH` levels or :data:`MAX_NODES` values."""
    return _plain(node, 0, [0])


def _plain(node: Any, depth: int, count: list[int]) -> Any:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise TooLarge(f"more than {MAX_NODES} values (with aliases expanded)")
    if depth > MAX_DEPTH:
        raise TooLarge(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, dict):
        return {str(k): _plain(v, depth + 1, count) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, depth + 1, count) for v in node]
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


def _deepest_line(text: str) -> tuple[int, int]:
    """Where brackets first nest deeper than :data:`MAX_DEPTH` (1-based line, column), or 1:1."""
    depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        for col, char in enumerate(line, start=1):
            depth += (char in "[{") - (char in "]}")
            if depth > MAX_DEPTH:
                return number, col
    return 1, 1


def _oversized(display: str, size: int) -> Problem:
    return Problem(display, 1, 1, "", f"the file is too large ({size / 1e6:.1f} MB; at most {MAX_BYTES / 1e6:g} MB)",
                   "a definition file holds one form or workflow; split it, or remove what was pasted in")


def _too_large(display: str, text: str, why: str) -> Problem:
    line, col = _deepest_line(text) if "deep" in why else (1, 1)
    return Problem(display, line, col, "", f"the document is too large: {why}",
                   "definitions nest a few levels and use an anchor only for a small shared part")


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
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(display, 1, 1, "", f"cannot read file: {exc.strerror or exc}")]
    if len(raw) > MAX_BYTES:
        return None, [_oversized(display, len(raw))]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(display, line, col, "", f"not UTF-8 text: byte {raw[exc.start]:#04x} ({exc.reason})",
                              "save the file as UTF-8 (every editor can; 中文 must not be GBK)")]
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
    if len(text) > MAX_BYTES:
        return None, [_oversized(display, len(text.encode("utf-8", "surrogatepass")))]
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
                try:
                    return YamlSource(display, data=plain(data), text=text), []
                except TooLarge as exc:
                    return None, [_too_large(display, text, str(exc))]
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
    except YAMLError as exc:  # e.g. a control character (ReaderError): it knows the offset, not the line
        offset = getattr(exc, "position", None)
        line, col = ((text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1)
                     if isinstance(offset, int) else (1, 1))
        what = str(getattr(exc, "reason", "") or exc).strip().splitlines()[0]
        return None, [Problem(display, line, col, "", f"YAML error: {what}",
                              "remove control characters; definitions are plain UTF-8 text")]
    except RecursionError:
        return None, [_too_large(display, text, f"nested more than {MAX_DEPTH} levels deep")]
    if tree is None:
        return None, [Problem(display, 1, 1, "", "file is empty", "a definition file holds one mapping")]
    try:
        return YamlSource(display, tree, text=text), []
    except TooLarge as exc:
        return None, [_too_large(display, text, str(exc))]
