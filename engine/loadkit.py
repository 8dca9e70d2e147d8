"""What every load-time builder shares (the loader and each ``engine.mechanics`` module): did-you-mean hints,
bilingual text read from YAML, and the names a guard may read besides the case's fields.

A leaf module: it imports nothing from the engine, so mechanics modules can use it without import cycles.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable

#: Names a guard may read besides the case's fields.
GUARD_NAMES = frozenset({"user", "state", "case"})


def did_you_mean(name: Any, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(str(name), sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else ""


def text(value: Any) -> dict[str, str] | None:
    """A YAML text (a string, or ``{zh, en}`` with en optional) as ``{zh, en}``."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"zh": value, "en": value}
    return {"zh": value["zh"], "en": value.get("en") or value["zh"]}


def msg(zh: str, en: str) -> dict[str, str]:
    """A user-visible message, Chinese first."""
    return {"zh": zh, "en": en}
