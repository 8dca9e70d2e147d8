"""Sandboxed Jinja2 expressions for ``show_if``, ``compute`` and ``guard``.

Expressions are compiled once at load time in a ``SandboxedEnvironment``; nothing
is ever passed to ``eval``. The names an expression reads are known at load time so
the loader can reject references to fields that do not exist.
"""
from __future__ import annotations

import contextvars
import datetime as dt
from functools import lru_cache
from typing import Any, Callable, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

from . import idnumber
from .clock import SHANGHAI, now as clock_now

_now: contextvars.ContextVar[dt.datetime | None] = contextvars.ContextVar("now", default=None)


def _current() -> dt.datetime:
    moment = _now.get() or clock_now()
    # a naive time means Shanghai time (as FrozenClock does), not the server's local zone
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


def _to_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and value:
        text = value.strip()
        if len(text) == 18 and text[:17].isdigit():  # resident ID number: birth date at 6..14
            text = f"{text[6:10]}-{text[10:12]}-{text[12:14]}"
        try:
            return dt.date.fromisoformat(text[:10])
        except ValueError:
            return None
    return None


def age(value: Any) -> int | None:
    """Whole years since a birth date, or since the birth date inside an 18-digit ID number."""
    born = _to_date(value)
    if born is None:
        return None
    today = _current().astimezone(SHANGHAI).date()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def age_on(value: Any, on: Any) -> int | None:
    """Whole years from a birth date (or the one inside an 18-digit ID number) to the date ``on``."""
    born, day = _to_date(value), _to_date(on)
    if born is None or day is None:
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def id_valid(value: Any) -> bool:
    """Whether an 18-digit resident ID number is well formed (GB 11643: a real birth date, the right check digit)."""
    return idnumber.is_valid(value)


def id_birth_date(value: Any) -> str | None:
    """The birth date inside a valid 18-digit ID number, as ``"1949-12-31"``."""
    return idnumber.birth_date(value).isoformat() if idnumber.is_valid(value) else None  # type: ignore[union-attr]


def id_sex(value: Any) -> str | None:
    """``"male"`` or ``"female"`` (the values of the shipped ``gender`` list) from a valid 18-digit ID number."""
    return idnumber.sex(value)


def days_between(start: Any, end: Any) -> int | None:
    a, b = _to_date(start), _to_date(end)
    return None if a is None or b is None else (b - a).days


def today() -> str:
    return _current().astimezone(SHANGHAI).date().isoformat()


def now() -> str:
    return _current().astimezone(SHANGHAI).isoformat(timespec="seconds")


def count(items: Any, value: Any = None) -> int:
    """Number of items (or of items equal to ``value``); 0 for nothing."""
    if not items:
        return 0
    return len(items) if value is None else sum(1 for i in items if i == value)


#: Functions every expression may call. Documented in docs/definitions.md.
HELPERS: Mapping[str, Callable[..., Any]] = {
    "age": age,
    "age_on": age_on,
    "id_valid": id_valid,
    "id_birth_date": id_birth_date,
    "id_sex": id_sex,
    "days_between": days_between,
    "today": today,
    "now": now,
    "count": count,
}


class _Env(ImmutableSandboxedEnvironment):
    """Read-only: an expression may not change the data it looks at (``skills.append(...)``)."""


ENV = _Env(undefined=StrictUndefined)
ENV.globals.clear()
ENV.globals.update(HELPERS)
# range is handy in expressions; the sandbox's version refuses ranges over 100000 items
# (the builtin would let ``range(10**9) | list`` exhaust memory)
ENV.globals["range"] = safe_range
#: Every name an expression can use without a field of that name (a field must not hide one).
BUILTINS: frozenset[str] = frozenset(ENV.globals)


class ExpressionSyntaxError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _syntax_message(exc: TemplateSyntaxError) -> str:
    """Jinja's parser speaks of templates; an admin wrote one expression."""
    text = (exc.message or "syntax error").replace("end of template", "end of expression")
    if text == "chunk after expression":
        return "unexpected text after the expression (a missing operator such as 'and' or '=='?)"
    return text


@lru_cache(maxsize=4096)
def _compile(source: str) -> tuple[Any, frozenset[str]]:
    """The compiled function and the names an expression uses, once per text: the definition editor loads
    every definition again as the admin types, and the same expressions compile the same way."""
    try:
        fn = ENV.compile_expression(source, undefined_to_none=False)
        tree = ENV.parse("{{ (" + source + ") }}")
    except TemplateSyntaxError as exc:
        raise ExpressionSyntaxError(_syntax_message(exc)) from None
    return fn, frozenset(meta.find_undeclared_variables(tree)) - set(ENV.globals)


class Expression:
    """A compiled expression: ``Expression("age(id_number) >= 60")``."""

    __slots__ = ("source", "names", "_fn")

    def __init__(self, source: str):
        self.source = str(source)
        self._fn, self.names = _compile(self.source)

    def evaluate(self, context: Mapping[str, Any], at: dt.datetime | None = None) -> Any:
        """The value, or ``None`` when it cannot be computed (a missing or wrong-typed input).

        Half-filled forms are normal, so an expression over an empty field is "unknown",
        not an error.
        """
        token = _now.set(at)
        try:
            value = self._fn(**context)
        except Exception:  # noqa: BLE001 - any runtime failure in user expressions means "unknown"
            return None
        finally:
            _now.reset(token)
        # the sandbox answers forbidden attribute access with an Undefined that raises later
        return None if isinstance(value, Undefined) else value

    def test(self, context: Mapping[str, Any], at: dt.datetime | None = None) -> bool:
        return bool(self.evaluate(context, at))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"
