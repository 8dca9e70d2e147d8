"""XLSForm in and out: a form designed in a spreadsheet (the survey, choices and settings sheets people know
from ODK and KoboToolbox) becomes ``forms/<id>.yaml``, and a Civicflow form becomes such a spreadsheet.

Nothing is guessed silently. Every column, type or expression that cannot be carried over is skipped with a
:class:`Note` saying where it was and why, and an import is written only when the form it produces passes
the loader's checks (``civicflow lint``). Two extra columns, ``civicflow_type`` and ``civicflow_sensitive``,
carry what XLSForm has no word for (a phone or ID number field, personal data), so a form exported and
imported again comes back the same.

No Flask here; ``civicflow import-xlsform`` / ``export-xlsform`` (engine.web.cli) call these functions.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from openpyxl import Workbook, load_workbook
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .expressions import BUILTINS
from .fieldtypes import FIELD_KINDS, xlsform_types
from .loader import lint
from .loadkit import GUARD_NAMES
from .spec import FieldSpec, FormSpec
from .xlsform_expr import Untranslatable, split_bounds, to_jinja, to_xpath

MAX_BYTES = 5 * 1024 * 1024
_TRUE = {"yes", "true", "true()", "1", "y", "是"}
_LANGS = {"zh": "zh", "zh-cn": "zh", "zh_cn": "zh", "chinese": "zh", "中文": "zh", "汉语": "zh", "简体中文": "zh",
          "en": "en", "english": "en", "英文": "en", "英语": "en"}
#: Recorded by Civicflow itself (who, when: every case has its history), so dropped without loss.
_METADATA = {"start", "end", "today", "deviceid", "subscriberid", "simserial", "phonenumber", "username",
             "email", "audit", "start-geopoint", "background-audio", "instanceid"}
_KNOWN_COLUMNS = {"type", "name", "label", "hint", "required", "required_message", "relevant", "constraint",
                  "constraint_message", "calculation", "default", "appearance", "read_only", "choice_filter",
                  "parameters", "repeat_count", "civicflow_type", "civicflow_sensitive", "civicflow_keys",
                  "guidance_hint"}
TIME_PATTERN = "^([01][0-9]|2[0-3]):[0-5][0-9]$"
#: Columns of the choices sheet with a meaning of their own; any other (lower_snake_case) column is data the choice
#: carries (``data:``, read by ``choice(field, 'key')``), as XLSForm allows extra columns there.
_CHOICE_COLUMNS = {"list_name", "list name", "name", "label", "image", "audio", "video", "media", "big-image"}
_DATA_KEY = re.compile(r"[a-z][a-z0-9_]*")


def _data_value(text: str) -> Any:
    """A cell of a data column typed back: whole numbers, numbers, TRUE / FALSE, else the text."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


class XLSFormError(ValueError):
    """The file cannot be read as an XLSForm at all (not a workbook, no survey sheet, a broken form)."""

    def __init__(self, message: str, problems: Iterable[str] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Note:
    """One thing not carried over: where it was (sheet, row as the spreadsheet numbers it, column) and why."""

    sheet: str
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.sheet}!{self.row}" if self.row else self.sheet
        return f"{where} ({self.column}): {self.message}" if self.column else f"{where}: {self.message}"


@dataclass
class Imported:
    form_id: str
    text: str
    notes: list[Note] = field(default_factory=list)
    path: Path | None = None


# -- reading the workbook ---------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _column(header: str) -> tuple[str, str | None]:
    """``label::Chinese (zh)`` -> ("label", "zh"); ``label`` -> ("label", None); unknown languages keep their name."""
    base, _, lang = header.strip().partition("::")
    base = re.sub(r"\s+", "_", base.strip().lower())
    if not lang:
        return base, None
    inner = re.search(r"\(([^)]+)\)", lang)
    key = (inner.group(1) if inner else lang).strip().lower()
    return base, _LANGS.get(key, key)


@dataclass
class _Sheet:
    name: str
    rows: list[tuple[int, dict[tuple[str, str | None], str]]]
    headers: list[tuple[str, str | None]]


