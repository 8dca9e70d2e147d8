"""XLSForm in and out (``civicflow import-xlsform`` / ``export-xlsform``): a spreadsheet form as people design
them for ODK and KoboToolbox becomes a lint-clean forms/<id>.yaml with a report of what was left out and
why; every shipped form goes out as a workbook pyxform (the XLSForm reference converter) accepts and comes
back the same; broken workbooks get a message, never a traceback, and nothing is written."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from pyxform.xls2xform import convert
from ruamel.yaml import YAML

from engine.errors import SubmissionError
from engine.forms import validate
from engine.loader import lint, load_definitions
from engine.xlsform import XLSFormError, export_xlsform, import_xlsform, read_xlsform
from engine.xlsform_expr import Untranslatable, to_jinja, to_xpath

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = load_definitions(ROOT)

SURVEY = [
    ["type", "name", "label::Chinese (zh)", "label::English (en)", "hint::Chinese (zh)", "required", "relevant",
     "constraint", "constraint_message::Chinese (zh)", "constraint_message::English (en)", "calculation",
     "default", "appearance", "choice_filter", "parameters", "media::image"],
    ["start", "start"],
    ["text", "household_head", "户主姓名", "Head of household", "与户口簿一致", "yes", "", "string-length(.) <= 20",
     "姓名不超过20字", "At most 20 characters"],
    ["integer", "Household-Size", "家庭人口", "People in the household", "", "yes", "", ". >= 1 and . <= 20",
     "1到20人", "1 to 20 people"],
    ["decimal", "monthly_income", "月收入（元）", "Monthly income (CNY)", "", "", "", ". >= 0"],
    ["select_one yes_no", "has_elderly", "有无80岁以上老人", "Anyone over 80?", "", "yes"],
    ["integer", "elderly_count", "80岁以上老人人数", "How many over 80", "", "yes", "${has_elderly} = 'yes'",
     ". <= ${Household-Size}", "不能多于家庭人口", "Not more than the household"],
    ["select_multiple needs", "needs", "需求", "Needs", "", "", "", "", "", "", "", "", "", "", ""],
    ["text", "needs_other", "其他需求", "Other need", "", "yes", "selected(${needs}, 'other')"],
    ["calculate", "per_person", "", "", "", "", "", "", "", "", "${monthly_income} div ${Household-Size}"],
    ["date", "visit_date", "走访日期", "Visit date", "", "yes", "", ". <= today()", "不能晚于今天", "Not in the future"],
    ["time", "visit_time", "走访时间", "Time of visit"],
    ["range", "satisfaction", "满意度", "Satisfaction", "", "", "", "", "", "", "", "", "", "", "start=1 end=10 step=1"],
    ["begin_group", "contact", "联系方式", "Contact", "", "", "${Household-Size} > 0"],
    ["text", "contact_phone", "联系电话", "Phone", "", "", "", "regex(., '^1[0-9]{10}$')", "请填11位手机号"],
    ["end_group"],
    ["begin_repeat", "members", "家庭成员", "Members"],
    ["text", "member_name", "姓名", "Name", "", "yes"],
    ["select_one relation", "relation", "与户主关系", "Relation", "", "", "", "", "", "", "", "", "", "${has_elderly} = 'yes'"],
    ["end_repeat"],
    ["geopoint", "location", "位置", "Location"],
    ["note", "thanks", "感谢您的配合", "Thank you"],
    ["acknowledge", "consent", "我同意登记上述信息", "I agree", "", "yes"],
    ["image", "photo", "门牌照片", "Photo of the door plate", "", "", "", "", "", "", "", "", "", "", "", "door.png"],
]
CHOICES = [
    ["list_name", "name", "label::Chinese (zh)", "label::English (en)"],
    ["yes_no", "yes", "有", "Yes"], ["yes_no", "no", "无", "No"],
    ["needs", "care", "居家照护", "Home care"], ["needs", "meals", "助餐", "Meals"], ["needs", "other", "其他", "Other"],
    ["relation", "spouse", "配偶", "Spouse"], ["relation", "child", "子女", "Child"],
]
SETTINGS = [["form_id", "form_title", "version", "default_language", "instance_name"],
            ["household_survey", "入户走访登记", "2024120301", "Chinese (zh)", "concat(${household_head})"]]


def workbook(survey: list = SURVEY, choices: list | None = CHOICES, settings: list | None = SETTINGS) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "survey"
    for row in survey:
        sheet.append(row)
    for name, rows in (("choices", choices), ("settings", settings)):
        if rows is not None:
            extra = book.create_sheet(name)
            for row in rows:
                extra.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.fixture
def definitions(tmp_path: Path) -> Path:
    """A copy of the shipped definitions to import into."""
    root = tmp_path / "defs"
    for part in ("org", "forms", "workflows"):
        shutil.copytree(ROOT / part, root / part)
    return root


def civicflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from engine.web.cli import main; main()", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                                             "CIVICFLOW_HOME": str(cwd)})


# ------------------------------------------------------------------------------------------ in

def test_a_household_survey_becomes_a_lint_clean_form(definitions: Path):
    imported = import_xlsform(workbook(), "household.xlsx", definitions)
    assert imported.path == definitions / "forms" / "household_survey.yaml"
    assert lint(definitions) == []
    form = load_definitions(definitions).forms["household_survey"]
    fields = {f.id: f for f in form.fields}
    assert form.title["zh"] == "入户走访登记" and form.version == 2024120301
    head = fields["household_head"]
    assert head.label == {"zh": "户主姓名", "en": "Head of household"} and head.help["zh"] == "与户口簿一致"
    assert head.required and head.max_length == 20
    size = fields["household_size"]  # "Household-Size" as an id, and ${Household-Size} follows it
    assert size.type == "integer" and (size.min, size.max) == (1, 20) and size.message["zh"] == "1到20人"
    assert fields["monthly_income"].type == "number" and fields["monthly_income"].min == 0
    assert fields["elderly_count"].show_if.source == "has_elderly == 'yes'"
    assert [r.check.source for r in form.rules if r.field == "elderly_count"] == ["elderly_count <= household_size"]
    assert [c.value for c in fields["needs"].choices] == ["care", "meals", "other"]
    assert fields["needs_other"].show_if.source == "'other' in needs"
    assert fields["per_person"].compute.source == "monthly_income / household_size"
    assert [r.check.source for r in form.rules if r.field == "visit_date"] == ["visit_date <= today()"]
    assert (fields["satisfaction"].type, fields["satisfaction"].min, fields["satisfaction"].max) == ("integer", 1, 10)
    assert fields["contact_phone"].show_if.source == "household_size > 0"  # the group's relevant, carried down
    members = fields["members"]
    assert members.is_repeat and [f.id for f in members.fields] == ["member_name", "relation"]
    assert fields["consent"].type == "checkbox" and fields["consent"].required
    assert fields["photo"].type == "photo"
    assert "location" not in fields and "start" not in fields


def test_what_is_not_carried_over_is_reported_with_its_row_and_reason():
    notes = {(n.sheet, n.row, n.column): n.message for n in read_xlsform(workbook()).notes}
    assert "history" in notes[("survey", 2, "type")]                        # start: metadata
    assert "regex() has no counterpart" in notes[("survey", 15, "constraint")]
    assert "cascading choices" in notes[("survey", 19, "choice_filter")]
    assert "'geopoint' has no Civicflow counterpart" in notes[("survey", 21, "type")]
    assert "group labels are not shown" in notes[("survey", 14, "label")]
    assert "not carried over" in notes[("settings", 2, "instance_name")]
    # nothing else is silently dropped: every row with a note is one of these kinds
    assert len(notes) == len(set(notes))


def test_an_imported_form_checks_input_as_the_spreadsheet_said(definitions: Path):
    import_xlsform(workbook(), "household.xlsx", definitions)
    form = load_definitions(definitions).forms["household_survey"]
    good = {"household_head": "王大爷", "household_size": "3", "has_elderly": "yes", "elderly_count": "1",
            "visit_date": "2026-11-20", "consent": "on", "members": [{"member_name": "王小明"}]}
    assert validate(form, good)["household_size"] == 3
    with pytest.raises(SubmissionError) as refused:
        validate(form, {**good, "elderly_count": "30", "household_size": "25", "visit_date": "2999-01-01"})
    errors = {name: str(found) for name, found in refused.value.errors.items()}
    assert "1到20人" in errors["household_size"]
    assert "不能多于家庭人口" in errors["elderly_count"] and "不能晚于今天" in errors["visit_date"]


def test_the_command_writes_the_form_and_prints_the_report(definitions: Path, tmp_path: Path):
    book = tmp_path / "household.xlsx"
    book.write_bytes(workbook())
    done = civicflow("import-xlsform", str(book), "--definitions", str(definitions), cwd=definitions)
    assert done.returncode == 0, done.stderr
    assert "form household_survey written (lint: ok)" in done.stdout
    assert "survey!21 (type): the type 'geopoint' has no Civicflow counterpart; skipped" in done.stdout
    again = civicflow("import-xlsform", str(book), "--definitions", str(definitions), cwd=definitions)
    assert again.returncode == 1 and "exists already; pass --replace" in again.stderr
    assert civicflow("lint", str(definitions), cwd=definitions).returncode == 0


@pytest.mark.parametrize("data, message", [
    (b"not a workbook", "not an .xlsx workbook"),
    (workbook(settings=None, choices=None, survey=[["name"], ["x"]]), "no field Civicflow can take"),
])
def test_unreadable_workbooks_get_a_message_and_nothing_is_written(definitions: Path, data: bytes, message: str):
    before = sorted(p.name for p in (definitions / "forms").iterdir())
    with pytest.raises(XLSFormError) as refused:
        import_xlsform(data, "bad.xlsx", definitions)
    assert message in str(refused.value)
    assert sorted(p.name for p in (definitions / "forms").iterdir()) == before


def test_a_workbook_without_a_survey_sheet_is_refused():
    book = Workbook()
    book.active.title = "questions"
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(XLSFormError, match="no 'survey' sheet"):
        read_xlsform(out.getvalue())


def test_a_form_that_would_not_pass_lint_is_not_written(definitions: Path, tmp_path: Path):
    survey = [["type", "name", "label", "civicflow_type"], ["decimal", "mark", "评分", "score"]]  # score needs min/max
    with pytest.raises(XLSFormError) as refused:
        import_xlsform(workbook(survey, None, [["form_id"], ["marks"]]), "marks.xlsx", definitions)
    assert "does not pass the checks" in str(refused.value)
    assert any("forms/marks.yaml" in p and "score" in p for p in refused.value.problems)
    assert not (definitions / "forms" / "marks.yaml").exists()
    book = tmp_path / "marks.xlsx"
    book.write_bytes(workbook(survey, None, [["form_id"], ["marks"]]))
    done = civicflow("import-xlsform", str(book), "--definitions", str(definitions), cwd=definitions)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "forms/marks.yaml" in done.stderr


def test_a_select_naming_a_missing_list_is_skipped_with_a_note():
    survey = [["type", "name", "label"], ["select_one colours", "colour", "颜色"], ["integer", "count", "人数"]]
    imported = read_xlsform(workbook(survey, [["list_name", "name", "label"], ["sizes", "s", "小"]], None), "x.xlsx")
    assert "choice list 'colours' not found" in str(imported.notes)
    assert "id: count\n" not in imported.text and "id: count_value" in imported.text  # a built-in name is renamed


# ------------------------------------------------------------------------------------------ out and back

def test_every_shipped_form_goes_out_as_a_real_xlsform_and_comes_back_the_same(tmp_path: Path):
    root = tmp_path / "defs"
    for part in ("org", "forms", "workflows"):
        shutil.copytree(ROOT / part, root / part)
    for form_id, form in sorted(SHIPPED.forms.items()):
        data, _notes = export_xlsform(form)
        book = tmp_path / f"{form_id}.xlsx"
        book.write_bytes(data)
        xform = convert(xlsform=str(book), validate=False).xform  # pyxform, the reference converter, accepts it
        assert f"<h:title>{form.title['zh']}</h:title>" in xform, form_id
        imported = read_xlsform(data, book.name)
        assert imported.notes == [], form_id
        (root / "forms" / Path(form.file).name).unlink()
        (root / "forms" / f"{form_id}.yaml").write_text(imported.text, encoding="utf-8")
    assert lint(root) == []  # every workflow still loads with the imported copies of all its forms
    back = load_definitions(root)
    for form_id, form in SHIPPED.forms.items():
        assert summary(back.forms[form_id].fields) == summary(form.fields), form_id
        assert rules(back.forms[form_id]) == rules(form), form_id


def test_a_user_field_goes_out_as_text_and_comes_back_a_user_field():
    from engine.spec import FieldSpec, FormSpec
    helpers = FieldSpec("helpers", "user", {"zh": "协办人", "en": "Helpers"}, multiple=True, roles=("grid_worker",),
                        scope="unit")
    data, notes = export_xlsform(FormSpec("duty", 1, {"zh": "值班"}, (helpers,)))
    assert [n.message for n in notes] == ["helpers: a user picker is written as text; civicflow_type keeps it for the way back"]
    imported = read_xlsform(data, "duty.xlsx")
    assert imported.notes == []
    field = load_yaml(imported.text)["fields"][0]
    assert (field["type"], field["multiple"], field["roles"], field["scope"]) == ("user", True, ["grid_worker"], "unit")



def test_what_a_choice_carries_goes_out_as_columns_of_the_choices_sheet_and_comes_back_typed(tmp_path: Path):
    """Choice data (``data:``) is written as extra columns of the choices sheet, which XLSForm allows and pyxform
    accepts; read back, numbers, TRUE / FALSE and text keep their kind. A key XLSForm reserves is reported."""
    form = SHIPPED.forms["points_redemption"]
    data, notes = export_xlsform(form)
    book = tmp_path / "points_redemption.xlsx"
    book.write_bytes(data)
    convert(xlsform=str(book), validate=False)
    imported = read_xlsform(data, book.name)
    assert imported.notes == []
    choices = YAML(typ="safe").load(imported.text)["fields"][0]["choices"]
    assert choices[0] == {"value": "rice", "label": {"zh": "大米 5 斤（100 积分）", "en": "Rice, 2.5 kg (100 points)"},
                          "data": {"item": "大米", "points": 100, "category": "food"}}
    from engine.spec import Choice, FieldSpec, FormSpec
    odd = FormSpec("odd", 1, {"zh": "测试"}, (FieldSpec(id="kind", type="select", label={"zh": "类别"}, choices=(
        Choice("a", {"zh": "甲"}, {"weight": 1.5, "urgent": True, "name": "保留字"}),
        Choice("b", {"zh": "乙"}, {"weight": 2, "urgent": False}))),), "forms/odd.yaml")
    data, notes = export_xlsform(odd)
    assert [(n.sheet, n.column) for n in notes] == [("choices", "name")]
    back = YAML(typ="safe").load(read_xlsform(data, "odd.xlsx").text)["fields"][0]["choices"]
    assert [c["data"] for c in back] == [{"weight": 1.5, "urgent": True}, {"weight": 2, "urgent": False}]


def load_yaml(text: str) -> Any:
    from ruamel.yaml import YAML
    return YAML(typ="safe").load(text)


def rules(form: Any) -> list[tuple]:
    """A form's per-field rules by field, names used and message (the text may gain brackets on the way)."""
    return sorted((r.field, sorted(r.check.names), dict(r.message)) for r in form.rules if r.field)


