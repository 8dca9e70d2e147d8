"""Field types: one class per ``type:`` a form field may have, registered in :data:`FIELD_KINDS`.

Each class says in one place what its type means everywhere: the JSON Schema of a value, typing of
input, reading an HTML post, the empty value in expressions, text for pages, the export cell, list
filters, the definition keys it takes and its load-time checks, the facts other code asks about
(numeric, date-like, holds files / choices / rows) and the macro of templates/_macros.html that renders it.
``FieldSpec.kind`` is the type object of a field, so callers ask ``f.kind.numeric`` instead of
comparing type names. A new field type is one class here (plus its row in docs/definitions.md and
its name in engine/schema/form.schema.json).
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Protocol, Sequence

from .store import conditions as cond

if TYPE_CHECKING:  # the specs import this module; at run time only their attributes are used
    from .spec import FieldSpec, OrgTree

#: ``from_html`` returns this when the post holds nothing for the field (e.g. no file was uploaded),
#: so that the field is left out of the values rather than set to an empty one.
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
#: A loader callback: ``report(path below the field, message, hint="", key=False)``.
Report = Callable[..., None]
#: Who a username is, for showing it: ``people(username)`` is the person's display name, or None when nobody
#: has that username (any more). Pages, lists, exports and the API pass the engine's (``Engine.people``).
People = Callable[[str], "str | None"]
DEFAULT_MAX_SIZE = 5 * 1024 * 1024
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
_INTEGER_TEXT = re.compile(r"[-+]?\d+")


class MultiDictLike(Protocol):
    def getlist(self, key: str) -> list[Any]: ...
    def __iter__(self) -> Any: ...


def is_empty(value: Any) -> bool:
    """No answer: what a page shows as blank and an export leaves as an empty cell."""
    return value is None or value == "" or value == []


def mask(value: Any) -> str:
    """Hide the middle of a sensitive value: 138****5678, 1101**********123X, 张*."""
    if value is None or value == "":
        return ""
    text = str(value)
    if len(text) <= 2:
        return text[0] + "*"
    if len(text) <= 6:
        return text[0] + "*" * (len(text) - 2) + text[-1]
    if len(text) < 11:  # keeping 3 + 4 would show 7-character values whole
        return text[:2] + "*" * (len(text) - 4) + text[-2:]
    keep = 3 if len(text) <= 11 else 4
    return text[:keep] + "*" * (len(text) - keep - 4) + text[-4:]


def human_size(size: int) -> str:
    return f"{size / 1024 / 1024:g}MB" if size >= 1024 * 1024 else f"{size / 1024:g}KB"


def _number(text: str) -> float | None:
    """The finite number ``text`` says, or None (``nan``, ``inf`` and ``1e999`` are no amount anyone means)."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _integer(text: str) -> int | None:
    """The whole number ``text`` says, or None (also for more digits than Python converts, 4300)."""
    if not _INTEGER_TEXT.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _non_finite(value: Any) -> bool:
    """A float that JSON cannot hold (NaN, infinity), or text that Python reads as one."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        try:
            return not math.isfinite(float(value))
        except ValueError:
            return False
    return False


# --------------------------------------------------------------------------- the base type

class FieldType:
    """A type of form field. Subclasses override the facts and methods where their type differs."""

    name: ClassVar[str] = ""
    # -- facts other code asks about
    numeric: ClassVar[bool] = False        # a number: metrics may sum it, aggregates score it, exports keep it a number
    date_like: ClassVar[bool] = False      # an ISO date or date-time text: deadlines, targets, date ranges
    holds_choices: ClassVar[bool] = False  # takes ``choices:``
    multiple: ClassVar[bool] = False       # its value is a list of several choices (choice_sum adds them up)
    holds_files: ClassVar[bool] = False    # an uploaded file reference ``{name, key, size, content_type}``
    holds_rows: ClassVar[bool] = False     # a list of rows of sub-fields (``fields:``)
    holds_unit: ClassVar[bool] = False     # an org unit id
    holds_case: ClassVar[bool] = False     # the number of another case
    holds_user: ClassVar[bool] = False     # the username (or usernames) of people: a step's role may name them
    tally: ClassVar[bool] = False          # an aggregate may count its values (votes: yes / no / abstain)
    list_column: ClassVar[bool] = True     # short enough to be a default column of a list page
    holds_value: ClassVar[bool] = True     # False: shown only (a note), never in data, exports or expressions
    starts_section: ClassVar[bool] = False  # a marker: the questions after it, to the next marker, are one fieldset
    starts_page: ClassVar[bool] = False    # a marker: the questions after it, to the next page, are one step
    text_limits: ClassVar[bool] = False    # min_length / max_length / pattern limit what is typed
    # -- rendering (templates/_macros.html and _search.html)
    widget: ClassVar[str] = "text"         # the macro that renders the input
    input_type: ClassVar[str] = "text"     # <input type> of the text widget
    attrs: ClassVar[Mapping[str, str]] = {}  # extra attributes of the input (inputmode, capture, ...)
    label_wraps: ClassVar[bool] = False    # the label follows the input inside one <label> (a tick box)
    search: ClassVar[str] = "text"         # the list filter: text | range | choices | orgunit | flag
    # -- XLSForm (engine.xlsform): the survey type a field of this type is written as; ``xlsform_native``: that
    #    type says it all (read back as this type without a civicflow_type column); an appearance it needs
    xlsform: ClassVar[str] = "text"
    xlsform_native: ClassVar[bool] = False
    xlsform_appearance: ClassVar[str] = ""
    # -- definition keys that only this type (and its subclasses) take, and what to say when another has one
    keys: ClassVar[tuple[str, ...]] = ()
    elsewhere: ClassVar[tuple[str, str]] = ("", "")  # (message with {key} and {type}, hint)

    # ------------------------------------------------------------------ checking and typing input
    def schema(self, f: FieldSpec, org: OrgTree | None = None) -> dict[str, Any]:
        """The JSON Schema of one value: the type's own part, then the text limits every type may carry."""
        s = self.value_schema(f, org)
        if f.min_length is not None:
            s["minLength"] = f.min_length
        if f.max_length is not None:
            s["maxLength"] = f.max_length
        if f.pattern:
            s["pattern"] = f.pattern
        return s

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "string"}

    def coerce(self, f: FieldSpec, value: Any) -> Any:
        """Best-effort typing of text input; what cannot be typed is kept as typed so the schema reports it."""
        if isinstance(value, str):
            value = self.normalise(value.strip())
        if value is None or value == "" or value == [] or value == {}:
            return None
        return self.parse(f, value) if isinstance(value, str) else value

    def normalise(self, text: str) -> str:
        """Typing habits to undo before checking (spaces in a phone number, a lowercase x)."""
        return text

    def parse(self, f: FieldSpec, text: str) -> Any:
        return text

    def clean(self, f: FieldSpec, value: Any) -> Any:
        """The value stored for the form (``None``: left out)."""
        return self.coerce(f, value)

    def from_html(self, f: FieldSpec, raw: MultiDictLike, key: str, files: Mapping[str, Any]) -> Any:
        """The value in an HTML form post (the last one if the key repeats), or :data:`ABSENT`."""
        got = raw.getlist(key)
        return got[-1] if got else ""

    def empty(self) -> Any:
        """The value of an unanswered field in expressions (guards, show_if, compute)."""
        return None

    # ------------------------------------------------------------------ messages
    required_message: ClassVar[str] = "required"  # key in forms.MESSAGES when the field is left out

    def error_message(self, f: FieldSpec, validator: str, limit: Any,
                      value: Any = None) -> tuple[str, dict[str, Any]] | None:
        """A message of this type for a failed schema keyword (key in forms.MESSAGES, parameters), or None;
        ``value`` is the value that failed it."""
        return None

    # ------------------------------------------------------------------ showing
    def display(self, f: FieldSpec, value: Any, lang: str = "zh", org: OrgTree | None = None,
                people: People | None = None) -> str:
        """One value as text for a page, list or export (repeats are rendered as tables elsewhere); ``people``
        names the users a user field holds (without it they show as their usernames)."""
        if is_empty(value):
            return ""
        return self.text(f, value, lang, org)

    def text(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None) -> str:
        return str(value)

    def masked(self, f: FieldSpec, value: Any, lang: str = "zh", org: OrgTree | None = None,
               people: People | None = None) -> str:
        """The text of a sensitive value for someone who may not see it."""
        return mask(self.display(f, value, lang, org, people))

    def export(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None, masked: bool,
               people: People | None = None) -> Any:
        """The spreadsheet cell: text (the export makes it formula-safe) or a number that stays a number."""
        return self.display(f, value, lang, org, people)

    # ------------------------------------------------------------------ list filters
    def wanted(self, f: FieldSpec, args: Mapping[str, str]) -> Any:
        """What the user searches this field for, from the query string (None: no filter)."""
        return (args.get(f.id) or "").strip() or None

    def condition(self, f: FieldSpec, wanted: Any, org: OrgTree) -> cond.Condition:
        """The filter ``wanted`` (what :meth:`wanted` read) as a store condition on a case document: every
        store answers it (PostgreSQL in SQL), so a filtered list is never a scan in Python. Text: contains,
        ignoring case."""
        return cond.Contains(("data", f.id), wanted)

    def matches(self, f: FieldSpec, value: Any, wanted: Any, org: OrgTree) -> bool:
        """Whether one value passes the filter: the :meth:`condition`'s own test."""
        return self.condition(f, wanted, org).test({"data": {f.id: value}})

    #: A filter on this type can be answered from the read model's index: ``terms`` says under which terms a
    #: stored value is filed, ``wanted_terms`` which terms a filter value looks up, such that ``matches`` is
    #: true exactly when they share one. Types that search by "contains" or by range keep ``where`` scans.
    indexed: ClassVar[bool] = False

    def terms(self, f: FieldSpec, value: Any, org: OrgTree) -> list[str]:
        return []

    def wanted_terms(self, f: FieldSpec, wanted: Any) -> list[str]:
        return [str(wanted)]

    # ------------------------------------------------------------------ uniqueness across cases
    #: A value of this type can be claimed by a workflow's ``unique`` rule (files and rows cannot).
    claimable: ClassVar[bool] = True

    def claim_term(self, f: FieldSpec, value: Any) -> str | None:
        """The value as a ``unique`` rule compares it across cases (None: nothing to claim): the stored value
        with typing habits undone once more (spaces inside, the type's own :meth:`normalise`), so that values
        people would call the same collide. The claims index is keyed by it: changing what it gives needs a
        bump of ``engine.readmodel.READMODEL_VERSION``."""
        if is_empty(value):
            return None
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return self.normalise(" ".join(str(value).split()))

    # ------------------------------------------------------------------ definitions
    def defaults(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """FieldSpec values this type fills in when the definition leaves them out."""
        return {}

    def check(self, item: Mapping[str, Any], report: Report) -> None:
        """Load-time checks of one field definition of this type (keys of other types: see :func:`check_keys`)."""


# --------------------------------------------------------------------------- the registry

FIELD_KINDS: dict[str, FieldType] = {}


def register(cls: type[FieldType]) -> type[FieldType]:
    if not cls.name or cls.name in FIELD_KINDS:
        raise ValueError(f"field type {cls.name!r}: no name, or registered twice")
    FIELD_KINDS[cls.name] = cls()
    return cls


def kind_of(type_name: str) -> FieldType:
    return FIELD_KINDS[type_name]


def names_where(fact: str) -> frozenset[str]:
    """The names of the types for which ``fact`` (e.g. ``"numeric"``) is true."""
    return frozenset(name for name, kind in FIELD_KINDS.items() if getattr(kind, fact))


def xlsform_types() -> dict[str, str]:
    """XLSForm survey type (lower case) -> the field type it is read as, for the types that say it all."""
    found: dict[str, str] = {}
    for kind in FIELD_KINDS.values():
        if kind.xlsform_native and not kind.xlsform_appearance:
            found.setdefault(kind.xlsform.lower(), kind.name)
    return found


def check_keys(type_name: str, item: Mapping[str, Any], report: Report) -> None:
    """The field's own checks, and every key in it that belongs to another type (``level`` on a text field)."""
    kind = FIELD_KINDS[type_name]
    owners: dict[str, FieldType] = {}
    for other in FIELD_KINDS.values():
        for key in other.keys:
            owners.setdefault(key, other)
    for key, owner in owners.items():
        if key in item and key not in kind.keys:
            message, hint = owner.elsewhere
            report([key], message.format(key=key, type=type_name), hint, key=True)
    for key, (applies, message, hint) in COMMON_KEYS.items():
        if key in item and not applies(kind):
            report([key], message.format(key=key, type=type_name), hint, key=True)
    kind.check(item, report)


#: Keys every field may be written with but that only some types give an effect: (does type take it,
#: message with {key} and {type}, hint). Keys only one type takes are that type's ``keys`` instead.
COMMON_KEYS: dict[str, tuple[Callable[[FieldType], bool], str, str]] = {
    **{key: (lambda k: k.numeric, "{key!r} has no effect on a {type} field: it bounds a number",
             "use type: integer, number or score, or min_length / max_length to limit text") for key in ("min", "max")},
    **{key: (lambda k: k.text_limits, "{key!r} has no effect on a {type} field: it limits typed text",
             "min_length, max_length and pattern belong to text, textarea, phone, id_number and email fields")
       for key in ("min_length", "max_length", "pattern")},
    "placeholder": (lambda k: k.widget in ("text", "textarea", "number"),
                    "'placeholder' has no effect on a {type} field: it has no text input",
                    "use help: to explain the field"),
    **{key: (lambda k: k.holds_rows, "{key!r} only belongs to a repeat field, not {type}", "")
       for key in ("min_rows", "max_rows")},
    **{key: (lambda k: k.holds_value and not k.holds_files and not k.holds_rows,
             "{key!r} has no effect on a {type} field", "a value of this type cannot be given in advance")
       for key in ("default", "compute")},
    **{key: (lambda k: k.holds_value, "{key!r} has no effect on a {type} field: it holds no value",
             "a note only shows its label; remove the key")
       for key in ("required", "required_if", "required_message", "sensitive", "message")},
}


# --------------------------------------------------------------------------- text

class _Words(FieldType):
    """Typed words: ``张三`` and ``张三 `` or ``Room A`` and ``room a`` are one value to a ``unique`` rule."""

    def claim_term(self, f: FieldSpec, value: Any) -> str | None:
        term = super().claim_term(f, value)
        return None if term is None else term.casefold()


@register
class TextType(_Words):
    name = "text"
    xlsform_native = True
    text_limits = True


@register
class TextareaType(_Words):
    name = "textarea"
    xlsform_appearance = "multiline"
    text_limits = True
    widget = "textarea"
    list_column = False  # a paragraph does not fit a list column


@register
class PhoneType(FieldType):
    name = "phone"
    text_limits = True
    input_type = "tel"
    attrs = {"inputmode": "tel", "autocomplete": "tel"}

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "string", "format": "cn-mobile"}

    def normalise(self, text: str) -> str:
        return re.sub(r"[\s-]", "", text)


