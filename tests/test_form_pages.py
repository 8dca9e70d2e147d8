"""Sections and pages of a form (type: section / type: page markers): the layout they make, a page checked as it
is left, going back keeping everything, the final submit checking all and opening the first page with a
problem, questions that depend on an earlier page, and pages skipped when all their questions are hidden.
Through the engine's form runtime and through the pages of the shipped 志愿者注册 (TinyDB and PostgreSQL)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict

from engine import forms
from engine.clock import FrozenClock
from engine.errors import SubmissionError
from engine.loader import load_definitions
from engine.spec import FieldSpec, FormSpec
from engine.expressions import Expression
from tests.conftest import DURABLE_STORES, ROOT, case, shipped_app, started, store_location
from tests.test_volunteer_registration import VALID

USERS = [("resident", "王芳", ["resident"], "renjia-g1"), ("staff", "陈静", ["community_staff"], "renjia")]
PAGE_1 = {k: VALID[k] for k in ("name", "gender", "phone", "id_number", "political_status")}
PAGE_2 = {k: VALID[k] for k in ("occupation", "skills", "available_times", "grid", "address")}
PAGE_3 = {"pledge": "1"}
URL = "/start/volunteer_registration"


def text(zh: str) -> dict[str, str]:
    return {"zh": zh, "en": zh}


def f(fid: str, ftype: str, **kw: Any) -> FieldSpec:
    return FieldSpec(fid, ftype, text(fid), **kw)


# --------------------------------------------------------------------------- the form runtime

def paged_form() -> FormSpec:
    """Three pages; page 2 asks only when ``member`` (page 1) is ticked; page 3 has a question that depends on page 1."""
    return FormSpec("t", 1, text("t"), (
        f("one", "page"), f("who", "section"), f("name", "text", required=True), f("member", "checkbox"),
        f("two", "page"), f("party_org", "text", required=True, show_if=Expression("member")),
        f("three", "page"), f("phone", "phone", required_if=Expression("member")), f("end", "checkbox"),
    ))


def test_markers_make_pages_of_sections_and_hold_no_value() -> None:
    form = paged_form()
    assert [p.id for p in form.pages] == ["one", "two", "three"] and form.paged
    assert [(s.id, [x.id for x in s.fields]) for s in form.pages[0].sections] == [("who", ["name", "member"])]
    assert [(s.id, [x.id for x in s.fields]) for s in form.pages[2].sections] == [(None, ["phone", "end"])]
    assert form.page_of("party_org") == 1 and form.page_of("phone") == 2 and form.page_of("") == 0
    assert forms.validate(form, {"one": "x", "name": "王芳"}) == {"name": "王芳"}  # markers are never stored
    unpaged = FormSpec("u", 1, text("u"), (f("a", "text"), f("s", "section"), f("b", "text")))
    assert not unpaged.paged and [s.id for s in unpaged.pages[0].sections] == [None, "s"]


def test_a_page_is_checked_alone_and_a_hidden_page_is_skipped() -> None:
    form = paged_form()
    assert forms.page_errors(form, {}, 0) == {"name": [forms.message("required")]}
    assert forms.page_errors(form, {"name": "王芳"}, 0) == {}
    _, visible = forms.clean(form.fields, {"name": "王芳"})
    assert forms.shown_pages(form, visible) == [0, 2]  # page two asks nothing unless member is ticked
    # a question on page 3 required because of page 1
    values = {"name": "王芳", "member": True, "party_org": "机关党委"}
    _, visible = forms.clean(form.fields, values)
    assert forms.shown_pages(form, visible) == [0, 1, 2]
    assert forms.page_errors(form, values, 1) == {}
    assert forms.page_errors(form, values, 2) == {"phone": [forms.message("required")]}
    with pytest.raises(SubmissionError) as info:
        forms.validate(form, {"member": True})
    assert forms.first_page_with_errors(form, info.value.errors) == 0  # name on page 1 comes first
    assert forms.first_page_with_errors(form, {"": [], "phone": []}) == 2


def test_the_shipped_registration_is_in_three_pages_of_sections() -> None:
    form = load_definitions(ROOT).form("volunteer_application")
    assert [tuple(p.title.values())[0] for p in form.pages] == ["基本信息", "服务意向", "经历与承诺"]
    assert [s.id for s in form.pages[0].sections] == ["identity", "politics"]
    assert forms.json_schema(form)["properties"].keys() >= {"name", "skills", "pledge"}
    assert not {"about_you", "identity", "helping"} & forms.json_schema(form)["properties"].keys()
    assert forms.from_html(form, MultiDict([("about_you", "x"), ("name", "王芳")]))["name"] == "王芳"


# --------------------------------------------------------------------------- the pages of a paged form

@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS, store_location(request.param, request, tmp_path))


def on_page(html: str) -> str:
    """The title of the page shown (the others are in the page, hidden)."""
    shown = re.findall(r'<div class="form-page" id="page-(\w+)"(?! hidden)>', html)
    assert len(shown) == 1, shown
    return shown[0]


def test_next_checks_the_page_back_keeps_everything_and_submit_checks_all(app: Any, who: Any):
    resident = who("resident")
    html = resident.get(URL).get_data(as_text=True)
    assert on_page(html) == "about_you" and "第 1/3 页" in html
    assert '<fieldset class="section" id="section-identity">' in html and "<legend>个人信息</legend>" in html
    assert html.count('<div class="form-page"') == 3 and html.count(" hidden>") >= 2  # every page is in the form
    assert 'value="next"' in html and 'value="prev"' not in html
    assert 'id="page-submit"' not in html and ">提交</button>" not in html.split('id="fields"')[1]  # from the last page

    # 下一步 with a wrong phone: page 1 again, with only page 1's problems, and what was typed
    refused = resident.post(URL, {**PAGE_1, "phone": "12345", "_page_at": "0", "_page": "next"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422 and on_page(html) == "about_you"
    assert 'id="phone-error"' in html and 'id="skills-error"' not in html and 'id="pledge-error"' not in html
    assert 'value="12345"' in html and 'value="王芳"' in html

    moved = resident.post(URL, {**PAGE_1, "_page_at": "0", "_page": "next"})
    html = moved.get_data(as_text=True)
    assert moved.status_code == 200 and on_page(html) == "helping" and "第 2/3 页" in html
    assert 'value="prev"' in html and 'value="王芳"' in html  # page 1 is still posted along, hidden

    # 上一步 checks nothing and keeps what page 2 had typed
    back = resident.post(URL, {**PAGE_1, "occupation": "退休教师", "_page_at": "1", "_page": "prev"})
    html = back.get_data(as_text=True)
    assert back.status_code == 200 and on_page(html) == "about_you" and 'value="退休教师"' in html
    assert not re.search(r'id="[\w.]+-error"', html) and "name=\"_errors\" value='{}'" in html

    last = resident.post(URL, {**PAGE_1, **PAGE_2, "_page_at": "1", "_page": "next"})
    html = last.get_data(as_text=True)
    assert on_page(html) == "confirm" and "第 3/3 页" in html
    assert '<button type="submit" id="page-submit" class="btn primary">提交</button>' in html
    assert 'value="next"' not in html

    # the submit on the last page checks every page and opens the first with a problem
    refused = resident.post(URL, {**PAGE_1, **PAGE_2, **PAGE_3, "skills": [], "_page_at": "2"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422 and on_page(html) == "helping" and 'id="skills-error"' in html
    assert "您已填写的内容都已保留" in html

    cid = started(resident.post(URL, {**PAGE_1, **PAGE_2, **PAGE_3, "_page_at": "2"}))
    data = case(app, cid)["data"]
    assert data["name"] == "王芳" and data["skills"] == ["tutoring", "elderly_care"]
    assert not {"about_you", "identity", "helping", "confirm"} & set(data)


def test_a_question_on_a_later_page_follows_an_answer_on_an_earlier_one(app: Any, who: Any):
    """has_experience and pledge sit on page 3; party_org on page 1 appears by political_status: the server
    reads every page's answers for show_if and required_if, wherever they are."""
    resident = who("resident")
    refused = resident.post(URL, {**PAGE_1, "political_status": "party_member", "_page_at": "0", "_page": "next"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422 and 'id="party_org-error"' in html
    page2 = resident.post(URL, {**PAGE_1, "political_status": "party_member", "party_org": "机关党委",
                                "_page_at": "0", "_page": "next"}).get_data(as_text=True)
    assert on_page(page2) == "helping"
    page2 = resident.post(URL, {**PAGE_1, **PAGE_2, "skills": ["other"], "_page_at": "1", "_page": "next"})
    assert page2.status_code == 422 and 'id="skills_other-error"' in page2.get_data(as_text=True)


def test_the_live_endpoint_moves_pages_for_the_page_button_only(app: Any, who: Any):
    resident = who("resident")
    token = resident.token(URL)
    headers = {"HX-Request": "true", "HX-Trigger-Name": "_page"}
    fields = resident.client.post(URL + "/fields", data={**PAGE_1, "_page_at": "0", "_page": "next", "csrf_token": token},
                                  headers=headers).get_data(as_text=True)
    assert on_page(fields) == "helping" and 'name="_page_at" value="1"' in fields
    refused = resident.client.post(URL + "/fields", data={**PAGE_1, "phone": "1", "_page_at": "0", "_page": "next",
                                                          "csrf_token": token}, headers=headers).get_data(as_text=True)
    assert on_page(refused) == "about_you" and 'id="phone-error"' in refused
    # a change typed later carries the last button along: it is no page move
    typed = resident.client.post(URL + "/fields", data={**PAGE_1, "_page_at": "1", "_page": "next", "csrf_token": token},
                                 headers={"HX-Request": "true"}).get_data(as_text=True)
    assert on_page(typed) == "helping"