def _sheets(data: bytes) -> dict[str, _Sheet]:
    if len(data) > MAX_BYTES:
        raise XLSFormError(f"the file is larger than {MAX_BYTES // 1024 // 1024} MB")
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise XLSFormError(f"not an .xlsx workbook ({exc.__class__.__name__}); save the XLSForm as .xlsx") from None
    found = {}
    for sheet in book.worksheets:
        rows = list(sheet.iter_rows(values_only=True))
        if not rows:
            continue
        headers = [_column(_cell(h)) if _cell(h) else ("", None) for h in rows[0]]
        body = []
        for number, row in enumerate(rows[1:], start=2):
            values = {headers[i]: _cell(v) for i, v in enumerate(row) if i < len(headers) and headers[i][0] and _cell(v)}
            if values:
                body.append((number, values))
        found[sheet.title.strip().lower()] = _Sheet(sheet.title, body, [h for h in headers if h[0]])
    book.close()
    if "survey" not in found:
        raise XLSFormError("the workbook has no 'survey' sheet (XLSForm needs survey, and choices for select fields)")
    return found


# -- building the form ------------------------------------------------------------------------------------

def _ident(name: str, taken: set[str]) -> str:
    """An XLSForm name as a Civicflow id: lower_snake_case, starting with a letter, not a built-in, unique."""
    ident = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_") or "field"
    if not ident[0].isalpha():
        ident = "f_" + ident
    if ident in BUILTINS or ident in GUARD_NAMES:
        ident += "_value"
    base, n = ident, 2
    while ident in taken:
        ident, n = f"{base}_{n}", n + 1
    taken.add(ident)
    return ident


GROUP_FLATTENED = "group labels are not shown: the group's fields are kept in order, its relevant applies to each of them"
UPLOAD_ROWS = 20  # the rows of an imported repeat with an upload column, when the workbook does not bound them