@register
class IdNumberType(FieldType):
    name = "id_number"
    text_limits = True
    attrs = {"autocapitalize": "characters", "spellcheck": "false"}

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "string", "format": "cn-id-number"}

    def normalise(self, text: str) -> str:
        return text.upper()  # the check digit X is often typed lowercase


@register
class EmailType(_Words):
    name = "email"
    text_limits = True
    input_type = "email"

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "string", "format": "email"}


# --------------------------------------------------------------------------- numbers

class _Range(FieldType):
    """Searched by a range: ``<id>_from`` and ``<id>_to`` in the query string."""

    search = "range"

    def wanted(self, f: FieldSpec, args: Mapping[str, str]) -> Any:
        low, high = (args.get(f"{f.id}_from") or "").strip(), (args.get(f"{f.id}_to") or "").strip()
        return (low, high) if low or high else None


class _Numeric(_Range):
    numeric = True
    widget = "number"
    search = "range"

    def coerce(self, f: FieldSpec, value: Any) -> Any:
        value = super().coerce(f, value)
        # NaN or infinity (typed, computed or posted otherwise) stays text, so the schema rejects it under the
        # field: JSON, and so every store, cannot hold it.
        return str(value) if isinstance(value, float) and not math.isfinite(value) else value

    def error_message(self, f: FieldSpec, validator: str, limit: Any,
                      value: Any = None) -> tuple[str, dict[str, Any]] | None:
        # (a whole-number field says "enter a whole number" to these as to any other text)
        return ("finite", {}) if validator == "type" and limit == "number" and _non_finite(value) else None

    def export(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None, masked: bool,
               people: People | None = None) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value  # a number is never a formula; keep it a number so it sums
        return self.display(f, value, lang, org, people)

    def condition(self, f: FieldSpec, wanted: Any, org: OrgTree) -> cond.Condition:
        low, high = wanted  # a bound that is not a number is left open
        return cond.NumberRange(("data", f.id), _number(low) if low else None, _number(high) if high else None)


