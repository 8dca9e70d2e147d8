"""Form runtime: typing and validating input, show_if / compute, repeat rows, HTML posts, masking, JSON Schema.

The form under test is tests/data/valid/every_field.yaml (one field of every type),
loaded through the real loader next to the base definitions.
"""
from __future__ import annotations

import copy
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from werkzeug.datastructures import MultiDict

from engine import forms
from engine.clock import SHANGHAI
from engine.errors import SubmissionError
from engine.loader import load_definitions
from engine.spec import Definitions, FieldSpec, FormSpec

DATA = Path(__file__).parent / "data" / "valid"
AT = dt.datetime(2026, 11, 27, 9, 0, tzinfo=SHANGHAI)
ID_VALID = "11010519491231002X"     # born 1949-12-31, correct check digit
ID_WRONG_CHECK = "110105194912310021"
FINITE = "Enter an ordinary number (not nan, inf or one too large to hold)."

GOOD: dict[str, Any] = {
    "name": "张三", "bio": "", "household": "3", "income": "2500.5", "visit_day": "2026-11-27",
    "visit_at": "2026-11-27T09:30", "phone": "138 1234 5678", "id_number": "11010519491231002x",
    "email": "zhang@example.cn", "plate": "AB1234", "topic": "repair", "skills": ["first_aid", "driving"],
    "agree": True, "stars": "4", "score": "7.5",
    "scan": {"name": "证明.pdf", "key": "k1", "size": 1000, "content_type": "application/pdf"},
    "picture": {"name": "a.jpg", "key": "k2", "size": 2000, "content_type": "image/jpeg"},
    "grid": "river-g1", "attendees": [{"name": "李四", "role": "helper"}],
}


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> Definitions:
    root = tmp_path_factory.mktemp("defs") / "base"
    shutil.copytree(DATA / "base", root)
    shutil.copy(DATA / "every_field.yaml", root / "forms")
    return load_definitions(root)


@pytest.fixture(scope="module")
def form(defs: Definitions) -> FormSpec:
    return defs.form("every_field")


def submit(form: FormSpec, defs: Definitions, **changes: Any) -> dict[str, Any]:
    values = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is ...:
            values.pop(key, None)
        else:
            values[key] = value
    return forms.validate(form, values, at=AT, org=defs.org)


def errors_of(form: FormSpec, defs: Definitions, **changes: Any) -> dict[str, list[str]]:
    """The English messages per field path of a submission that must fail."""
    with pytest.raises(SubmissionError) as info:
        submit(form, defs, **changes)
    assert all(set(m) == {"zh", "en"} for msgs in info.value.errors.values() for m in msgs)
    return {path: [m["en"] for m in msgs] for path, msgs in info.value.errors.items()}


def id_check_digit(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights)) % 11]


# --------------------------------------------------------------------------- a good submission

def test_a_good_submission_is_typed_and_computed(form: FormSpec, defs: Definitions) -> None:
    data = submit(form, defs)

    assert data["household"] == 3 and data["income"] == 2500.5 and data["score"] == 7.5 and data["stars"] == 4
    assert data["phone"] == "13812345678"             # spaces removed
    assert data["id_number"] == ID_VALID               # lowercase x accepted, stored uppercase
    assert data["age_years"] == 76                      # compute: age(id_number)
    assert "bio" not in data                            # empty input is no value
    assert "other_topic" not in data                    # hidden: topic is not 'other'
    assert data["attendees"] == [{"name": "李四", "role": "helper"}]


# --------------------------------------------------------------------------- one field type at a time

