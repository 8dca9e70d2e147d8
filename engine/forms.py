"""Form runtime: turn raw input into clean data, validated by a JSON Schema built from the same field specs.

The HTML form (templates) and the JSON Schema (here) are both derived from
``FieldSpec``, so the browser and the server never disagree about a rule; what each field
type contributes (its schema, typing, messages, display) is its class in engine/fieldtypes.py.
Order: coerce -> compute -> drop hidden fields -> validate -> map errors to field paths.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from typing import Any, Mapping, Sequence

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from . import idnumber
from .errors import SubmissionError
from .expressions import CHOICE_FIELDS, choice_fields
from .fieldtypes import MultiDictLike, People, human_size, mask, read_post  # noqa: F401 - forms.mask, forms.human_size for callers
from .spec import FieldSpec, FormSpec, OrgTree

PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

FORMATS = FormatChecker(formats=())


@FORMATS.checks("cn-mobile")
def is_mobile(value: object) -> bool:
    return not isinstance(value, str) or bool(PHONE_RE.match(value))


@FORMATS.checks("cn-id-number")
def is_id_number(value: object) -> bool:
    """18-digit resident ID (GB 11643): a valid birth date and the ISO 7064 MOD 11-2 check digit."""
    if not isinstance(value, str):
        return True
    return bool(re.fullmatch(r"\d{17}[\dX]", value)) and idnumber.is_valid(value)


@FORMATS.checks("email")
def is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(EMAIL_RE.match(value))


@FORMATS.checks("date")
def is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


@FORMATS.checks("time-hm")
def is_time(value: object) -> bool:
    """A time of day as ``<input type=time>`` sends it: ``HH:MM``, 00:00 to 23:59."""
    return not isinstance(value, str) or bool(re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value))


@FORMATS.checks("datetime-local")
def is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- JSON Schema

def field_schema(f: FieldSpec, org: OrgTree | None = None) -> dict[str, Any]:
    """The JSON Schema of one field's value (each type says its own: engine/fieldtypes.py)."""
    return f.kind.schema(f, org)


def object_schema(fields: Sequence[FieldSpec], visible: set[str], org: OrgTree | None = None,
                  needed: set[str] | None = None) -> dict[str, Any]:
    """``needed``: the ids required now (``required_if`` true); default: those with ``required: true``."""
    props, required = {}, []
    for f in fields:
        if f.id not in visible or not f.kind.holds_value:
            continue
        if needed is not None and f.id in needed and not f.required:
            f = replace(f, required=True)  # each type says what required means for it (ticked, one row...)
        sub = field_schema(f, org)
        if f.is_repeat:
            sub["items"] = {"type": "object"}  # rows are validated one by one, with their own visibility
        props[f.id] = sub
        if f.required and not f.compute:
            required.append(f.id)
    return {"type": "object", "properties": props, "required": required}


def required_now(fields: Sequence[FieldSpec], data: Mapping[str, Any], outer: Mapping[str, Any] | None = None,
                 at: dt.datetime | None = None) -> set[str]:
    """The ids of ``fields`` that must be filled for these values: ``required: true``, or ``required_if`` true."""
    ctx = expression_context(fields, data, outer)
    return {f.id for f in fields if f.kind.holds_value and
            (f.required or (f.required_if is not None and f.required_if.test(ctx, at)))}


def json_schema(form: FormSpec, org: OrgTree | None = None) -> dict[str, Any]:
    """The whole form as one JSON Schema (every field visible), e.g. for API clients and docs (``org``: org unit
    fields list the units of their level, as validation checks them)."""
    def build(fields: Sequence[FieldSpec]) -> dict[str, Any]:
        schema = object_schema(fields, {f.id for f in fields}, org)
        # a field with show_if is required only while it is shown, which one static schema cannot say
        schema["required"] = [r for r in schema["required"] if not any(f.id == r and f.show_if for f in fields)]
        for f in fields:
            if f.is_repeat:
                schema["properties"][f.id]["items"] = build(f.fields)
        return schema
    schema = build(form.fields)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = form.title.get("zh", form.id)
    return schema


# --------------------------------------------------------------------------- input