class _Bounded(_Numeric):
    """A number with the definition's own ``min`` / ``max``."""

    json_type: ClassVar[str] = "number"

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        s: dict[str, Any] = {"type": self.json_type}
        if f.min is not None:
            s["minimum"] = f.min
        if f.max is not None:
            s["maximum"] = f.max
        return s


@register
class IntegerType(_Bounded):
    name = "integer"
    xlsform = "integer"
    xlsform_native = True
    json_type = "integer"
    attrs = {"inputmode": "numeric"}

    def parse(self, f: FieldSpec, text: str) -> Any:
        number = _integer(text)
        return text if number is None else number


@register
class NumberType(_Bounded):
    name = "number"
    xlsform = "decimal"
    xlsform_native = True
    attrs = {"inputmode": "decimal"}

    def parse(self, f: FieldSpec, text: str) -> Any:
        number = _number(text)
        if number is None:
            return text
        return int(number) if number.is_integer() else number


@register
class ScoreType(NumberType):
    name = "score"
    xlsform_native = False

    def check(self, item: Mapping[str, Any], report: Report) -> None:
        if "min" not in item or "max" not in item:
            report([], "a score field needs 'min' and 'max'")


@register
class RatingType(_Numeric):
    name = "rating"
    xlsform = "integer"
    widget = "rating"

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "integer", "minimum": 1, "maximum": 5}

    def parse(self, f: FieldSpec, text: str) -> Any:
        number = _integer(text)
        return text if number is None else number

    def defaults(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"min": 1, "max": 5}

    def check(self, item: Mapping[str, Any], report: Report) -> None:
        for key in ("min", "max"):
            if key in item:
                report([key], "a rating is always 1 to 5", "use type: score for another range", key=True)