@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "张", "Enter at least 2 characters."),
    ("name", "张" * 11, "Enter at most 10 characters."),
    ("bio", "字" * 21, "Enter at most 20 characters."),
    ("household", "0", "Must be at least 1."),
    ("household", "11", "Must be at most 10."),
    ("household", "3.5", "Enter a whole number."),
    ("household", "three", "Enter a whole number."),
    ("income", "-1", "Must be at least 0."),
    ("income", "100000.6", "Must be at most 100000.5."),
    ("income", "lots", "Enter a number."),
    # NaN passes every min / max (no comparison with it is true) and no store can hold it or infinity
    ("income", "nan", FINITE), ("income", "NaN", FINITE), ("income", "inf", FINITE), ("income", "-inf", FINITE),
    ("income", "1e999", FINITE), ("income", "9" * 400, FINITE), ("income", float("nan"), FINITE),
    ("income", float("inf"), FINITE), ("score", "nan", FINITE), ("score", "-Infinity", FINITE),
    ("household", "nan", "Enter a whole number."), ("household", "9" * 5000, "Enter a whole number."),
    ("stars", "9" * 5000, "Enter a whole number."),
    ("visit_day", "2026-02-30", "Enter a date such as 2026-11-27."),
    ("visit_day", "2026/11/27", "Enter a date such as 2026-11-27."),
    ("visit_at", "yesterday", "Enter a date and time."),
    ("phone", "12812345678", "Enter an 11-digit mainland mobile number, e.g. 13812345678."),
    ("phone", "1381234567", "Enter an 11-digit mainland mobile number, e.g. 13812345678."),
    ("id_number", ID_WRONG_CHECK, "Not a valid 18-digit resident ID number (check the last digit)."),
    ("id_number", "110105194913310028", "Not a valid 18-digit resident ID number (check the last digit)."),
    ("id_number", "11010519491231002", "Not a valid 18-digit resident ID number (check the last digit)."),
    ("email", "zhang@", "Enter a valid email address."),
    ("email", "zhang example.cn", "Enter a valid email address."),
    ("plate", "ab1234", "Two capital letters and four digits"),   # the field's own message
    ("topic", "fire", "Choose one of the options."),
    ("skills", ["first_aid", "juggling"], "Choose one of the options."),
    ("agree", False, "Please tick this box."),
    ("agree", ..., "Please tick this box."),
    ("stars", "0", "Must be at least 1."),
    ("stars", "6", "Must be at most 5."),
    ("score", "-0.5", "Must be at least 0."),
    ("score", "10.5", "Must be at most 10."),
    ("name", ..., "This field is required."),
    ("name", "   ", "This field is required."),
])
def test_each_field_type_rejects_bad_input(form: FormSpec, defs: Definitions, field: str, value: Any,
                                           message: str) -> None:
    assert errors_of(form, defs, **{field: value}) == {field: [message]}


def test_a_custom_message_is_localized(form: FormSpec, defs: Definitions) -> None:
    with pytest.raises(SubmissionError) as info:
        submit(form, defs, plate="A12345")
    assert info.value.errors == {"plate": [{"zh": "车牌号格式应为两个大写字母加四位数字", "en": "Two capital letters and four digits"}]}
    assert info.value.values["plate"] == "A12345"  # what the user typed is kept for the page


def test_every_required_field_is_reported_once(form: FormSpec, defs: Definitions) -> None:
    errors = errors_of(form, defs, name=..., agree=..., attendees=...)
    assert errors == {"name": ["This field is required."], "agree": ["Please tick this box."],
                      "attendees": ["This field is required."]}


@pytest.mark.parametrize(("upload", "messages"), [
    ({"size": 2 * 1024 * 1024}, ["The file is too large (at most 1MB)."]),
    ({"content_type": "image/png"}, ["This file type is not allowed (allowed: pdf)."]),
    ({"size": 1024 * 1024 + 1, "content_type": "text/plain"},
     ["The file is too large (at most 1MB).", "This file type is not allowed (allowed: pdf)."]),
])
def test_file_size_and_type(form: FormSpec, defs: Definitions, upload: dict, messages: list[str]) -> None:
    assert errors_of(form, defs, scan={**GOOD["scan"], **upload}) == {"scan": messages}


def test_photo_defaults_to_images_up_to_5mb(form: FormSpec, defs: Definitions) -> None:
    assert submit(form, defs, picture={**GOOD["picture"], "size": 5 * 1024 * 1024})
    assert errors_of(form, defs, picture={**GOOD["picture"], "content_type": "image/gif"}) == {
        "picture": ["This file type is not allowed (allowed: jpeg, png, webp)."]}
    assert errors_of(form, defs, picture={**GOOD["picture"], "size": 5 * 1024 * 1024 + 1}) == {
        "picture": ["The file is too large (at most 5MB)."]}


def test_orgunit_must_be_a_unit_of_the_field_level(form: FormSpec, defs: Definitions) -> None:
    assert submit(form, defs, grid="river-g2")["grid"] == "river-g2"
    assert errors_of(form, defs, grid="river") == {"grid": ["Choose one of the options."]}  # a community, not a grid
    assert errors_of(form, defs, grid="nowhere") == {"grid": ["Choose one of the options."]}
    # without the org tree (e.g. an API client's schema) any unit id is accepted
    assert forms.validate(form, {**GOOD, "grid": "river"}, at=AT)["grid"] == "river"


def test_multiselect_takes_a_single_value_and_refuses_repeats(form: FormSpec, defs: Definitions) -> None:
    assert submit(form, defs, skills="cooking")["skills"] == ["cooking"]
    assert errors_of(form, defs, skills=["cooking", "cooking"]) == {"skills": ["This value is not valid."]}


