"""SQL for :mod:`engine.store.conditions` on ``PostgresStore``: each condition becomes a boolean expression over
the JSONB document ``d.doc``, with its values as named parameters, so a filtered lookup is filtered, counted
and paged by the database.

Each expression gives exactly what the condition's Python test gives (tests/test_store_conditions.py runs
both on the same documents):

- a value is reached with ``->`` one key at a time (``->`` on anything but an object is NULL, as
  ``value_at`` finds no value), and its JSON type is checked first (``jsonb_typeof``);
- strings compare with ``COLLATE "C"`` (code point order, as Python compares them);
- lower case for ``Contains`` is ICU's (``und-x-icu``), which agrees with Python's ``str.lower`` where the C
  library's does not (``İ``, a final ``Σ``); a server built without ICU uses its default collation's;
- numbers compare as ``numeric`` against the bound's shortest decimal text (``repr``), which orders exactly as
  the floats do.
"""
from __future__ import annotations

from typing import Any

from engine.store import conditions as c

#: The collation ``Contains`` lowers text with (None: the database's default).
ICU = "und-x-icu"


class Compiler:
    """Turns conditions into SQL, collecting the parameters (``%(cN)s``) into ``params``."""

    def __init__(self, lower_collation: str | None = ICU, column: str = "d.doc") -> None:
        self.params: dict[str, Any] = {}
        self.column = column
        self.lower = f'COLLATE "{lower_collation}"' if lower_collation else ""

    def _param(self, value: Any, cast: str = "") -> str:
        name = f"c{len(self.params)}"
        self.params[name] = value
        return f"%({name})s{cast}"

    def _at(self, path: c.Path) -> str:
        expr = self.column
        for key in path:
            expr = f"({expr} -> {self._param(key, '::text')})"
        return expr

    def _text(self, path: c.Path) -> str:
        """The string at ``path`` as text (NULL if absent; only used after a ``jsonb_typeof`` check)."""
        return f"({self._at(path)} #>> '{{}}')"

    def sql(self, cond: c.Condition) -> str:
        if isinstance(cond, c.All):
            return "(" + " AND ".join(self.sql(p) for p in cond.parts) + ")" if cond.parts else "TRUE"
        if isinstance(cond, c.Nothing):
            return "FALSE"
        if isinstance(cond, c.Contains):
            pattern = "%" + _like_escape(cond.text.lower()) + "%"
            return (f"(jsonb_typeof({self._at(cond.path)}) = 'string' AND "
                    f"lower({self._text(cond.path)} {self.lower}) LIKE {self._param(pattern, '::text')})")
        if isinstance(cond, c.Equals):
            value = self._at(cond.path)
            number = _integer_text(cond.text)
            if number is None:
                return f"({value} = to_jsonb({self._param(cond.text, '::text')}))"
            return (f"({value} = to_jsonb({self._param(cond.text, '::text')}) OR "
                    f"({value} = {self._param(str(number), '::jsonb')} AND {self._int_check(value)}))")
        if isinstance(cond, c.OneOf):
            return (f"(jsonb_typeof({self._at(cond.path)}) = 'string' AND "
                    f"{self._text(cond.path)} COLLATE \"C\" = ANY({self._param(list(cond.values), '::text[]')}))")
        if isinstance(cond, c.Includes):
            value = self._at(cond.path)
            return (f"(jsonb_typeof({value}) = 'array' AND "
                    f"{value} @> jsonb_build_array({self._param(cond.item, '::text')}))")
        if isinstance(cond, c.Truthy):
            value = self._at(cond.path)
            truthy = (f"(CASE jsonb_typeof({value}) WHEN 'boolean' THEN {value} = 'true' "
                      f"WHEN 'number' THEN {value} <> '0' WHEN 'string' THEN {value} <> '\"\"' "
                      f"WHEN 'array' THEN {value} <> '[]' WHEN 'object' THEN {value} <> '{{}}' ELSE FALSE END)")
            return truthy if cond.flag else f"(NOT {truthy})"
        if isinstance(cond, c.NumberRange):
            value = self._at(cond.path)
            parts = ["TRUE"]  # CASE, not AND: only a number may be cast (AND does not say what runs first)
            if cond.low is not None:
                parts.append(f"({value})::numeric >= {self._param(_decimal(cond.low), '::numeric')}")
            if cond.high is not None:
                parts.append(f"({value})::numeric <= {self._param(_decimal(cond.high), '::numeric')}")
            return f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN {' AND '.join(parts)} ELSE FALSE END)"
        if isinstance(cond, c.TextRange):
            text = self._text(cond.path)
            parts = [f"jsonb_typeof({self._at(cond.path)}) = 'string'"]
            if cond.low:
                parts.append(f"{text} COLLATE \"C\" >= {self._param(cond.low, '::text')}")
            if cond.high:
                parts.append(f"left({text}, {self._param(len(cond.high), '::int')}) COLLATE \"C\" "
                             f"<= {self._param(cond.high, '::text')}")
            return "(" + " AND ".join(parts) + ")"
        raise TypeError(f"no SQL for the condition {cond!r}")

    def _int_check(self, value: str) -> str:
        """A JSON number that Python reads back as an int (no fraction, no exponent in its text)."""
        return f"({value})::text !~ '[.eE]'"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _integer_text(text: str) -> int | None:
    """The int whose ``str`` is ``text`` exactly (``"12"``, ``"-3"``; not ``"012"`` nor ``"+1"``), else None."""
    try:
        number = int(text)
    except ValueError:
        return None
    return number if str(number) == text else None


def _decimal(value: float | int) -> str:
    """The shortest decimal text of a bound: floats round-trip through it, so the order is kept exactly."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"a range bound must be a finite number, not {value!r}")
        return repr(value)
    return str(int(value))


def compile_where(cond: c.Condition, lower_collation: str | None = ICU) -> tuple[str, dict[str, Any]]:
    """``(sql, params)`` of one condition over ``d.doc``."""
    compiler = Compiler(lower_collation)
    return compiler.sql(cond), compiler.params