# --------------------------------------------------------------------------- dates

class _DateLike(_Range):
    date_like = True
    search = "range"

    def condition(self, f: FieldSpec, wanted: Any, org: OrgTree) -> cond.Condition:
        low, high = wanted  # ISO text sorts as time; "to 2026-11" takes the whole month
        return cond.TextRange(("data", f.id), low, high)


@register
class DateType(_DateLike):
    name = "date"
    xlsform = "date"
    xlsform_native = True
    widget = "date"

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "string", "format": "date"}


@register
class DateTimeType(_DateLike):
    name = "datetime"
    xlsform = "dateTime"
    xlsform_native = True
    widget = "datetime"

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "string", "format": "datetime-local"}  # <input type=datetime-local> gives minutes


# --------------------------------------------------------------------------- choices

class _Choices(FieldType):
    holds_choices = True
    tally = True
    search = "choices"
    keys = ("choices",)
    elsewhere = ("'choices' has no effect on a {type} field", "use type: select or multiselect")

    def check(self, item: Mapping[str, Any], report: Report) -> None:
        if "choices" not in item:
            report([], f"a {self.name} field needs 'choices'", "an inline list, or the name of a list in forms/choices.yaml")


@register
class SelectType(_Choices):
    name = "select"
    xlsform = "select_one"
    xlsform_native = True
    widget = "select"

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "string", "enum": [c.value for c in f.choices]}

    def text(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None) -> str:
        return f.choice_label(value, lang)

    def condition(self, f: FieldSpec, wanted: Any, org: OrgTree) -> cond.Condition:
        return cond.Equals(("data", f.id), wanted)

    indexed = True

    def terms(self, f: FieldSpec, value: Any, org: OrgTree) -> list[str]:
        return [] if value is None else [str(value)]