class _Builder:
    """One survey sheet walked row by row into fields, with the notes of what was left out."""

    def __init__(self, sheets: dict[str, _Sheet], default_lang: str):
        self.sheets = sheets
        self.default_lang = default_lang
        self.notes: list[Note] = []
        self.names: dict[str, str] = {}      # XLSForm name -> field id, for expressions
        self.taken: set[str] = set()
        self.rules: list[CommentedMap] = []
        self.extra_description: list[str] = []
        self.choices = self._choice_lists()
        self.kinds = set(FIELD_KINDS)
        self.supports = set(_field_keys())

    def note(self, sheet: str, row: int, column: str, message: str) -> None:
        self.notes.append(Note(sheet, row, column, message))

    def text(self, values: Mapping[tuple[str, str | None], str], base: str) -> Any:
        """A text in every language the row has: {zh, en}, or a plain string with one language."""
        langs: dict[str, str] = {}
        for (col, lang), value in values.items():
            if col == base:
                langs.setdefault(lang or self.default_lang, value)
        zh, en = langs.get("zh"), langs.get("en")
        if zh and en:
            return _flow({"zh": zh, "en": en})
        return zh or en or next(iter(langs.values()), None)

    def _choice_lists(self) -> dict[str, list[CommentedMap]]:
        lists: dict[str, list[CommentedMap]] = {}
        sheet = self.sheets.get("choices")
        if sheet is None:
            return lists
        for number, values in sheet.rows:
            name = values.get(("list_name", None)) or values.get(("list name", None))
            value = values.get(("name", None))
            if not name or not value:
                self.note(sheet.name, number, "list_name", "a choice needs a list_name and a name; row skipped")
                continue
            label = self.text(values, "label") or value
            choice = _flow({"value": value, "label": label})
            data = {column: _data_value(text) for (column, lang), text in values.items()
                    if lang is None and column not in _CHOICE_COLUMNS and _DATA_KEY.fullmatch(column)}
            if data:  # the extra columns XLSForm allows on the choices sheet: what the choice carries
                choice["data"] = _flow(data)
            lists.setdefault(name, []).append(choice)
        return lists

    def expression(self, source: Any, row: int, column: str, self_name: str | None = None) -> str | None:
        try:
            return to_jinja(source, self.names, self_name)
        except Untranslatable as exc:
            self.note("survey", row, column, f"{source!r} not carried over: {exc}")
            return None

    def build(self, rows: list[tuple[int, dict[tuple[str, str | None], str]]]) -> list[CommentedMap]:
        # Names first, so a relevant may refer to a field further down (as XLSForm allows).
        for _number, values in rows:
            name = values.get(("name", None))
            kind = values.get(("type", None), "").split()
            if name and kind and kind[0].replace("_", " ") not in ("end group", "end repeat"):
                self.names[name] = _ident(name, self.taken)
        for column in {c for _n, v in rows for (c, _l) in v} - _KNOWN_COLUMNS:
            if not column.startswith("media") and column != "bind":
                self.note("survey", 0, column, "this column has no counterpart in Civicflow forms; not carried over")
        fields, _ = self._fields(rows, 0, relevant=None, in_repeat=False)
        return fields

    def _fields(self, rows: list, at: int, relevant: str | None, in_repeat: bool,
                until: str | None = None, level: int = 0) -> tuple[list[CommentedMap], int]:
        fields: list[CommentedMap] = []
        groups: list[tuple[int, int, CommentedMap, int]] = []  # (row, where its marker goes, marker, fields in it)
        while at < len(rows):
            number, values = rows[at]
            at += 1
            words = values.get(("type", None), "").split()
            if not words:
                continue
            kind = words[0].lower()
            joined = " ".join(w.lower() for w in words[:2]).replace("_", " ")
            if joined in ("end group", "end repeat"):
                if until == joined:
                    return _place_markers(self, fields, groups), at
                self.note("survey", number, "type", f"'{joined}' without its begin; ignored")
                continue
            if joined == "begin group":
                inner = self._relevant(values, number, relevant)
                marker = _group_marker(self, values, number, level, in_repeat)
                if marker is None and self.text(values, "label"):
                    self.note("survey", number, "label", GROUP_FLATTENED)
                found, at = self._fields(rows, at, inner, in_repeat, until="end group",
                                         level=level + (marker is not None))
                if marker is not None and found:
                    groups.append((number, len(fields), marker, len(found)))
                fields += found
                continue
            if joined == "begin repeat":
                found, at = self._fields(rows, at, None, True, until="end repeat")
                if in_repeat:
                    self.note("survey", number, "type", "a repeat inside a repeat is not supported; skipped")
                    continue
                item = self._repeat(values, number, found, relevant)
                if item is not None:
                    fields.append(item)
                continue
            item = self._field(kind, words, values, number, relevant, in_repeat)
            if item is not None:
                fields.append(item)
        if until:
            self.note("survey", rows[-1][0] if rows else 0, "type", f"'{until}' missing at the end of the survey")
        return _place_markers(self, fields, groups), at

    def _relevant(self, values: Mapping, number: int, outer: str | None) -> str | None:
        own = values.get(("relevant", None))
        mine = self.expression(own, number, "relevant") if own else None
        if outer and mine:
            return f"({outer}) and ({mine})"
        return mine or outer

    def _repeat(self, values: Mapping, number: int, rows: list[CommentedMap], relevant: str | None) -> CommentedMap | None:
        name = values.get(("name", None))
        if not name or not rows:
            self.note("survey", number, "type", "a repeat needs a name and at least one field; skipped")
            return None
        item = self._base(values, number, "repeat", relevant)
        if _truthy(values.get(("required", None))):
            item["required"] = True
        item["fields"] = rows
        _extra(self, item, values, number)
        count = values.get(("repeat_count", None))
        if count:
            if count.isdigit() and int(count) >= 1:
                item["max_rows"] = int(count)
                self.note("survey", number, "repeat_count", f"a fixed count became max_rows: {count}")
            else:
                self.note("survey", number, "repeat_count", "a computed repeat count is not supported; rows are "
                                                              "added by the person filling the form")
        if "max_rows" not in item and any(FIELD_KINDS[str(r["type"])].holds_files for r in rows):
            item["max_rows"] = UPLOAD_ROWS
            self.note("survey", number, "repeat_count", f"its rows carry uploads, so they are bounded: max_rows "
                                                          f"{UPLOAD_ROWS}")
        return item

    def _base(self, values: Mapping, number: int, type_name: str, relevant: str | None) -> CommentedMap:
        name = values[("name", None)]
        item = CommentedMap()
        item["id"] = self.names.get(name) or _ident(name, self.taken)
        item["type"] = type_name
        item["label"] = self.text(values, "label") or name
        labels = [lang or self.default_lang for c, lang in values if c == "label"]
        if not labels:
            self.note("survey", number, "label", "no label; the name is shown instead")
        elif "zh" not in labels:
            self.note("survey", number, "label", "no Chinese label; the label is shown as it is")
        hint = self.text(values, "hint")
        if hint:
            item["help"] = hint
        show_if = self._relevant(values, number, relevant)
        if show_if:
            item["show_if"] = show_if
        return item

    def _field(self, kind: str, words: list[str], values: Mapping, number: int, relevant: str | None,
               in_repeat: bool) -> CommentedMap | None:
        name = values.get(("name", None))
        if kind in _METADATA:
            self.note("survey", number, "type", f"{kind}: Civicflow records who and when in each case's history; "
                                                 "not a field")
            return None
        if not name:
            self.note("survey", number, "name", f"a {kind} row without a name; skipped")
            return None
        override = values.get(("civicflow_type", None))
        type_name, extra = self._type(kind, words, values, number)
        if override:
            if override in FIELD_KINDS:
                type_name = override
            else:
                self.note("survey", number, "civicflow_type", f"unknown Civicflow type {override!r}; ignored")
        if type_name is None:
            return None
        if type_name == "note" and ("note" not in self.kinds or name == DESCRIPTION_NOTE):
            label = self.text(values, "label")
            if label:
                self.extra_description.append(label)
            if name != DESCRIPTION_NOTE:
                self.note("survey", number, "type", "a note became part of the form's description "
                                                     "(Civicflow forms have no display-only field)")
            return None
        item = self._base(values, number, type_name, relevant)
        item.update(extra)
        self._required(item, values, number)
        calculation = values.get(("calculation", None))
        if calculation:
            compute = self.expression(calculation, number, "calculation")
            if compute is None:
                return None if kind == "calculate" else item
            item["compute"] = compute
            item.pop("required", None)
        elif _truthy(values.get(("read_only", None))):
            self.note("survey", number, "read_only", "read-only without a calculation has no counterpart; "
                                                     "the field can be filled in")
        default = values.get(("default", None))
        if default and "compute" not in item:
            item["default"] = _typed(default, type_name)
        constraint: Any = values.get(("constraint", None))
        textual = FIELD_KINDS[type_name].value_schema.__qualname__.startswith("FieldType.") \
            and not FIELD_KINDS[type_name].holds_choices
        if constraint and (FIELD_KINDS[type_name].numeric or textual):
            numeric = FIELD_KINDS[type_name].numeric
            try:
                low, high, constraint = split_bounds(constraint, "value" if numeric else "length")
            except Untranslatable as exc:
                self.note("survey", number, "constraint", f"{constraint!r} not carried over: {exc}")
                low = high = constraint = None
            implied = FIELD_KINDS[type_name].defaults({})  # a rating is always 1 to 5: nothing to write
            if low is not None and "min" not in implied:
                item["min" if numeric else "min_length"] = low
            if high is not None and "max" not in implied:
                item["max" if numeric else "max_length"] = high
            message = self.text(values, "constraint_message")
            if constraint is None and message and (low is not None or high is not None):
                item["message"] = message  # the message of the bounds: the field's own error message
        _extra(self, item, values, number)
        if constraint:
            check = self.expression(constraint, number, "constraint", self_name=item["id"])
            if check is not None:
                message = self.text(values, "constraint_message") or _flow(
                    {"zh": f"“{_zh(item['label'])}”填写不符合要求", "en": f"Check “{_en(item['label'])}”"})
                self.rules.append(_flow({"check": check, "message": message, "field": item["id"]}))
        if _truthy(values.get(("civicflow_sensitive", None))):
            item["sensitive"] = True
        if values.get(("choice_filter", None)):
            self.note("survey", number, "choice_filter", "cascading choices are not supported; every choice is "
                                                         "offered")
        appearance = values.get(("appearance", None))
        if appearance and not (appearance == "multiline" and type_name == "textarea"):
            self.note("survey", number, "appearance", f"appearance {appearance!r} is not carried over")
        return item

    def _required(self, item: CommentedMap, values: Mapping, number: int) -> None:
        required = values.get(("required", None))
        if required and _truthy(required):
            item["required"] = True
        elif required and required.lower() not in ("no", "false", "false()", "0", "n", "否"):
            expression = self.expression(required, number, "required")
            if expression is not None and "required_if" in self.supports:
                item["required_if"] = expression
            elif expression is not None:
                self.note("survey", number, "required", "a conditional required has no counterpart yet; "
                                                       "the field is optional")
        message = self.text(values, "required_message")
        if message and "required_message" in self.supports and item.get("required"):
            item["required_message"] = message
        elif message:
            self.note("survey", number, "required_message", "a custom required message is not carried over")

    def _type(self, kind: str, words: list[str], values: Mapping, number: int) -> tuple[str | None, dict[str, Any]]:
        appearance = values.get(("appearance", None), "")
        if kind == "text":
            return ("textarea" if "multiline" in appearance else "text"), {}
        if kind in ("select_one", "select_multiple"):
            if len(words) < 2 or words[1] not in self.choices:
                self.note("survey", number, "type", f"choice list {words[1] if len(words) > 1 else '?'!r} "
                                                     "not found on the choices sheet; skipped")
                return None, {}
            if len(words) > 2 and words[2] == "or_other":
                self.note("survey", number, "type", "or_other is not supported: add an 'other' choice and a "
                                                     "text field shown when it is chosen")
            return ("select" if kind == "select_one" else "multiselect"), {"choices": self.choices[words[1]]}
        if kind == "calculate":
            calc = values.get(("calculation", ""), "")
            numeric = re.search(r"[+*]|\bdiv\b|\bmod\b|count|int\(|number\(|round\(", calc)
            return ("number" if numeric else "text"), {}
        if kind == "note":
            return "note", {}
        if kind == "time":
            if "time" in self.kinds:
                return "time", {}
            self.note("survey", number, "type", "time became a text field checked as HH:MM")
            return "text", {"pattern": TIME_PATTERN}
        if kind == "range":
            params = dict(re.findall(r"(\w+)\s*=\s*(-?[\d.]+)", values.get(("parameters", None), "")))
            bounds: dict[str, Any] = {"min": _number(params.get("start", "1")), "max": _number(params.get("end", "10"))}
            if params.get("step", "1") not in ("1", "1.0"):
                self.note("survey", number, "parameters", "a range's step is not carried over")
            return ("integer" if all(isinstance(v, int) for v in bounds.values()) else "number"), bounds
        native = xlsform_types()  # the field types say which XLSForm type they are (engine.fieldtypes)
        kind = "integer" if kind == "int" else kind
        if kind in native and not FIELD_KINDS[native[kind]].holds_rows:
            return native[kind], {}
        self.note("survey", number, "type", f"the type {kind!r} has no Civicflow counterpart; skipped")
        return None, {}


