"""Old spellings of the DSL, read as the new ones: the one place that maps them (issue 12).

Definitions written before the DSL was made consistent keep loading: the versions kept in the store
(``engine.versions``) are old texts, and admins' own files may be. Before a workflow file is checked
against its schema, :func:`respell` rewrites every old spelling to the new one, and returns a warning
for each (``civicflow lint`` prints them, at the old key, with the new spelling as the hint). Problems
found later in the rewritten file point at the old keys (``YamlSource.renamed``).

The new spellings: a time is always ``after: <duration>`` and the move taken when it has passed is
always ``then: <transition id>`` (``timeout``, ``notice``, ``collect``; a ``deadline`` moves nothing, it
flags and escalates), a condition that gates a step is ``when`` (field properties keep ``show_if`` /
``required_if``), and the publication record is ``public_record`` (``public`` lists cases on the public
page). docs/definitions.md, "Old spellings", lists them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from .errors import Problem
from .yamlsource import PathItem, YamlSource, format_path

Path = tuple[PathItem, ...]


@dataclass(frozen=True)
class Renamed:
    """Key ``old`` of the mappings at ``where`` (``*``: any state / any item) is now ``new``."""

    where: tuple[str, ...]
    old: str
    new: str
    why: str = ""               # what the reader should know besides the new name

    def hint(self, value: Any) -> str:
        return f"write {_shown(self.new, value)}{'; ' + self.why if self.why else ''}"


def _shown(key: str, value: Any) -> str:
    """``key: value`` as the file would have it (a long expression cut short)."""
    if isinstance(value, bool):
        return f"{key}: {'true' if value else 'false'}"
    if isinstance(value, (str, int, float)):
        shown = str(value)
        return f"{key}: {shown if len(shown) <= 40 else shown[:37] + '...'}"
    return f"{key}: ..."


#: Every old spelling of a workflow key that is a plain rename (a state's ``after: 3d -> close``, which
#: becomes a block, is rewritten in :func:`respell` itself).
WORKFLOW: tuple[Renamed, ...] = (
    Renamed(("states", "*", "notice"), "duration", "after"),
    Renamed(("states", "*", "notice"), "on_expiry", "then"),
    Renamed(("states", "*", "collect"), "deadline", "after"),
    Renamed(("states", "*", "collect"), "on_deadline", "then"),
    Renamed(("states", "*", "deadline"), "within", "after"),
    Renamed(("states", "*", "transitions", "*"), "guard", "when"),
    Renamed(("states", "*"), "publish", "public_record",
            "it keeps a tamper-evident record; listing cases on the public page is public: true"),
)


def _places(node: Any, where: tuple[str, ...], path: Path = ()) -> Iterator[tuple[Path, dict]]:
    """The mappings at ``where`` inside ``node``, with their paths."""
    if not where:
        if isinstance(node, dict):
            yield path, node
        return
    step, rest = where[0], where[1:]
    if step == "*":
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            yield from _places(child, rest, path + (key,))
    elif isinstance(node, dict) and step in node:
        yield from _places(node[step], rest, path + (step,))


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def respell(source: YamlSource, kind: str) -> tuple[YamlSource, list[Problem], list[Problem]]:
    """``source`` with every old spelling rewritten (a new source: parsed sources are shared between
    loads, so never changed), the warnings (one per old key) and the problems (old and new spelling of
    one key both given)."""
    if kind != "workflow" or not isinstance(source.data, dict):
        return source, [], []
    data = _copy(source.data)
    renamed: dict[Path, Path] = {}
    warnings: list[Problem] = []
    problems: list[Problem] = []

    def both(path: Path, old: str, new: str, what: str) -> None:
        problems.append(source.problem(list(path) + [old], f"both {old!r} and {new!r} are given: {what}",
                                       f"keep {new}: and remove {old}:", key=True))

    for rule in WORKFLOW:
        for path, mapping in _places(data, rule.where):
            if rule.old not in mapping:
                continue
            if rule.new in mapping:
                both(path, rule.old, rule.new, f"{rule.old!r} is the old spelling of {rule.new!r}")
                continue
            value = mapping[rule.old]
            _rename(mapping, rule.old, rule.new, value)
            renamed[path + (rule.new,)] = path + (rule.old,)
            warnings.append(warning(source, list(path + (rule.old,)),
                                    f"{rule.old!r} is the old spelling of {rule.new!r}", rule.hint(value)))
    for path, state in _places(data, ("states", "*")):
        if "after" not in state:
            continue
        if "timeout" in state:
            both(path, "after", "timeout", "a state's 'after: 3d -> close' is the old spelling of 'timeout'")
            continue
        raw = state["after"]
        if isinstance(raw, str) and "->" in raw:
            duration, _, target = (part.strip() for part in raw.partition("->"))
            new: Any = {"after": duration, "then": target} if target else {"after": duration}
            hint = f"write timeout: {{after: {duration}, then: {target or '<transition>'}}}"
        else:
            new = raw  # not the old form either: the schema says what is wrong, at this key
            hint = "write timeout: {after: 3d, then: <transition>}"
        _rename(state, "after", "timeout", new)
        for inner in ((), ("after",), ("then",)):  # every part of the new block points back at the old key
            renamed[path + ("timeout",) + inner] = path + ("after",)
        warnings.append(warning(source, list(path + ("after",)), "a state's 'after: <duration> -> <transition>' is "
                                "the old spelling of 'timeout'", hint))
    if not warnings and not problems:
        return source, [], []
    return source.respelled(data, renamed), warnings, problems


def _rename(mapping: dict, old: str, new: str, value: Any) -> None:
    """``new: value`` where ``old`` stood, so the rewritten mapping keeps the file's order (problems come in
    file order)."""
    items = [(new, value) if k == old else (k, v) for k, v in mapping.items()]
    mapping.clear()
    mapping.update(items)


def warning(source: YamlSource, path: list[PathItem], message: str, hint: str) -> Problem:
    """A warning at the key ``path`` ends in: the definition loads, ``civicflow lint`` still says it."""
    line, col = source.position(path, key=True)
    return Problem(source.file, line, col, format_path(source.original(path)), message, hint, warning=True)