@register
class MultiselectType(_Choices):
    name = "multiselect"
    xlsform = "select_multiple"
    xlsform_native = True
    widget = "multiselect"
    required_message = "choose"
    multiple = True

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "array", "uniqueItems": True,
                             "items": {"type": "string", "enum": [c.value for c in f.choices]}}
        if f.required:
            s["minItems"] = 1
        return s

    def parse(self, f: FieldSpec, text: str) -> Any:
        return [text]

    def from_html(self, f: FieldSpec, raw: MultiDictLike, key: str, files: Mapping[str, Any]) -> Any:
        return [v for v in raw.getlist(key) if v != ""]  # one key per ticked box

    def empty(self) -> Any:
        return []

    def error_message(self, f: FieldSpec, validator: str, limit: Any,
                      value: Any = None) -> tuple[str, dict[str, Any]] | None:
        return ("choose", {}) if validator == "minItems" else None

    def text(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None) -> str:
        return ("、" if lang == "zh" else ", ").join(f.choice_label(v, lang) for v in value)

    def condition(self, f: FieldSpec, wanted: Any, org: OrgTree) -> cond.Condition:
        return cond.Includes(("data", f.id), wanted)

    indexed = True

    def terms(self, f: FieldSpec, value: Any, org: OrgTree) -> list[str]:
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def claim_term(self, f: FieldSpec, value: Any) -> str | None:
        picked = sorted(str(v) for v in value) if isinstance(value, list) else []
        return "\x1f".join(picked) if picked else None  # the same set of choices, in any order


@register
class CheckboxType(FieldType):
    name = "checkbox"
    xlsform = "acknowledge"
    xlsform_native = True
    widget = "checkbox"
    label_wraps = True
    tally = True
    search = "flag"
    required_message = "checkbox"

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "boolean"}
        if f.required:
            s["const"] = True  # a required tick box is a pledge: it must be ticked
        return s

    def clean(self, f: FieldSpec, value: Any) -> Any:
        return bool(value)

    def from_html(self, f: FieldSpec, raw: MultiDictLike, key: str, files: Mapping[str, Any]) -> Any:
        got = raw.getlist(key)
        return bool(got) and got[-1] not in ("", "0", "false", "off")

    def error_message(self, f: FieldSpec, validator: str, limit: Any,
                      value: Any = None) -> tuple[str, dict[str, Any]] | None:
        return ("checkbox", {}) if validator == "const" else None

    def text(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None) -> str:
        return ("是" if value else "否") if lang == "zh" else ("Yes" if value else "No")

    def condition(self, f: FieldSpec, wanted: Any, org: OrgTree) -> cond.Condition:
        return cond.Truthy(("data", f.id), wanted in ("1", "true", "on", "yes"))

    indexed = True

    def terms(self, f: FieldSpec, value: Any, org: OrgTree) -> list[str]:
        return ["1" if value else "0"]

    def wanted_terms(self, f: FieldSpec, wanted: Any) -> list[str]:
        return ["1" if wanted in ("1", "true", "on", "yes") else "0"]