def _group_marker(builder: "_Builder", values: Mapping, number: int, level: int,
                  in_repeat: bool) -> CommentedMap | None:
    """A labelled group as a ``section`` marker, or a ``page`` marker when it is a top-level field-list group
    (one screen of questions in ODK and Enketo); None: the group is flattened (in a repeat, or nested deeper)."""
    label = builder.text(values, "label")
    name = values.get(("name", None))
    field_list = "field-list" in values.get(("appearance", None), "")
    if in_repeat or not label or not name or level > 1:
        return None
    type_name = "page" if field_list and level == 0 else "section"
    if type_name not in builder.kinds:
        return None
    item = CommentedMap()
    item["id"] = builder.names.get(name) or _ident(name, builder.taken)
    item["type"] = type_name
    item["label"] = label
    hint = builder.text(values, "hint")
    if hint:
        item["help"] = hint
    return item


def _place_markers(builder: "_Builder", fields: list[CommentedMap],
                   groups: list[tuple[int, int, CommentedMap, int]]) -> list[CommentedMap]:
    """Put the marker of each group before its fields where the markers say the same as the groups: a
    Civicflow section runs to the next section or page, a page to the next page, so a group followed by
    fields outside any group is flattened, and pages stay pages only when every question is in one."""
    def ends_clean(i: int) -> bool:
        number, start, _marker, count = groups[i]
        following = groups[i + 1][1] if i + 1 < len(groups) else len(fields)
        return start + count == following
    pages = [g for g in groups if g[2]["type"] == "page"]
    if pages and not (groups[0][1] == 0 and all(g[2]["type"] == "page" for g in groups)
                      and all(ends_clean(i) for i in range(len(groups)))):
        for _n, _s, marker, _c in pages:
            marker["type"] = "section"  # questions outside the field-list groups: they become sections
    placed = list(fields)
    for i in reversed(range(len(groups))):
        number, start, marker, _count = groups[i]
        if ends_clean(i):
            placed.insert(start, marker)
        else:
            builder.note("survey", number, "label", GROUP_FLATTENED + " (fields follow its end outside any group, "
                                                                   "which a section cannot say)")
    return placed