# --------------------------------------------------------------------------- show_if and compute

def test_show_if_hides_a_field_drops_its_value_and_its_required_rule(form: FormSpec, defs: Definitions) -> None:
    data = submit(form, defs, topic="repair", other_topic="typed before changing the topic")
    assert "other_topic" not in data

    assert errors_of(form, defs, topic="other") == {"other_topic": ["This field is required."]}
    assert submit(form, defs, topic="other", other_topic="楼道灯")["other_topic"] == "楼道灯"


def test_compute_fills_a_value_and_ignores_what_was_typed(form: FormSpec, defs: Definitions) -> None:
    assert submit(form, defs, age_years="5")["age_years"] == 76
    assert "age_years" not in submit(form, defs, id_number=...)  # unknown input: no computed value


def test_computed_fields_in_a_chain_are_all_filled() -> None:
    from engine.expressions import Expression

    fields = (
        FieldSpec("total", "number", {"zh": "合计"}, compute=Expression("subtotal + 10")),
        FieldSpec("subtotal", "number", {"zh": "小计"}, compute=Expression("price * qty")),
        FieldSpec("price", "number", {"zh": "单价"}),
        FieldSpec("qty", "integer", {"zh": "数量"}),
    )
    data = forms.validate(FormSpec("order", 1, {"zh": "订单"}, fields), {"price": "2.5", "qty": "4"}, at=AT)
    assert data == {"price": 2.5, "qty": 4, "subtotal": 10.0, "total": 20.0}


# --------------------------------------------------------------------------- repeat groups

def test_repeat_rows_min_and_max(form: FormSpec, defs: Definitions) -> None:
    assert errors_of(form, defs, attendees=[]) == {"attendees": ["Add at least 1 rows."]}
    assert errors_of(form, defs, attendees=[{"name": n} for n in "abcd"]) == {"attendees": ["At most 3 rows."]}
    assert len(submit(form, defs, attendees=[{"name": n} for n in "abc"])["attendees"]) == 3


def test_row_errors_are_mapped_to_row_paths(form: FormSpec, defs: Definitions) -> None:
    rows = [{"name": "李四", "role": "helper"}, {"role": "lead"}, {"name": "王五", "role": "boss", "lead_phone": "1"}]

    errors = errors_of(form, defs, attendees=rows)

    assert errors == {
        "attendees.1.name": ["This field is required."],
        "attendees.1.lead_phone": ["This field is required."],   # shown because role == 'lead'
        "attendees.2.role": ["Choose one of the options."],        # role 'boss': lead_phone stays hidden
    }


def test_row_show_if_can_read_the_outer_form(form: FormSpec, defs: Definitions) -> None:
    rows = [{"name": "李四", "topic_note": "灯坏了"}]
    assert submit(form, defs, attendees=rows)["attendees"] == [{"name": "李四"}]
    data = submit(form, defs, topic="other", other_topic="灯", attendees=rows)
    assert data["attendees"] == [{"name": "李四", "topic_note": "灯坏了"}]


# --------------------------------------------------------------------------- HTML posts

def test_from_html_reads_a_multidict(form: FormSpec, defs: Definitions) -> None:
    post = MultiDict([
        ("name", " 张三 "), ("household", "2"), ("phone", "13812345678"), ("id_number", ID_VALID),
        ("topic", "other"), ("other_topic", "楼道灯"),
        ("skills", "first_aid"), ("skills", "driving"), ("skills", ""),
        ("agree", "0"), ("agree", "on"),                # hidden "0" then the ticked box
        ("grid", "river-g1"), ("picture__keep", "k-old"),
        ("attendees-1-name", "王五"), ("attendees-1-role", "lead"), ("attendees-1-lead_phone", "13912345678"),
        ("attendees-0-name", "李四"), ("attendees-0-role", "helper"),
        ("attendees-10-name", "赵六"),
    ])
    scan = {"name": "a.pdf", "key": "k", "size": 10, "content_type": "application/pdf"}

    values = forms.from_html(form, post, files={"scan": scan})

    assert values["skills"] == ["first_aid", "driving"]
    assert values["agree"] is True
    assert values["scan"] == scan
    assert "picture" not in values  # a kept upload only counts once the web layer checked who may use it
    assert [r["name"] for r in values["attendees"]] == ["李四", "王五", "赵六"]  # by index, 10 after 1
    assert values["attendees"][1] == {"name": "王五", "role": "lead", "lead_phone": "13912345678", "topic_note": ""}
    assert values["email"] == "" and "bio" in values

    data = forms.validate(form, values, at=AT, org=defs.org)
    assert data["name"] == "张三" and data["household"] == 2 and data["age_years"] == 76
    assert data["attendees"][2] == {"name": "赵六"}