# --------------------------------------------------------------------------- files

@register
class FileType(FieldType):
    name = "file"
    xlsform = "file"
    xlsform_native = True
    widget = "file"
    holds_files = True
    list_column = False
    claimable = False
    keys = ("accept", "max_size")
    elsewhere = ("{key!r} only belongs to a file or photo field", "")

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "object", "required": ["name", "key", "size", "content_type"],
                             "properties": {"name": {"type": "string"}, "key": {"type": "string"},
                                            "size": {"type": "integer", "minimum": 0},
                                            "content_type": {"type": "string"}}}
        if f.max_size:
            s["properties"]["size"]["maximum"] = f.max_size
        if f.accept:
            s["properties"]["content_type"]["enum"] = list(f.accept)
        return s

    def from_html(self, f: FieldSpec, raw: MultiDictLike, key: str, files: Mapping[str, Any]) -> Any:
        # new uploads and files kept from an earlier attempt, checked and saved by the web layer
        return files[key] if key in files else ABSENT

    def error_message(self, f: FieldSpec, validator: str, limit: Any,
                      value: Any = None) -> tuple[str, dict[str, Any]] | None:
        if validator == "maximum":
            return "file_size", {"limit": human_size(int(limit))}
        if validator == "enum":
            return "file_type", {"limit": ", ".join(a.split("/")[-1] for a in f.accept)}
        return None

    def text(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None) -> str:
        return str(value.get("name", "")) if isinstance(value, dict) else str(value)

    def defaults(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"accept": (), "max_size": DEFAULT_MAX_SIZE}


@register
class PhotoType(FileType):
    name = "photo"
    xlsform = "image"
    xlsform_native = True
    attrs = {"capture": "environment"}  # a phone opens its camera

    def defaults(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"accept": IMAGE_TYPES, "max_size": DEFAULT_MAX_SIZE}


# --------------------------------------------------------------------------- rows, units, cases

@register
class RepeatType(FieldType):
    name = "repeat"
    xlsform = "begin_repeat"
    xlsform_native = True
    widget = "rows"  # rendered by form_fields as a fieldset of rows, not by one input
    holds_rows = True
    list_column = False
    claimable = False
    keys = ("fields",)
    elsewhere = ("'fields' only belongs to a repeat field, not {type}", "")

    def schema(self, f: FieldSpec, org: OrgTree | None = None) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
        if f.min_rows:
            s["minItems"] = f.min_rows
        if f.max_rows is not None:
            s["maxItems"] = f.max_rows
        return s

    def clean(self, f: FieldSpec, value: Any) -> Any:
        return [r if isinstance(r, dict) else {} for r in value or []]  # each row is cleaned with its own fields

    def from_html(self, f: FieldSpec, raw: MultiDictLike, key: str, files: Mapping[str, Any]) -> Any:
        """Rows come as ``attendees-0-name``, ``attendees-1-name``..."""
        # a row is posted by its inputs, or only by an uploaded file (a row whose one column is a photo)
        indices = sorted({int(m.group(1)) for k in [*raw, *files]
                          if (m := re.fullmatch(re.escape(key) + r"-(\d+)-.+", k))})
        return [read_post(f.fields, raw, f"{key}-{i}-", files) for i in indices]

    def empty(self) -> Any:
        return []

    def export(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None, masked: bool,
               people: People | None = None) -> Any:
        """One line per row: ``物品: 椅子, 数量: 4``."""
        from .spec import tr
        if not isinstance(value, list):
            return ""
        lines = []
        for row in value:
            if not isinstance(row, dict):
                continue
            parts = []
            for sub in f.fields:
                item = row.get(sub.id)
                if is_empty(item):
                    continue
                text = sub.kind.display(sub, item, lang, org, people)
                if masked and sub.sensitive:
                    text = mask(text)
                parts.append(f"{tr(sub.label, lang)}: {text}")
            lines.append((", " if lang == "en" else "，").join(parts))
        return "\n".join(lines)

    def defaults(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"min_rows": 1 if item.get("required") else 0}  # a required group starts with one row

    def check(self, item: Mapping[str, Any], report: Report) -> None:
        if "fields" not in item:
            report([], "a repeat field needs 'fields' (the columns of one row)")


