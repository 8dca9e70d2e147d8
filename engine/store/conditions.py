"""Conditions on stored documents that every store can answer its own way: declarative ``where`` filters.

A lookup's ``where`` may be any Python predicate, which a store can only answer by reading every document
under the keys; a :class:`Condition` is also a predicate (``cond(doc)``, how the memory and TinyDB stores
use it), but says *what* it tests, so the PostgreSQL store translates it into SQL over the JSONB documents
(``engine.store.pg_conditions``) and the database filters, counts and pages. The list pages' filters (text
search, number and date ranges, choices, units) are conditions (``FieldType.condition``).

Each condition looks at one value, found by a ``path`` of keys from the document (``("data", "title")``;
a missing key or a non-object on the way is "no value"), and its Python test is written to give what the
SQL gives: only values of the JSON type a condition is about can match (text conditions look at strings,
ranges of numbers at numbers), so a stray value of another type never matches on any store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.store.base import Doc

Path = tuple[str, ...]
_MISSING = object()


def value_at(doc: Any, path: Path) -> Any:
    """The value at ``path`` in ``doc``, or ``_MISSING``."""
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return _MISSING
        doc = doc[key]
    return doc


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Condition:
    """A test of one document; ``cond(doc)`` is the test (so a condition is a ``where`` predicate too)."""

    def test(self, doc: Doc) -> bool:
        raise NotImplementedError

    def __call__(self, doc: Doc) -> bool:
        return self.test(doc)


@dataclass(frozen=True)
class Contains(Condition):
    """A string holding ``text``, ignoring case (Unicode lower case on both sides)."""

    path: Path
    text: str

    def test(self, doc: Doc) -> bool:
        value = value_at(doc, self.path)
        return isinstance(value, str) and self.text.lower() in value.lower()


@dataclass(frozen=True)
class Equals(Condition):
    """A string equal to ``text``, or a number (not a boolean) whose decimal text is ``text`` (``12``)."""

    path: Path
    text: str

    def test(self, doc: Doc) -> bool:
        value = value_at(doc, self.path)
        if isinstance(value, str):
            return value == self.text
        return isinstance(value, int) and not isinstance(value, bool) and str(value) == self.text


@dataclass(frozen=True)
class OneOf(Condition):
    """A string that is one of ``values`` (a unit and everything below it; a case in one of some states)."""

    path: Path
    values: tuple[str, ...]

    def test(self, doc: Doc) -> bool:
        value = value_at(doc, self.path)
        return isinstance(value, str) and value in self.values


@dataclass(frozen=True)
class Includes(Condition):
    """A list holding the string ``item`` (a multiple choice with that choice ticked)."""

    path: Path
    item: str

    def test(self, doc: Doc) -> bool:
        value = value_at(doc, self.path)
        return isinstance(value, list) and self.item in value


@dataclass(frozen=True)
class Truthy(Condition):
    """A value that is set (``flag``: true, not empty, not 0) or not (``flag`` False: also a missing one)."""

    path: Path
    flag: bool

    def test(self, doc: Doc) -> bool:
        value = value_at(doc, self.path)
        return bool(value is not _MISSING and value) == self.flag


@dataclass(frozen=True)
class NumberRange(Condition):
    """A number (not a boolean) from ``low`` to ``high``, both included (None: open)."""

    path: Path
    low: float | int | None = None
    high: float | int | None = None

    def test(self, doc: Doc) -> bool:
        value = value_at(doc, self.path)
        if not is_number(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


@dataclass(frozen=True)
class TextRange(Condition):
    """A string from ``low`` on (code point order, as ISO dates sort as time) and whose first ``len(high)``
    characters are at most ``high`` (so "to 2026-11" takes the whole month); empty bounds are open."""

    path: Path
    low: str = ""
    high: str = ""

    def test(self, doc: Doc) -> bool:
        value = value_at(doc, self.path)
        if not isinstance(value, str):
            return False
        return (not self.low or value >= self.low) and (not self.high or value[:len(self.high)] <= self.high)


@dataclass(frozen=True)
class All(Condition):
    """Every one of ``parts`` (none: everything passes)."""

    parts: tuple[Condition, ...]

    def test(self, doc: Doc) -> bool:
        return all(part.test(doc) for part in self.parts)


@dataclass(frozen=True)
class Nothing(Condition):
    """No document (a filter value that cannot match anything, e.g. a number range with unreadable bounds)."""

    def test(self, doc: Doc) -> bool:
        return False