def _extra(builder: _Builder, item: CommentedMap, values: Mapping, number: int) -> None:
    """``civicflow_keys``: a YAML flow mapping of the keys XLSForm has no column for (``{level: grid}``)."""
    text = values.get(("civicflow_keys", None))
    if not text:
        return
    try:
        extra = YAML(typ="safe").load(text)
    except Exception as exc:  # noqa: BLE001 - ruamel raises many kinds; the note says which
        builder.note("survey", number, "civicflow_keys", f"not a YAML mapping ({exc.__class__.__name__}); ignored")
        return
    if not isinstance(extra, dict):
        builder.note("survey", number, "civicflow_keys", "not a YAML mapping; ignored")
        return
    for key, value in extra.items():
        if key in builder.supports and key not in ("id", "type", "fields"):
            item[key] = _flow(value) if isinstance(value, dict) else value
        else:
            builder.note("survey", number, "civicflow_keys", f"{key!r} is not a field key; ignored")


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _typed(text: str, type_name: str) -> Any:
    if FIELD_KINDS[type_name].numeric:
        try:
            return _number(text)
        except ValueError:
            return text
    if type_name == "checkbox":
        return _truthy(text)
    return text


def _truthy(value: str | None) -> bool:
    return bool(value) and value.strip().lower() in _TRUE  # type: ignore[union-attr]