@register
class OrgUnitType(FieldType):
    name = "orgunit"
    widget = "orgunit"
    holds_unit = True
    search = "orgunit"
    keys = ("level",)
    elsewhere = ("'level' only belongs to an orgunit field", "")

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "string", "minLength": 1}
        if org is not None:
            s["enum"] = [u.id for u in org.at_level(f.level)]
        return s

    def error_message(self, f: FieldSpec, validator: str, limit: Any,
                      value: Any = None) -> tuple[str, dict[str, Any]] | None:
        return ("enum", {}) if validator == "enum" else None

    def text(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None) -> str:
        return org.path_name(value, lang) if org is not None and value in org.units else str(value)

    def condition(self, f: FieldSpec, wanted: Any, org: OrgTree) -> cond.Condition:
        return cond.OneOf(("data", f.id), tuple(org.below(wanted)))  # a unit finds everything below it

    indexed = True

    def terms(self, f: FieldSpec, value: Any, org: OrgTree) -> list[str]:
        return org.ancestors(value) if isinstance(value, str) and value else []  # found from every unit above


@register
class CaseType(FieldType):
    name = "case"
    xlsform = "integer"
    widget = "case"
    holds_case = True
    keys = ("workflow", "states")
    elsewhere = ("'{key}' only belongs to a case field", "")

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "integer", "minimum": 1}

    def parse(self, f: FieldSpec, text: str) -> Any:
        number = _integer(text)
        return text if number is None else number

    def text(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None) -> str:
        return f"#{value}"

    def condition(self, f: FieldSpec, wanted: Any, org: OrgTree) -> cond.Condition:
        return cond.Equals(("data", f.id), wanted)

    def check(self, item: Mapping[str, Any], report: Report) -> None:
        if "workflow" not in item:
            report([], "a case field needs 'workflow' (which process the case belongs to)")


# --------------------------------------------------------------------------- people

#: ``scope:`` of a user field: whose unit the people it may name are in, seen from the case's unit (at the start:
#: the start form's unit field, else the actor's unit): ``all`` anyone, ``unit`` that unit and below, or a level
#: (``community``: everyone in the case's community). The default is ``community``.
USER_SCOPES = ("all", "unit", "district", "street", "community", "grid", "building")
DEFAULT_USER_SCOPE = "community"
#: ``王芳 (resident)`` / ``王芳（resident）``: a name with its username, as the picker fills it in
_NAMED = re.compile(r"^.*?[(（]\s*([^()（）\s]+)\s*[)）]$")
_SEPARATORS = re.compile(r"[,，、;；\n]+")


@register
class UserType(FieldType):
    """People: the username of one user (``multiple: true``: a list of them), picked from the active users that
    hold one of ``roles`` (if given) within ``scope``. Stored as usernames, shown by display name. Whether the
    person exists, is active, holds the role and is in scope is checked by the engine against the store
    (``engine.people``); a step's ``roles: [{field: <id>}]`` lets the person named here take it."""

    name = "user"
    widget = "user"
    holds_user = True
    search = "text"
    xlsform = "text"  # civicflow_type and civicflow_keys carry it back; ODK sees a text question
    keys = ("multiple", "roles", "scope")
    elsewhere = ("{key!r} only belongs to a user field, not {type}", "")

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        one = {"type": "string", "minLength": 1, "maxLength": 150}
        if not f.multiple:
            return one
        s: dict[str, Any] = {"type": "array", "uniqueItems": True, "items": one}
        if f.required:
            s["minItems"] = 1
        return s

    def normalise(self, text: str) -> str:
        match = _NAMED.match(text)
        return match.group(1) if match else text

    def names_in(self, text: str) -> list[str]:
        """The usernames (or names) in typed text: ``王芳 (resident)、grid`` -> ``["resident", "grid"]``."""
        return list(dict.fromkeys(self.normalise(t.strip()) for t in _SEPARATORS.split(text) if t.strip()))

    def coerce(self, f: FieldSpec, value: Any) -> Any:
        if f.multiple:
            items = [value] if isinstance(value, str) else value if isinstance(value, list) else None
            if items is None:
                return value  # kept as given: the schema reports it
            found = [n for item in items for n in (self.names_in(item) if isinstance(item, str) else [item])]
            return list(dict.fromkeys(found)) or None
        if isinstance(value, list):  # one person: the last one posted
            value = value[-1] if value else None
        return super().coerce(f, value)

    def from_html(self, f: FieldSpec, raw: MultiDictLike, key: str, files: Mapping[str, Any]) -> Any:
        got = [v for v in raw.getlist(key) if v != ""]
        if f.multiple:
            return got  # one key per ticked person, or one text of several names
        return got[-1] if got else ""

    def usernames(self, value: Any) -> list[str]:
        """The usernames a stored value holds (none for anything else)."""
        if isinstance(value, str):
            return [value] if value else []
        return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []

    def error_message(self, f: FieldSpec, validator: str, limit: Any,
                      value: Any = None) -> tuple[str, dict[str, Any]] | None:
        return ("choose", {}) if validator == "minItems" else None

    def display(self, f: FieldSpec, value: Any, lang: str = "zh", org: OrgTree | None = None,
                people: People | None = None) -> str:
        names = [(people(u) if people else None) or u for u in self.usernames(value)]
        return ("、" if lang == "zh" else ", ").join(names)

    def condition(self, f: FieldSpec, wanted: Any, org: OrgTree) -> cond.Condition:
        return cond.Includes(("data", f.id), wanted) if f.multiple else cond.Equals(("data", f.id), wanted)

    indexed = True

    def terms(self, f: FieldSpec, value: Any, org: OrgTree) -> list[str]:
        return self.usernames(value)

    def defaults(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"scope": DEFAULT_USER_SCOPE}

    def check(self, item: Mapping[str, Any], report: Report) -> None:
        scope = item.get("scope", DEFAULT_USER_SCOPE)
        if scope not in USER_SCOPES:
            report(["scope"], f"unknown scope {scope!r}", "all, unit, or a level: " + ", ".join(USER_SCOPES[2:]))


