"""Sandboxed Jinja2 expressions for ``show_if``, ``compute`` and ``guard``.

Expressions are compiled once at load time in a ``SandboxedEnvironment``; nothing
is ever passed to ``eval``. The names an expression reads are known at load time so
the loader can reject references to fields that do not exist.
"""
from __future__ import annotations

import contextvars
import datetime as dt
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes, pass_context
from jinja2.parser import Parser
from jinja2.environment import TemplateExpression
from jinja2.runtime import Context
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


#: The context entry that tells :func:`choice` and :func:`choice_sum` the fields whose choices carry data
#: (field id -> its ``FieldSpec``); put there by whoever builds an expression's context (``choice_fields``).
CHOICE_FIELDS = "__choice_fields__"
#: The helpers whose first argument names a field instead of reading its value (``choice(reward, 'points')``).
CHOICE_HELPERS = ("choice", "choice_sum")


def choice_fields(fields: Iterable[Any]) -> dict[str, Any]:
    """The :data:`CHOICE_FIELDS` entry for an expression context over ``fields``: those with choices, and repeat
    groups (their rows' choice fields are found through them)."""
    return {f.id: f for f in fields if f.choices or f.fields}


def _picked(context: Context, ref: str) -> list[tuple[Any, Any, Any]]:
    """``(field, value, row)`` for each value picked in the field ``ref`` names: one for a select, one per
    ticked choice of a multiselect, one per row for ``rows.field`` (``row``: that row, else None)."""
    table = context.get(CHOICE_FIELDS) or {}
    name, _, sub = ref.partition(".")
    spec, value = table.get(name), context.get(name)
    if spec is None:
        return []
    if not sub:
        values = value if isinstance(value, list) else [value]
        return [(spec, v, None) for v in values if v is not None]
    inner = next((f for f in spec.fields if f.id == sub), None)
    if inner is None or not isinstance(value, list):
        return []
    found = []
    for row in value:
        if isinstance(row, dict):
            picked = row.get(sub)
            found += [(inner, v, row) for v in (picked if isinstance(picked, list) else [picked]) if v is not None]
    return found


@pass_context
def choice(context: Context, ref: str, key: str) -> Any:
    """What the chosen choice of a field carries under ``key``: ``choice(reward, 'points')`` -> 100. For a
    multiselect, or a select in a repeat's rows (``choice(items.reward, 'category')``): the list, one per pick."""
    name, _, sub = ref.partition(".")
    spec = (context.get(CHOICE_FIELDS) or {}).get(name)
    values = [f.choice_data(v).get(key) for f, v, _ in _picked(context, ref)]
    many = bool(sub) or isinstance(context.get(name), list) or (spec is not None and spec.kind.multiple)
    if many:
        return [v for v in values if v is not None]
    return values[0] if values else None


@pass_context
def choice_sum(context: Context, ref: str, key: str, weight: str | None = None) -> Any:
    """The sum of ``key`` over what is picked: ``choice_sum(skills, 'hours')`` over a multiselect's choices,
    ``choice_sum(items.reward, 'points', items.quantity)`` over a repeat's rows, each row's times its
    ``quantity``. A choice without the key adds nothing; a value that is not a number makes the sum unknown."""
    weight_field = weight.partition(".")[2] if weight else None
    total: float = 0
    for f, value, row in _picked(context, ref):
        amount = f.choice_data(value).get(key)
        if amount is None:
            continue
        factor = row.get(weight_field) if row is not None and weight_field else 1
        if factor is None:
            continue
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in (amount, factor)):
            return None
        total += amount * factor
    return total


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
    "choice": choice,
    "choice_sum": choice_sum,
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


class ChoiceRef(NamedTuple):
    """One ``choice(field, 'key')`` / ``choice_sum(...)`` in an expression, for the loader's checks: the field
    (``reward``, or ``items.reward`` in a repeat's rows), the key, the helper and the weight field if any."""

    helper: str
    field: str
    key: str
    weight: str | None = None


def _field_ref(node: nodes.Node, helper: str, what: str) -> str:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        return f"{node.node.name}.{node.attr}"
    raise ExpressionSyntaxError(f"{helper}() takes {what} as a field name, e.g. {helper}(reward, 'points') "
                                f"or {helper}(items.reward, 'points')")


def _choice_calls(expr: nodes.Node) -> list[ChoiceRef]:
    """Rewrite each call of a choice helper so that it receives the field's name (the helper reads the value and
    the field's choices from the context), and say what each one reads."""
    refs = []
    calls = ([expr] if isinstance(expr, nodes.Call) else []) + list(expr.find_all(nodes.Call))  # (find_all: below only)
    for call in calls:
        helper = call.node.name if isinstance(call.node, nodes.Name) else None
        if helper not in CHOICE_HELPERS:
            continue
        most = 3 if helper == "choice_sum" else 2
        if call.kwargs or call.dyn_args or call.dyn_kwargs or not 2 <= len(call.args) <= most:
            raise ExpressionSyntaxError(f"{helper}() takes a field and a key in quotes, e.g. {helper}(reward, 'points')"
                                        + (", and optionally a row field to multiply by" if most == 3 else ""))
        field_name = _field_ref(call.args[0], helper, "its first argument")
        key = call.args[1]
        if not (isinstance(key, nodes.Const) and isinstance(key.value, str)):
            raise ExpressionSyntaxError(f"the key of {helper}() is a name in quotes, e.g. {helper}(reward, 'points')")
        weight = _field_ref(call.args[2], helper, "the field to multiply by") if len(call.args) == 3 else None
        refs.append(ChoiceRef(helper, field_name, key.value, weight))
        call.args = [nodes.Const(field_name), key] + ([nodes.Const(weight)] if weight else [])
    return refs


@lru_cache(maxsize=4096)
def _compile(source: str) -> tuple[Any, frozenset[str], tuple[ChoiceRef, ...]]:
    """The compiled function, the names an expression uses and its choice helpers, once per text: the definition
    editor loads every definition again as the admin types, and the same expressions compile the same way."""
    try:
        # as Environment.compile_expression, with the choice helpers' field arguments made names
        parser = Parser(ENV, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno, None, None)
        names = frozenset(meta.find_undeclared_variables(ENV.parse("{{ (" + source + ") }}"))) - set(ENV.globals)
        refs = _choice_calls(expr)
        expr.set_environment(ENV)
        template = ENV.from_string(nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)], lineno=1))
    except TemplateSyntaxError as exc:
        raise ExpressionSyntaxError(_syntax_message(exc)) from None
    return TemplateExpression(template, False), names, tuple(refs)


class Expression:
    """A compiled expression: ``Expression("age(id_number) >= 60")``."""

    __slots__ = ("source", "names", "choice_refs", "_fn")

    def __init__(self, source: str):
        self.source = str(source)
        self._fn, self.names, self.choice_refs = _compile(self.source)

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