def _zh(text: Any) -> str:
    return str(text.get("zh") or text.get("en") or "") if isinstance(text, Mapping) else str(text)


def _en(text: Any) -> str:
    return str(text.get("en") or text.get("zh") or "") if isinstance(text, Mapping) else str(text)


def _flow(data: Mapping[str, Any]) -> CommentedMap:
    item = CommentedMap(data)
    item.fa.set_flow_style()
    return item


def _field_keys() -> set[str]:
    from .loader import schema
    return set(schema("form")["$defs"]["field"]["properties"])


def _yaml() -> YAML:
    yaml = YAML()
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.allow_unicode = True
    return yaml


def read_xlsform(data: bytes, file_name: str = "form.xlsx") -> Imported:
    """The form an XLSForm workbook describes, as YAML text, with the notes of what was not carried over."""
    sheets = _sheets(data)
    settings = sheets["settings"].rows[0][1] if "settings" in sheets and sheets["settings"].rows else {}
    default_lang = _LANGS.get(settings.get(("default_language", None), "").strip().lower(), "zh")
    builder = _Builder(sheets, default_lang)
    fields = builder.build(sheets["survey"].rows)
    if not fields:
        raise XLSFormError("the survey sheet has no field Civicflow can take", [str(n) for n in builder.notes])
    form_id = _ident(settings.get(("form_id", None)) or Path(file_name).stem, set())
    form = CommentedMap()
    form["id"] = form_id
    version = settings.get(("version", None), "1")
    if not version.isdigit() or int(version) < 1:
        builder.note("settings", 2, "version", f"version {version!r} is not a whole number; version 1 is used")
        version = "1"
    form["version"] = int(version)
    title = builder.text(settings, "form_title") if settings else None
    english = settings.get(("civicflow_title_en", None)) if settings else None
    if english and title and not isinstance(title, Mapping):
        title = _flow({"zh": title, "en": english})
    form["title"] = title or form_id
    if builder.extra_description:
        parts = builder.extra_description
        zh, en = "\n".join(_zh(p) for p in parts), "\n".join(_en(p) for p in parts)
        form["description"] = CommentedMap({"zh": zh, "en": en}) if en != zh else zh
    for (column, _lang) in settings:
        if column not in ("form_id", "form_title", "version", "default_language", "civicflow_title_en"):
            builder.note("settings", 2, column, "this setting has no counterpart in Civicflow; not carried over")
    form["fields"] = CommentedSeq(fields)
    if builder.rules:
        form["rules"] = builder.rules
    out = io.StringIO()
    out.write("# yaml-language-server: $schema=../engine/schema/form.schema.json\n")
    out.write(f"# Imported from {Path(file_name).name} by `civicflow import-xlsform`.\n")
    _yaml().dump(form, out)
    notes = sorted(builder.notes, key=lambda n: (n.sheet != "survey", n.sheet, n.row, n.column))
    return Imported(form_id, out.getvalue(), notes)


def import_xlsform(data: bytes, file_name: str, definitions: Path, *, replace: bool = False) -> Imported:
    """Read the workbook and write ``forms/<id>.yaml`` under ``definitions`` — only if the form passes the
    loader's checks there (against the same roles, org units and choice lists) and, unless ``replace``,
    no form file of that name exists yet. Raises :class:`XLSFormError` with the problems otherwise."""
    imported = read_xlsform(data, file_name)
    target = definitions / "forms" / f"{imported.form_id}.yaml"
    if target.exists() and not replace:
        raise XLSFormError(f"{target} exists already; pass --replace to overwrite it")
    problems = _problems(imported, definitions, replace)
    if problems:
        raise XLSFormError(f"the form made from {file_name} does not pass the checks; nothing written", problems)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(imported.text, encoding="utf-8")
    tmp.replace(target)
    imported.path = target
    return imported


