"""Field types (engine/fieldtypes.py): every type is registered once, says what a value of it is, and is the
only place that knows which types are numeric, date-like, hold files or choices.

Each type is tried on a typical value and a bad one through the same path a form submission takes
(coerce -> JSON Schema -> message, and display / export for what a page shows).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine import fieldtypes, forms
from engine.errors import SubmissionError
from engine.fieldtypes import ABSENT, FIELD_KINDS, FieldType, check_keys, names_where, register
from engine.loader import load_definitions
from engine.spec import CHOICE_TYPES, FIELD_TYPES, FILE_TYPES, Choice, FieldSpec, FormSpec, OrgTree

ROOT = Path(__file__).resolve().parents[1]
ORG: OrgTree = load_definitions(ROOT).org
UNIT = ORG.at_level("grid")[0].id
PDF = {"name": "证明.pdf", "key": "k1", "size": 1000, "content_type": "application/pdf"}
JPG = {"name": "a.jpg", "key": "k2", "size": 2000, "content_type": "image/jpeg"}
AB = (Choice("a", {"zh": "甲", "en": "A"}), Choice("b", {"zh": "乙", "en": "B"}))


def field(type_name: str, **kw: Any) -> FieldSpec:
    return FieldSpec(id="x", type=type_name, label={"zh": "字段", "en": "Field"}, **kw)


#: type -> (field options, typical input, its typed value, its text in zh and en, a bad input, the message (en))
CASES: dict[str, tuple[dict[str, Any], Any, Any, tuple[str, str], Any, str]] = {
    "text": ({"max_length": 5}, "  你好 ", "你好", ("你好", "你好"), "太长了的文字", "Enter at most 5 characters."),
    "textarea": ({"min_length": 3}, "一段话\n两行", "一段话\n两行", ("一段话\n两行", "一段话\n两行"), "短", "Enter at least 3 characters."),
    "integer": ({"min": 1, "max": 10}, " 4 ", 4, ("4", "4"), "4.5", "Enter a whole number."),
    "number": ({"min": 0}, "2.50", 2.5, ("2.5", "2.5"), "-1", "Must be at least 0."),
    "score": ({"min": 0, "max": 10}, "7.0", 7, ("7", "7"), "11", "Must be at most 10."),
    "rating": ({"min": 1, "max": 5}, "4", 4, ("4", "4"), "6", "Must be at most 5."),
    "date": ({}, "2026-11-27", "2026-11-27", ("2026-11-27", "2026-11-27"), "2026-02-30", "Enter a date such as 2026-11-27."),
    "datetime": ({}, "2026-11-27T09:30", "2026-11-27T09:30", ("2026-11-27T09:30", "2026-11-27T09:30"), "明天",
                 "Enter a date and time."),
    "phone": ({}, "138 1234-5678", "13812345678", ("13812345678", "13812345678"), "12345",
              "Enter an 11-digit mainland mobile number, e.g. 13812345678."),
    "id_number": ({}, "11010519491231002x", "11010519491231002X", ("11010519491231002X", "11010519491231002X"),
                  "110105194912310021", "Not a valid 18-digit resident ID number (check the last digit)."),
    "email": ({}, "zhang@example.cn", "zhang@example.cn", ("zhang@example.cn", "zhang@example.cn"), "zhang@", "Enter a valid email address."),
    "select": ({"choices": AB}, "b", "b", ("乙", "B"), "c", "Choose one of the options."),
    "multiselect": ({"choices": AB, "required": True}, ["a", "b"], ["a", "b"], ("甲、乙", "A, B"), [],
                    "Choose at least one option."),
    "checkbox": ({"required": True}, "1", True, ("是", "Yes"), "", "Please tick this box."),
    "file": ({"accept": ("application/pdf",), "max_size": 1024 * 1024}, PDF, PDF, ("证明.pdf", "证明.pdf"),
             {**PDF, "size": 2 * 1024 * 1024}, "The file is too large (at most 1MB)."),
    "photo": ({"accept": ("image/jpeg",), "max_size": 1024 * 1024}, JPG, JPG, ("a.jpg", "a.jpg"), PDF,
              "This file type is not allowed (allowed: jpeg)."),
    "repeat": ({"fields": (field("text"),), "min_rows": 1}, [{"x": "李四"}], [{"x": "李四"}], ("[{'x': '李四'}]",) * 2, [],
               "Add at least 1 rows."),
    "orgunit": ({"level": "grid"}, UNIT, UNIT, (ORG.path_name(UNIT, "zh"), ORG.path_name(UNIT, "en")), "nowhere",
                "Choose one of the options."),
    "case": ({"workflow": "w"}, "12", 12, ("#12", "#12"), "twelve", "Enter a whole number."),
    "time": ({}, "9：30", "09:30", ("09:30", "09:30"), "24:00", "Enter a time such as 09:30."),
    # who the username is, whether they may be named: the engine checks against the store (tests/test_people.py)
    "user": ({}, "赵敏（grid）", "grid", ("grid", "grid"), "x" * 151, "Enter at most 150 characters."),
}
#: Types that hold no value (shown only): tried on their own below.
SHOWN_ONLY = {"note", "section", "page"}


def test_every_field_type_is_registered_once_and_the_form_schema_names_the_same() -> None:
    assert set(FIELD_KINDS) == FIELD_TYPES == set(CASES) | SHOWN_ONLY
    assert all(kind.name == name and isinstance(kind, FieldType) for name, kind in FIELD_KINDS.items())
    schema = json.loads((ROOT / "engine/schema/form.schema.json").read_text(encoding="utf-8"))
    enums = re.findall(r'"type": \{\s*"enum": (\[[^\]]*\])', json.dumps(schema, indent=2))
    assert [set(json.loads(e)) for e in enums] == [FIELD_TYPES]
    with pytest.raises(ValueError, match="registered twice"):
        register(type("Again", (FieldType,), {"name": "text"}))


def test_a_field_answers_with_its_type_object() -> None:
    assert field("score").kind is FIELD_KINDS["score"]
    assert field("repeat").is_repeat and not field("text").is_repeat


@pytest.mark.parametrize("type_name", sorted(CASES))
def test_typical_value_is_typed_valid_and_shown(type_name: str) -> None:
    options, raw, typed, (zh, en), _bad, _message = CASES[type_name]
    f = field(type_name, **options)
    kind = f.kind
    assert kind.clean(f, raw) == typed
    assert not list(Draft202012Validator(kind.schema(f, ORG), format_checker=forms.FORMATS).iter_errors(typed))
    assert forms.validate(FormSpec("t", 1, {}, (f,)), {"x": raw}, org=ORG) == {"x": typed}
    assert (kind.display(f, typed, "zh", ORG), kind.display(f, typed, "en", ORG)) == (zh, en)
    assert kind.display(f, None, "zh", ORG) == "" and kind.display(f, "", "en", ORG) == ""


@pytest.mark.parametrize("type_name", sorted(CASES))
def test_bad_value_is_refused_with_the_message_of_its_type(type_name: str) -> None:
    options, _raw, _typed, _text, bad, message = CASES[type_name]
    f = field(type_name, **options)
    assert list(Draft202012Validator(f.kind.schema(f, ORG), format_checker=forms.FORMATS)
                .iter_errors(f.kind.clean(f, bad))) or f.kind.clean(f, bad) is None
    with pytest.raises(SubmissionError) as info:
        forms.validate(FormSpec("t", 1, {}, (f,)), {"x": bad}, org=ORG)
    assert [m["en"] for m in info.value.errors["x"]] == [message]


def test_empty_values_in_expressions_are_lists_only_for_lists() -> None:
    lists = {name for name, kind in FIELD_KINDS.items() if kind.empty() == []}
    assert lists == {"multiselect", "repeat"}
    assert all(kind.empty() is None for name, kind in FIELD_KINDS.items() if name not in lists)
    assert FIELD_KINDS["multiselect"].empty() is not FIELD_KINDS["multiselect"].empty()  # never a shared list


def test_reading_an_html_post_by_type() -> None:
    from werkzeug.datastructures import MultiDict
    raw = MultiDict([("m", "a"), ("m", ""), ("m", "b"), ("c", "0"), ("c", "1"), ("t", "one"), ("t", "two"),
                     ("r-1-x", "second"), ("r-0-x", "first")])
    fields = (FieldSpec("m", "multiselect", {}, choices=AB), FieldSpec("c", "checkbox", {}), FieldSpec("t", "text", {}),
              FieldSpec("r", "repeat", {}, fields=(field("text"),)), FieldSpec("up", "file", {}),
              FieldSpec("off", "checkbox", {}))
    assert fieldtypes.read_post(fields, raw, "", {}) == {
        "m": ["a", "b"], "c": True, "t": "two", "r": [{"x": "first"}, {"x": "second"}], "off": False}
    assert FIELD_KINDS["file"].from_html(fields[4], raw, "up", {}) is ABSENT
    assert fieldtypes.read_post(fields[4:5], raw, "", {"up": PDF}) == {"up": PDF}


def test_export_cells_keep_numbers_and_write_rows_as_lines() -> None:
    for name in ("integer", "number", "score", "rating"):
        f = field(name)
        assert f.kind.export(f, 7.5, "zh", ORG, False) == 7.5
        assert f.kind.export(f, True, "zh", ORG, False) == "True"  # a boolean is not a number to sum
    f = field("text")
    assert f.kind.export(f, 42, "zh", ORG, False) == "42"
    rows = field("repeat", fields=(FieldSpec("item", "text", {"zh": "物品", "en": "Item"}),
                                   FieldSpec("phone", "phone", {"zh": "电话", "en": "Phone"}, sensitive=True)))
    value = [{"item": "椅子", "phone": "13812345678"}, {"item": "桌子"}]
    assert rows.kind.export(rows, value, "zh", ORG, False) == "物品: 椅子，电话: 13812345678\n物品: 桌子"
    assert rows.kind.export(rows, value, "en", ORG, True) == "Item: 椅子, Phone: 138****5678\nItem: 桌子"
    assert field("phone").kind.masked(field("phone"), "13812345678") == "138****5678"


def test_list_filters_by_type() -> None:
    def hit(type_name: str, value: Any, args: dict[str, str], **kw: Any) -> bool:
        f = field(type_name, **kw)
        wanted = f.kind.wanted(f, args)
        assert wanted is not None
        return f.kind.matches(f, value, wanted, ORG)

    assert hit("integer", 5, {"x_from": "1", "x_to": "5"}) and not hit("rating", 5, {"x_to": "4"})
    assert hit("date", "2026-11-27", {"x_to": "2026-11"}) and not hit("datetime", "2026-12-01T08:00", {"x_to": "2026-11"})
    assert hit("text", "Community Hall", {"x": "hall"}) and not hit("textarea", None, {"x": "hall"})
    assert hit("multiselect", ["a", "b"], {"x": "b"}, choices=AB) and not hit("select", "ab", {"x": "a"}, choices=AB)
    assert hit("case", 12, {"x": "12"}) and hit("checkbox", False, {"x": "0"}) and not hit("checkbox", True, {"x": "0"})
    street = ORG.ancestor_at(UNIT, "community")
    assert street is not None and hit("orgunit", UNIT, {"x": street}) and not hit("orgunit", street, {"x": UNIT})
    assert field("integer").kind.wanted(field("integer"), {"x": "5"}) is None  # a range reads only _from / _to
    assert field("text").kind.wanted(field("text"), {"x": "  "}) is None


def test_load_time_checks_of_each_type_and_keys_that_belong_to_another() -> None:
    def problems(type_name: str, **item: Any) -> list[tuple[list[str], str, bool]]:
        found: list[tuple[list[str], str, bool]] = []
        check_keys(type_name, {"id": "x", "type": type_name, **item},
                   lambda below, message, hint="", key=False: found.append((below, message, key)))
        return found

    assert problems("select") == [([], "a select field needs 'choices'", False)]
    assert problems("score", min=0) == [([], "a score field needs 'min' and 'max'", False)]
    assert problems("rating", max=10) == [(["max"], "a rating is always 1 to 5", True)]
    assert problems("case") == [([], "a case field needs 'workflow' (which process the case belongs to)", False)]
    assert problems("repeat") == [([], "a repeat field needs 'fields' (the columns of one row)", False)]
    assert sorted(problems("text", choices=["a"], level="grid", states=["s"], max_size="1MB", fields=[])) == [
        (["choices"], "'choices' has no effect on a text field", True),
        (["fields"], "'fields' only belongs to a repeat field, not text", True),
        (["level"], "'level' only belongs to an orgunit field", True),
        (["max_size"], "'max_size' only belongs to a file or photo field", True),
        (["states"], "'states' only belongs to a case field", True),
    ]
    assert problems("photo", accept=["image/png"], max_size="1MB") == []
    assert problems("multiselect", choices=["a"]) == []


def test_the_registry_is_the_only_place_that_lists_types() -> None:
    """No code outside engine/fieldtypes.py compares type names or keeps its own list of them."""
    names = "|".join(sorted(FIELD_TYPES, key=len, reverse=True))
    comparisons = re.compile(r"\.type\s*(==|!=|\bin\b|\bnot in\b)|\bftype\s*(==|!=|\bin\b|\bnot in\b)"
                             r"|selectattr\(\s*['\"]type['\"]")
    lists = re.compile(rf"[\"']({names})[\"']\s*,\s*[\"']({names})[\"']")
    found = []
    for path in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "templates").rglob("*.html")]:
        if path.name == "fieldtypes.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if comparisons.search(line) or lists.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "ask the field's type (f.kind...) instead:\n" + "\n".join(found)
    # the facts, as the rest of the engine sees them
    assert names_where("numeric") == {"integer", "number", "score", "rating"}
    assert names_where("date_like") == {"date", "datetime"}
    assert CHOICE_TYPES == names_where("holds_choices") == {"select", "multiselect"}
    assert FILE_TYPES == names_where("holds_files") == {"file", "photo"}
    assert names_where("tally") == {"select", "multiselect", "checkbox"}


def test_every_widget_a_type_names_is_a_macro_of_the_form_templates() -> None:
    text = (ROOT / "templates/_macros.html").read_text(encoding="utf-8")
    table = re.search(r"\{% set widgets = \{(.*?)\} %\}", text, re.S)
    assert table is not None
    widgets = dict(re.findall(r"'(\w+)': (\w+)", table.group(1)))
    assert {kind.widget for kind in FIELD_KINDS.values()} == set(widgets)
    for macro in widgets.values():
        assert re.search(rf"\{{% macro {macro}\(f, value, v, name, aria\) %\}}", text), macro


def test_a_new_type_is_one_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """A type registered here alone is validated, typed and shown by the form runtime."""
    class PostcodeType(FieldType):
        name = "postcode"

        def value_schema(self, f: FieldSpec, org: OrgTree | None) -> dict[str, Any]:
            return {"type": "string", "pattern": r"^\d{6}$"}

        def normalise(self, text: str) -> str:
            return text.replace(" ", "")

        def text(self, f: FieldSpec, value: Any, lang: str, org: OrgTree | None) -> str:
            return f"〒{value}"

    monkeypatch.setitem(FIELD_KINDS, "postcode", PostcodeType())
    f = FieldSpec("code", "postcode", {"zh": "邮编"}, required=True)
    form = FormSpec("t", 1, {}, (f,))
    assert forms.validate(form, {"code": "516 000"}) == {"code": "516000"}
    assert forms.display(f, "516000") == "〒516000"
    with pytest.raises(SubmissionError) as info:
        forms.validate(form, {"code": "51600"})
    assert info.value.errors == {"code": [forms.message("pattern")]}


# --------------------------------------------------------------------------- note, time, required_if, required_message

def test_a_note_holds_no_value_anywhere() -> None:
    from werkzeug.datastructures import MultiDict
    note = FieldSpec("intro", "note", {"zh": "请如实填写", "en": "Answer truthfully"})
    name = FieldSpec("name", "text", {"zh": "姓名"}, required=True)
    form = FormSpec("t", 1, {}, (note, name))
    assert fieldtypes.read_post(form.fields, MultiDict([("intro", "typed anyway"), ("name", "王芳")]), "", {}) == {"name": "王芳"}
    assert forms.validate(form, {"intro": "x", "name": "王芳"}) == {"name": "王芳"}  # nothing of it is stored
    assert "intro" not in forms.object_schema(form.fields, {"intro", "name"})["properties"]
    assert "intro" not in forms.expression_context(form.fields, {})
    assert note.kind.display(note, "x") == "" and not note.kind.list_column
    assert names_where("holds_value") == FIELD_TYPES - SHOWN_ONLY


def test_time_reads_what_people_type_and_filters_by_range() -> None:
    f = field("time")
    assert [f.kind.clean(f, t) for t in ("9:05", "09:05:00", "21：30", " 7:00 ")] == ["09:05", "09:05", "21:30", "07:00"]
    for bad in ("24:00", "9:60", "noon", "930"):
        with pytest.raises(SubmissionError) as info:
            forms.validate(FormSpec("t", 1, {}, (f,)), {"x": bad})
        assert info.value.errors == {"x": [forms.message("time-hm")]}
    wanted = f.kind.wanted(f, {"x_from": "8:00", "x_to": "12:00"})
    assert f.kind.matches(f, "09:30", wanted, ORG) and f.kind.matches(f, "12:00", wanted, ORG)
    assert not f.kind.matches(f, "13:00", wanted, ORG) and not f.kind.matches(f, None, wanted, ORG)
    assert f.kind.input_type == "time" and f.kind.widget == "text"


def _rider_form(**phone: Any) -> FormSpec:
    from engine.expressions import Expression
    return FormSpec("t", 1, {}, (
        FieldSpec("reporter_type", "select", {"zh": "身份"}, choices=(Choice("resident", {"zh": "居民"}), Choice("rider", {"zh": "骑手"}))),
        FieldSpec("phone", "phone", {"zh": "电话"}, required_if=Expression("reporter_type == 'rider'"), **phone),
    ))


def test_required_if_requires_the_field_only_while_its_expression_is_true() -> None:
    form = _rider_form()
    assert forms.validate(form, {"reporter_type": "resident"}) == {"reporter_type": "resident"}
    with pytest.raises(SubmissionError) as info:
        forms.validate(form, {"reporter_type": "rider", "phone": " "})
    assert info.value.errors == {"phone": [forms.message("required")]}
    assert forms.required_now(form.fields, {"reporter_type": "rider"}) == {"phone"}
    assert forms.required_now(form.fields, {}) == set()  # unknown is not true
    assert forms.json_schema(form)["required"] == []  # one static schema cannot say it


def test_required_if_means_what_required_means_for_each_type() -> None:
    from engine.expressions import Expression
    minor = Expression("years < 18")
    form = FormSpec("t", 1, {}, (
        FieldSpec("years", "integer", {"zh": "年龄"}),
        FieldSpec("consent", "checkbox", {"zh": "监护人同意"}, required_if=minor),
        FieldSpec("guardians", "multiselect", {"zh": "监护人"}, choices=AB, required_if=minor),
        FieldSpec("hidden", "text", {"zh": "隐藏"}, required_if=minor, show_if=Expression("years > 100")),
        FieldSpec("rows", "repeat", {"zh": "同行人"}, fields=(
            FieldSpec("name", "text", {"zh": "姓名"}),
            FieldSpec("id_number", "id_number", {"zh": "身份证"}, required_if=Expression("name and years < 18")),
        )),
    ))
    with pytest.raises(SubmissionError) as info:
        forms.validate(form, {"years": "12", "consent": False, "rows": [{"name": "李四"}, {}]})
    assert info.value.errors == {"consent": [forms.message("checkbox")], "guardians": [forms.message("choose")],
                                 "rows.0.id_number": [forms.message("required")]}
    assert forms.validate(form, {"years": "30", "consent": False, "rows": [{"name": "李四"}]})["years"] == 30


def test_required_message_replaces_the_built_in_words() -> None:
    words = {"zh": "骑手请留电话，便于回访", "en": "Riders: leave a phone number"}
    with pytest.raises(SubmissionError) as info:
        forms.validate(_rider_form(required_message=words), {"reporter_type": "rider"})
    assert info.value.errors == {"phone": [words]}
    pledge = FieldSpec("pledge", "checkbox", {"zh": "承诺"}, required=True, required_message={"zh": "请先勾选承诺", "en": "Tick the pledge"},
                       message={"zh": "别的", "en": "other"})
    with pytest.raises(SubmissionError) as info:
        forms.validate(FormSpec("t", 1, {}, (pledge,)), {"pledge": False})
    assert info.value.errors == {"pledge": [{"zh": "请先勾选承诺", "en": "Tick the pledge"}]}
    plain = FieldSpec("pledge", "checkbox", {"zh": "承诺"}, required=True, message={"zh": "别的", "en": "other"})
    with pytest.raises(SubmissionError) as info:
        forms.validate(FormSpec("t", 1, {}, (plain,)), {"pledge": False})
    assert info.value.errors == {"pledge": [forms.message("checkbox")]}  # message: is for wrong values, not empty ones


def test_keys_with_no_effect_for_the_type_are_reported() -> None:
    def problems(type_name: str, **item: Any) -> list[tuple[list[str], str]]:
        found: list[tuple[list[str], str]] = []
        check_keys(type_name, {"id": "x", "type": type_name, "label": "x", **item},
                   lambda below, message, hint="", key=False: found.append((below, message)))
        return found

    assert problems("text", min=1) == [(["min"], "'min' has no effect on a text field: it bounds a number")]
    assert problems("checkbox", max_length=5) == [(["max_length"], "'max_length' has no effect on a checkbox field: it limits typed text")]
    assert problems("date", pattern="^2026") == [(["pattern"], "'pattern' has no effect on a date field: it limits typed text")]
    assert problems("select", choices=["a"], placeholder="选") == [
        (["placeholder"], "'placeholder' has no effect on a select field: it has no text input")]
    assert problems("text", min_rows=1) == [(["min_rows"], "'min_rows' only belongs to a repeat field, not text")]
    assert problems("photo", default="a.jpg") == [(["default"], "'default' has no effect on a photo field")]
    assert sorted(problems("note", required=True, sensitive=True, compute="1")) == [
        (["compute"], "'compute' has no effect on a note field"),
        (["required"], "'required' has no effect on a note field: it holds no value"),
        (["sensitive"], "'sensitive' has no effect on a note field: it holds no value")]
    # what each type does take passes
    assert problems("integer", min=0, max=9, placeholder="0") == [] and problems("textarea", max_length=9, placeholder="…") == []
    assert problems("rating", max=5) == [(["max"], "a rating is always 1 to 5")]  # its own words, once
    assert problems("repeat", fields=[], min_rows=1, max_rows=3) == [] and problems("note", show_if="x", help="h") == []
    assert problems("time", required=True, required_if="x", required_message="m", default="09:00") == []