def summary(fields: Any) -> list[tuple]:
    return [(f.id, f.type, dict(f.label), f.required, f.min, f.max, f.min_length, f.max_length, f.sensitive,
             [(c.value, dict(c.label)) for c in f.choices], f.level, f.workflow, f.states, f.pattern,
             dict(f.placeholder or {}), dict(f.help or {}), f.default, f.show_if is not None, f.compute is not None,
             f.multiple, f.roles, f.scope,
             summary(f.fields)) for f in fields]


# ------------------------------------------------------------------------------------------ expressions

@pytest.mark.parametrize("xpath, jinja", [
    ("${age} >= 18 and selected(${skills}, 'first_aid')", "age_years >= 18 and 'first_aid' in skills"),
    ("not(${a} = 'x') or ${b} != 2", "not a == 'x' or b != 2"),
    ("(${a} + ${b}) * 2 div 3", "(a + b) * 2 / 3"),
    ("count-selected(${skills}) >= 2", "count(skills) >= 2"),
    ("if(${a} > 1, 'big', 'small')", "('big' if a > 1 else 'small')"),
    ("${a} = ''", "a in (none, '')"),
    (". > 0", "b > 0"),
])
def test_xpath_expressions_translate_to_civicflow(xpath: str, jinja: str):
    assert to_jinja(xpath, {"age": "age_years", "skills": "skills", "a": "a", "b": "b"}, self_name="b") == jinja