def _problems(imported: Imported, definitions: Path, replace: bool) -> list[str]:
    """The loader's problems with the new file, checked in a copy of ``definitions`` (a replaced form is
    checked against the workflows using it too)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for part in ("org", "forms", "workflows"):
            if (definitions / part).is_dir():
                shutil.copytree(definitions / part, root / part)
        (root / "forms").mkdir(exist_ok=True)
        (root / "workflows").mkdir(exist_ok=True)
        name = f"forms/{imported.form_id}.yaml"
        (root / name).write_text(imported.text, encoding="utf-8")
        found = lint(root)
    return [str(p) for p in found if p.file == name or imported.form_id in str(p)]


# -- writing a workbook -----------------------------------------------------------------------------------



def _keys(f: FieldSpec, carried: Mapping[str, str]) -> str:
    """What XLSForm has no column or expression for, as a YAML flow mapping in ``civicflow_keys`` (read back
    on import)."""
    extra: dict[str, Any] = dict(carried)
    if f.placeholder:
        extra["placeholder"] = dict(f.placeholder)
    if f.pattern:
        extra["pattern"] = f.pattern
    for key in ("level", "workflow"):
        if getattr(f, key):
            extra[key] = getattr(f, key)
    if f.states:
        extra["states"] = list(f.states)
    if f.kind.holds_user:  # people: written as text; these keys bring the picker back on import
        extra.update({"multiple": True} if f.multiple else {})
        extra.update({"roles": list(f.roles)} if f.roles else {})
        extra.update({"scope": f.scope} if f.scope and f.scope != f.kind.defaults({}).get("scope") else {})
    if f.accept and f.kind.holds_files and f.accept != getattr(f.kind, "default_accept", None):
        extra["accept"] = list(f.accept)
    if f.max_size and f.kind.holds_files:
        extra["max_size"] = _size(f.max_size)
    if f.message and not f.kind.numeric:
        extra["message"] = dict(f.message)
    if f.is_repeat and f.min_rows:
        extra["min_rows"] = f.min_rows
    if f.is_repeat and f.max_rows:
        extra["max_rows"] = f.max_rows
    # JSON is a YAML flow mapping that quotes every text, so "09:00-11:00" reads back as it was written
    return json.dumps(extra, ensure_ascii=False) if extra else ""


def _num(value: float) -> str:
    """A bound as XLSForm writes numbers: no exponent (1e+07 is not XPath)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _size(size: int) -> str:
    return f"{size // (1024 * 1024)}MB" if size % (1024 * 1024) == 0 else f"{-(-size // 1024)}KB"


_SURVEY = ["type", "name", "label::Chinese (zh)", "label::English (en)", "hint::Chinese (zh)", "hint::English (en)",
           "required", "relevant", "constraint", "constraint_message::Chinese (zh)", "constraint_message::English (en)",
           "calculation", "default", "appearance", "repeat_count", "civicflow_type", "civicflow_sensitive",
           "civicflow_keys"]
DESCRIPTION_NOTE = "form_description"  # a note of this name carries the form's description both ways


def _texts(row: dict[str, Any], column: str, text: Any) -> None:
    """Both languages of ``text`` into ``column::Chinese (zh)`` and ``column::English (en)`` (English only if
    it differs)."""
    if text:
        row[f"{column}::Chinese (zh)"] = _zh(text)
        if _en(text) != _zh(text):
            row[f"{column}::English (en)"] = _en(text)


def _data_cell(value: Any) -> Any:
    if value is None:
        return ""
    return ("TRUE" if value else "FALSE") if isinstance(value, bool) else value