# --------------------------------------------------------------------------- time of day, notes

_TIME_TEXT = re.compile(r"(\d{1,2})[:：](\d{2})(?::\d{2})?")


@register
class TimeType(_Range):
    """A time of day, ``"09:30"`` (an activity's start, a booking slot): text that sorts as time."""

    name = "time"
    xlsform = "time"
    xlsform_native = True
    input_type = "time"
    attrs = {"inputmode": "numeric"}

    def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
        return {"type": "string", "format": "time-hm"}

    def normalise(self, text: str) -> str:
        match = _TIME_TEXT.fullmatch(text)  # 9:30, 09:30:00 and a full-width colon all mean 09:30
        return f"{int(match.group(1)):02d}:{match.group(2)}" if match else text

    def matches(self, f: FieldSpec, value: Any, wanted: Any, org: OrgTree) -> bool:
        low, high = (self.normalise(w) for w in wanted)
        if not isinstance(value, str):
            return False
        return (not low or value >= low) and (not high or value <= high)


@register
class NoteType(FieldType):
    """Text shown between the questions (说明): its ``label`` (and ``help``); it holds no value, is never stored,
    exported, listed or read by expressions."""

    name = "note"
    xlsform = "note"
    xlsform_native = True
    widget = "note"
    holds_value = False
    list_column = False
    claimable = False

    def from_html(self, f: FieldSpec, raw: MultiDictLike, key: str, files: Mapping[str, Any]) -> Any:
        return ABSENT

    def clean(self, f: FieldSpec, value: Any) -> Any:
        return None

    def display(self, f: FieldSpec, value: Any, lang: str = "zh", org: OrgTree | None = None,
                people: People | None = None) -> str:
        return ""

    def matches(self, f: FieldSpec, value: Any, wanted: Any, org: OrgTree) -> bool:
        return False


class _Marker(NoteType):
    """A heading that groups the questions after it (to the next marker of its kind or a wider one): its
    ``label`` is the heading, its ``help`` the description. Like a note it holds no value."""

    xlsform = "begin_group"
    xlsform_native = False
    widget = "heading"  # rendered by form_fields as a fieldset or a step, not by one input

    def check(self, item: Mapping[str, Any], report: Report) -> None:
        if "show_if" in item:
            report(["show_if"], f"'show_if' has no effect on a {self.name}: it only groups the questions after it",
                   "put show_if on the questions; a page whose questions are all hidden is skipped", key=True)


@register
class SectionType(_Marker):
    """分组: the questions after it, to the next section or page, are one fieldset with this legend."""

    name = "section"
    starts_section = True


@register
class PageType(_Marker):
    """分页: the questions after it, to the next page, are one step of a long form (上一步 / 下一步)."""

    name = "page"
    starts_page = True
    xlsform_appearance = "field-list"


# --------------------------------------------------------------------------- reading a post

def read_post(fields: Sequence[FieldSpec], raw: MultiDictLike, prefix: str = "",
              files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values of ``fields`` in an HTML form post, each read by its type (repeat rows by their prefix)."""
    files = files or {}
    values: dict[str, Any] = {}
    for f in fields:
        value = f.kind.from_html(f, raw, prefix + f.id, files)
        if value is not ABSENT:
            values[f.id] = value
    return values