@pytest.mark.parametrize("xpath, reason", [
    ("regex(., '^1')", "regex() has no counterpart"),
    ("${nope} = 1", "${nope} is not a field"),
    ("${a} = ", "expected more"),
    ("pulldata('x', 'y')", "pulldata() has no counterpart"),
])
def test_untranslatable_xpath_says_why(xpath: str, reason: str):
    with pytest.raises(Untranslatable, match=reason.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        to_jinja(xpath, {"a": "a"})


@pytest.mark.parametrize("jinja, xpath", [
    ("age_years >= 18 and 'first_aid' in skills", "(${age_years} >= 18 and selected(${skills}, 'first_aid'))"),
    ("stars is not none and stars <= 2", "(not(${stars} = '') and ${stars} <= 2)"),
    ("a not in (none, '')", "${a} != ''"),
    ("count(skills) > 1", "count-selected(${skills}) > 1"),
])
def test_civicflow_expressions_translate_to_xpath(jinja: str, xpath: str):
    assert to_xpath(jinja) == xpath


def test_groups_become_sections_and_field_list_groups_pages_where_they_say_the_same(definitions: Path):
    survey = [["type", "name", "label::Chinese (zh)", "appearance", "relevant"],
              ["begin_group", "basics", "基本信息", "field-list"],
              ["begin_group", "who", "本人", ""],
              ["text", "name", "姓名"], ["acknowledge", "member", "党员"],
              ["end_group"],
              ["end_group"],
              ["begin_group", "activity", "活动记录", "field-list"],
              ["text", "party_org", "所在党组织", "", "${member} = 'OK'"],
              ["begin_repeat", "rows", "活动明细"], ["text", "what", "内容"], ["image", "photo", "照片"], ["end_repeat"],
              ["end_group"]]
    imported = import_xlsform(workbook(survey, None, [["form_id"], ["paged_survey"]]), "paged.xlsx", definitions)
    form = load_definitions(definitions).forms["paged_survey"]
    assert [(p.id, [(s.id, [f.id for f in s.fields]) for s in p.sections]) for p in form.pages] == [
        ("basics", [("who", ["name", "member"])]), ("activity", [(None, ["party_org", "rows"])])]
    rows = form.field("rows")
    assert rows.max_rows == 20 and rows.fields[1].type == "photo"  # an upload in each row: the rows are bounded
    assert [n.message for n in imported.notes if n.column == "repeat_count"] == [
        "its rows carry uploads, so they are bounded: max_rows 20"]
    # a group with questions after its end outside any group cannot be a section (it would run on): flattened,
    # and a field-list group among loose questions is a section, not a page
    loose = [["type", "name", "label::Chinese (zh)", "appearance"],
             ["text", "first", "开头"],
             ["begin_group", "one", "第一组", "field-list"], ["text", "a", "甲"], ["end_group"],
             ["begin_group", "two", "第二组"], ["text", "b", "乙"], ["end_group"],
             ["text", "c", "丙"]]
    imported = read_xlsform(workbook(loose, None, [["form_id"], ["loose"]]))
    assert "type: page" not in imported.text and "id: one\n    type: section" in imported.text
    assert "id: two" not in imported.text
    assert [n.row for n in imported.notes if "group labels are not shown" in n.message] == [6]