def export_xlsform(form: FormSpec, description: Any = None) -> tuple[bytes, list[Note]]:
    """``form`` as an XLSForm workbook (survey, choices, settings) and the notes of what XLSForm cannot say."""
    notes: list[Note] = []
    book = Workbook()
    survey = book.active
    survey.title = "survey"
    survey.append(_SURVEY)
    choices = book.create_sheet("choices")
    choices.append(["list_name", "name", "label::Chinese (zh)", "label::English (en)"])
    rules = {r.field: r for r in form.rules if r.field}
    for rule in form.rules:
        if not rule.field:
            notes.append(Note("survey", 0, "constraint", f"the rule {rule.check.source!r} belongs to no field; "
                                                         "XLSForm has no form-wide constraint; not written"))
    lists: dict[tuple, str] = {}
    data_columns: list[str] = []  # the choices sheet's columns after the labels: keys of the choices' data
    reserved: set[str] = set()  # data keys that are a column of the choices sheet with its own meaning (name...)

    def append(row: dict[str, Any]) -> None:
        survey.append([row.get(column, "") for column in _SURVEY])

    carried: dict[str, dict[str, str]] = {}  # field id -> {show_if|compute: the Civicflow expression}

    def expression(source: str, where: str, column: str, self_name: str | None = None, key: str = "") -> str:
        try:
            return to_xpath(source, self_name)
        except Untranslatable as exc:
            if key:
                carried.setdefault(where, {})[key] = source
                notes.append(Note("survey", survey.max_row + 1, column, f"{where}: {exc}; the expression is kept "
                                  "in civicflow_keys for the way back (other tools see no " + column + ")"))
            else:
                notes.append(Note("survey", survey.max_row + 1, column, f"{where}: {exc}; not written"))
            return ""

    open_groups: list[str] = []  # the page and section groups written and not yet ended, innermost last

    def close(kind: str) -> None:
        """End the open section (``kind`` section) or the open section and page (``kind`` page)."""
        while open_groups and (kind == "page" or open_groups[-1] == "section"):
            append({"type": "end_group"})
            if open_groups.pop() == kind:
                break

    def write(fields: tuple[FieldSpec, ...]) -> None:
        for f in fields:
            row: dict[str, Any] = {"name": f.id}
            _texts(row, "label", f.label)
            _texts(row, "hint", f.help)
            if f.kind.starts_page or f.kind.starts_section:  # a group to the next marker (a page: one screen)
                kind = "page" if f.kind.starts_page else "section"
                close(kind)
                row["type"] = "begin_group"
                row["appearance"] = f.kind.xlsform_appearance
                append(row)
                open_groups.append(kind)
                continue
            if f.show_if is not None:
                row["relevant"] = expression(f.show_if.source, f.id, "relevant", key="show_if")
            if f.is_repeat:
                row["type"] = "begin_repeat"
                row["required"] = "yes" if f.required else ""
                row["civicflow_keys"] = _keys(f, carried.get(f.id, {}))
                append(row)
                write(f.fields)
                append({"type": "end_repeat"})
                continue
            kind = f.kind.xlsform  # each field type says which XLSForm type it is written as
            if f.kind.holds_choices:
                key = tuple((c.value, _zh(c.label), _en(c.label), tuple(c.data.items())) for c in f.choices)
                if key not in lists:
                    lists[key] = f"{f.id}_choices"
                    for value, zh, en, data in key:
                        for column, _ in data:  # what a choice carries: a column of its own
                            if column in _CHOICE_COLUMNS and column not in reserved:
                                reserved.add(column)
                                notes.append(Note("choices", 0, column, f"the data key {column!r} of the choices of "
                                                  f"{f.id!r} is a column XLSForm reserves; not written"))
                            elif column not in data_columns and column not in _CHOICE_COLUMNS:
                                data_columns.append(column)
                                choices.cell(row=1, column=4 + len(data_columns), value=column)
                        carried_data = dict(data)
                        choices.append([lists[key], value, zh, en if en != zh else ""]
                                       + [_data_cell(carried_data.get(c)) for c in data_columns])
                kind = f"{f.kind.xlsform} {lists[key]}"
            elif not f.kind.xlsform_native:
                row["civicflow_type"] = f.type
            row["type"] = kind
            implied = f.kind.defaults({})
            bounds = [f". >= {_num(f.min)}" if f.min is not None and "min" not in implied else "",
                      f". <= {_num(f.max)}" if f.max is not None and "max" not in implied else "",
                      f"string-length(.) >= {f.min_length}" if f.min_length is not None else "",
                      f"string-length(.) <= {f.max_length}" if f.max_length is not None else ""]
            check = " and ".join(b for b in bounds if b)
            rule = rules.get(f.id)
            if rule is not None:
                own = expression(rule.check.source, f.id, "constraint", self_name=f.id)
                check = f"({check}) and ({own})" if check and own else (own or check)
                _texts(row, "constraint_message", rule.message)
            row["constraint"] = check
            row["required"] = "yes" if f.required else ""
            if f.compute is not None:
                row["calculation"] = expression(f.compute.source, f.id, "calculation", key="compute")
            if f.default is not None:
                row["default"] = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
            row["appearance"] = f.kind.xlsform_appearance
            row["civicflow_sensitive"] = "yes" if f.sensitive else ""
            row["civicflow_keys"] = _keys(f, carried.get(f.id, {}))
            append(row)
            if f.kind.holds_unit or f.kind.holds_case or f.kind.holds_user:
                notes.append(Note("survey", survey.max_row, "type", f"{f.id}: a {f.type} picker is written as "
                                  f"{kind}; civicflow_type keeps it for the way back"))
    if description:
        row = {"type": "note", "name": DESCRIPTION_NOTE}
        _texts(row, "label", description if isinstance(description, Mapping) else {"zh": str(description)})
        append(row)
    write(form.fields)
    close("page")
    settings = book.create_sheet("settings")
    # form_title has no translations in XLSForm (pyxform refuses them): the English title rides along apart
    settings.append(["form_id", "form_title", "version", "default_language", "civicflow_title_en"])
    settings.append([form.id, _zh(form.title), form.version, "Chinese (zh)",
                     _en(form.title) if _en(form.title) != _zh(form.title) else ""])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue(), notes