@pytest.mark.parametrize(("posted", "ticked"), [
    ([], False), (["0"], False), (["off"], False), (["false"], False), ([""], False),
    (["on"], True), (["1"], True), (["0", "1"], True), (["y"], True),
])
def test_from_html_checkbox(form: FormSpec, posted: list[str], ticked: bool) -> None:
    assert forms.from_html(form, MultiDict([("agree", v) for v in posted]))["agree"] is ticked


def test_from_html_without_rows_gives_no_rows(form: FormSpec) -> None:
    values = forms.from_html(form, MultiDict([("attendees_x-0-name", "not a row of attendees")]))
    assert values["attendees"] == [] and values["skills"] == [] and values["name"] == ""


# --------------------------------------------------------------------------- masking

@pytest.mark.parametrize(("value", "masked"), [
    ("13812345678", "138****5678"),
    (ID_VALID, "1101**********002X"),
    ("张三", "张*"),
    ("张三丰", "张*丰"),
    ("A", "A*"),
    ("1号楼2单元301", "1号*****01"),
    ("1234567", "12***67"),
    ("", ""),
    (None, ""),
    (13812345678, "138****5678"),
])
def test_mask(value: Any, masked: str) -> None:
    assert forms.mask(value) == masked


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # shared CI machines are slow
@given(st.text(min_size=3, max_size=30))
def test_mask_hides_at_least_a_third_and_keeps_the_rest(value: str) -> None:
    masked = forms.mask(value)
    assert len(masked) == len(value)
    hidden = [i for i, (a, b) in enumerate(zip(value, masked)) if a != b or b == "*"]
    assert len(hidden) >= len(value) // 3
    assert all(masked[i] == "*" for i in hidden)


# --------------------------------------------------------------------------- JSON Schema

def test_json_schema_is_a_valid_draft_2020_12_schema(form: FormSpec, defs: Definitions) -> None:
    schema = forms.json_schema(form)

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "全部字段"
    assert schema["required"] == ["name", "agree", "attendees"]  # not other_topic (show_if), not age_years (compute)
    props = schema["properties"]
    assert props["phone"] == {"type": "string", "format": "cn-mobile"}
    assert props["stars"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert props["skills"]["items"]["enum"] == ["first_aid", "cooking", "driving"]
    assert props["scan"]["properties"]["size"]["maximum"] == 1024 * 1024
    assert props["attendees"]["minItems"] == 1 and props["attendees"]["maxItems"] == 3
    assert props["attendees"]["items"]["required"] == ["name"]  # lead_phone has show_if

    clean = submit(form, defs)
    assert list(Draft202012Validator(schema, format_checker=forms.FORMATS).iter_errors(clean)) == []
    bad = {**clean, "phone": "123", "stars": 9}
    failing = {e.absolute_path[0] for e in Draft202012Validator(schema, format_checker=forms.FORMATS).iter_errors(bad)}
    assert failing == {"phone", "stars"}


def test_json_schema_of_the_shipped_form() -> None:
    form = load_definitions(Path(__file__).parent.parent).form("volunteer_application")
    schema = forms.json_schema(form)
    Draft202012Validator.check_schema(schema)
    assert "party_org" not in schema["required"] and "skills" in schema["required"]


# --------------------------------------------------------------------------- ID numbers, as properties

ID_PREFIX = st.builds(
    lambda region, born, seq: f"{region}{born:%Y%m%d}{seq}",
    st.from_regex(r"[1-6][0-9]{5}", fullmatch=True),
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2026, 11, 27)),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # shared CI machines are slow
@given(ID_PREFIX)
def test_an_id_number_with_the_right_check_digit_validates(first17: str) -> None:
    number = first17 + id_check_digit(first17)
    assert forms.is_id_number(number)
    field = FieldSpec("id_number", "id_number", {"zh": "身份证"}, required=True)
    data = forms.validate(FormSpec("f", 1, {"zh": "f"}, (field,)), {"id_number": number.lower()}, at=AT)
    assert data == {"id_number": number}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # shared CI machines are slow
@given(ID_PREFIX, st.sampled_from("0123456789X"))
def test_any_other_check_digit_fails(first17: str, digit: str) -> None:
    if digit == id_check_digit(first17):
        digit = "X" if digit == "0" else "0"
    assert not forms.is_id_number(first17 + digit)