def from_html(form: FormSpec, raw: MultiDictLike, files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Values from an HTML form post: repeat rows come as ``attendees-0-name``; multiselects repeat their key."""
    return read_post(form.fields, raw, "", files)


def coerce(f: FieldSpec, value: Any) -> Any:
    """Best-effort typing of text input; what cannot be typed is kept as typed so the schema reports it."""
    return f.kind.coerce(f, value)


def expression_context(fields: Sequence[FieldSpec], values: Mapping[str, Any],
                       outer: Mapping[str, Any] | None = None) -> dict[str, Any]:
    ctx = dict(outer or {})
    for f in fields:
        if f.kind.holds_value:  # a note has no name in expressions
            ctx[f.id] = values.get(f.id, f.kind.empty())
    own = choice_fields(fields)
    if own:  # what choice(field, 'key') reads the choices from (a row's fields and its form's)
        ctx[CHOICE_FIELDS] = {**ctx.get(CHOICE_FIELDS, {}), **own}
    return ctx


def clean(fields: Sequence[FieldSpec], values: Mapping[str, Any], outer: Mapping[str, Any] | None = None,
          at: dt.datetime | None = None) -> tuple[dict[str, Any], set[str]]:
    """Typed values with computed fields filled in and hidden fields dropped; and the visible ids."""
    data: dict[str, Any] = {}
    for f in fields:
        if f.id not in values:
            continue
        value = f.kind.clean(f, values[f.id])
        if value is not None:
            data[f.id] = value
    computed = [f for f in fields if f.compute]
    _compute(fields, computed, data, outer, at)
    visible = set()
    for f in fields:
        if f.show_if is None or f.show_if.test(expression_context(fields, data, outer), at):
            visible.add(f.id)
        else:
            data.pop(f.id, None)
    for f in fields:
        if f.is_repeat and f.id in data:
            ctx = expression_context(fields, data, outer)
            data[f.id] = [clean(f.fields, row, ctx, at)[0] for row in data[f.id]]
    rows = {f.id for f in fields if f.is_repeat and f.id in data}
    if any(f.compute.names & rows for f in computed):  # type: ignore[union-attr]
        # a total over the rows (choice_sum(items.reward, 'points', items.quantity)) reads them typed
        _compute(fields, [f for f in computed if f.id in visible], data, outer, at)
    return data, visible


def _compute(fields: Sequence[FieldSpec], computed: Sequence[FieldSpec], data: dict[str, Any],
             outer: Mapping[str, Any] | None, at: dt.datetime | None) -> None:
    """Computed fields, in dependency order (the loader rejected cycles): repeat until stable."""
    for _ in range(len(computed)):
        for f in computed:
            value = f.compute.evaluate(expression_context(fields, data, outer), at)  # type: ignore[union-attr]
            if value is None:
                data.pop(f.id, None)
            else:
                data[f.id] = value


MESSAGES: dict[str, dict[str, str]] = {
    "required": {"zh": "此项为必填项", "en": "This field is required."},
    "checkbox": {"zh": "请勾选此项", "en": "Please tick this box."},
    "choose": {"zh": "请至少选择一项", "en": "Choose at least one option."},
    "integer": {"zh": "请输入整数", "en": "Enter a whole number."},
    "number": {"zh": "请输入数字", "en": "Enter a number."},
    "finite": {"zh": "请输入有效的数字（不能是 nan、inf 或超出范围的数）",
               "en": "Enter an ordinary number (not nan, inf or one too large to hold)."},
    "minimum": {"zh": "不能小于 {limit}", "en": "Must be at least {limit}."},
    "maximum": {"zh": "不能大于 {limit}", "en": "Must be at most {limit}."},
    "minLength": {"zh": "至少 {limit} 个字", "en": "Enter at least {limit} characters."},
    "maxLength": {"zh": "最多 {limit} 个字", "en": "Enter at most {limit} characters."},
    "minItems": {"zh": "至少需要 {limit} 行", "en": "Add at least {limit} rows."},
    "maxItems": {"zh": "最多 {limit} 行", "en": "At most {limit} rows."},
    "pattern": {"zh": "格式不正确", "en": "The format is not right."},
    "enum": {"zh": "请从选项中选择", "en": "Choose one of the options."},
    "cn-mobile": {"zh": "请输入11位手机号码，如 13812345678", "en": "Enter an 11-digit mainland mobile number, e.g. 13812345678."},
    "cn-id-number": {"zh": "身份证号码不正确（18位，末位为校验码）", "en": "Not a valid 18-digit resident ID number (check the last digit)."},
    "email": {"zh": "邮箱格式不正确", "en": "Enter a valid email address."},
    "date": {"zh": "请输入日期，如 2026-11-27", "en": "Enter a date such as 2026-11-27."},
    "datetime-local": {"zh": "请输入日期和时间", "en": "Enter a date and time."},
    "time-hm": {"zh": "请输入时间，如 09:30", "en": "Enter a time such as 09:30."},
    "file_size": {"zh": "文件太大（最大 {limit}）", "en": "The file is too large (at most {limit})."},
    "file_type": {"zh": "不支持的文件类型（可用：{limit}）", "en": "This file type is not allowed (allowed: {limit})."},
    "invalid": {"zh": "输入无效", "en": "This value is not valid."},
}


def message(key: str, **params: Any) -> dict[str, str]:
    text = MESSAGES[key]
    return {lang: t.format(**params) for lang, t in text.items()}


def _error_message(f: FieldSpec, error: ValidationError) -> dict[str, str]:
    v = error.validator
    if v == "required":
        return message("required")
    own = f.kind.error_message(f, v, error.validator_value, error.instance)
    if own is not None and own[0] == f.kind.required_message:  # an unticked pledge, no choice made
        return dict(f.required_message) if f.required_message else message(own[0], **own[1])
    if f.message:
        return dict(f.message)
    if own is not None:
        return message(own[0], **own[1])
    if v == "type":
        return message("integer" if error.validator_value == "integer" else
                       "number" if error.validator_value == "number" else "invalid")
    if v == "format":
        return message(error.validator_value) if error.validator_value in MESSAGES else message("invalid")
    if v in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"):
        return message(v, limit=error.validator_value)
    if v in ("pattern", "enum"):
        return message(v)
    return message("invalid")


def _validate_object(fields: Sequence[FieldSpec], data: Mapping[str, Any], visible: set[str], prefix: str,
                     errors: dict[str, list[dict[str, str]]], outer: Mapping[str, Any] | None,
                     at: dt.datetime | None, org: OrgTree | None) -> None:
    by_id = {f.id: f for f in fields}
    needed = required_now(fields, data, outer, at)
    validator = Draft202012Validator(object_schema(fields, visible, org, needed), format_checker=FORMATS)
    for error in validator.iter_errors(data):
        path = list(error.absolute_path)
        if error.validator == "required":
            # jsonschema yields one "required" error per missing key, each listing them all
            missing = [k for k in error.validator_value if k not in error.instance]
            for key in missing:
                msgs = errors.setdefault(prefix + key, [])
                f = by_id[key]
                msg = dict(f.required_message) if f.required_message else message(f.kind.required_message)
                if msg not in msgs:
                    msgs.append(msg)
            continue
        f = by_id.get(str(path[0])) if path else None
        if f is None:
            errors.setdefault(prefix.rstrip("."), []).append(message("invalid"))
            continue
        key = prefix + f.id
        msgs = errors.setdefault(key, [])
        msg = _error_message(f, error)
        if msg not in msgs:
            msgs.append(msg)
    for f in fields:
        if f.is_repeat and isinstance(data.get(f.id), list):
            ctx = expression_context(fields, data, outer)
            for i, row in enumerate(data[f.id]):
                _, row_visible = clean(f.fields, row, ctx, at)
                _validate_object(f.fields, row, row_visible, f"{prefix}{f.id}.{i}.", errors, ctx, at, org)


def validate(form: FormSpec, values: Mapping[str, Any], *, outer: Mapping[str, Any] | None = None,
             at: dt.datetime | None = None, org: OrgTree | None = None) -> dict[str, Any]:
    """Clean data for ``form`` or :class:`SubmissionError` with every problem under its field path."""
    data, visible = clean(form.fields, values, outer, at)
    errors: dict[str, list[dict[str, str]]] = {}
    _validate_object(form.fields, data, visible, "", errors, outer, at, org)
    ctx = expression_context(form.fields, data, outer)
    for rule in form.rules:  # checks across fields; "unknown" (a missing input) is left to the field errors
        if rule.check.evaluate(ctx, at) is False:
            errors.setdefault(rule.field or "", []).append(dict(rule.message))
    if errors:
        raise SubmissionError(errors, values=dict(values))
    return data


# --------------------------------------------------------------------------- display

def display(f: FieldSpec, value: Any, lang: str = "zh", org: OrgTree | None = None, people: People | None = None) -> str:
    """One value as text for a page, list or export (repeats are rendered as tables elsewhere); ``people`` names
    the users of user fields (``Engine.people``)."""
    return f.kind.display(f, value, lang, org, people)


# --------------------------------------------------------------------------- pages

def shown_pages(form: FormSpec, visible: set[str]) -> list[int]:
    """The pages that ask something now: a page whose questions are all hidden (``show_if``) is skipped."""
    return [i for i, page in enumerate(form.pages) if any(f.id in visible for f in page.fields)] or [0]


def page_errors(form: FormSpec, values: Mapping[str, Any], page: int, *, outer: Mapping[str, Any] | None = None,
                at: dt.datetime | None = None, org: OrgTree | None = None) -> dict[str, list[dict[str, str]]]:
    """The problems of one page, checked as the person leaves it: the whole form is validated (a question may
    depend on an earlier page), and only the errors under that page's questions count. Messages of the whole
    form (a rule without ``field``) wait for the final submit."""
    try:
        validate(form, values, outer=outer, at=at, org=org)
    except SubmissionError as exc:
        return {path: msgs for path, msgs in exc.errors.items() if path and form.page_of(path) == page}
    return {}


def first_page_with_errors(form: FormSpec, errors: Mapping[str, Any], default: int = 0) -> int:
    """Where a refused submit of a paged form opens: the first page with a problem on it."""
    pages = sorted(form.page_of(path) for path in errors if path)
    return pages[0] if pages else default
