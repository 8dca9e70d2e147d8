"""Workflow diagrams: every state and transition drawn, text from YAML escaped, the case's way highlighted."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from engine.loader import load_definitions
from engine.web.diagrams import render_svg, wrap
from tests.conftest import ROOT, definitions_dir
from tests.test_volunteer_registration import act, case_id, register

SVG = "{http://www.w3.org/2000/svg}"
TRICKY = """\
id: tricky
version: 1
title: {zh: "<script>alert(1)</script>流程", en: "Tricky & <b>bold</b>"}
start: {form: purchase_request, roles: [resident], org_unit_field: unit}
roles: [resident, community_staff]
initial: draft
states:
  draft:
    title: {zh: '草稿 "<img src=x onerror=alert(1)>"', en: Draft}
    transitions:
      - {id: send, to: review, label: {zh: "提交 & <svg onload=alert(1)>", en: Send}, roles: [creator]}
      - {id: note, to: draft, label: {zh: 补充说明, en: Add a note}, roles: [creator]}
      - {id: skip, to: done, label: {zh: 直接办结, en: Close directly}, roles: [community_staff]}
  review:
    title: {zh: 审核中, en: In review}
    transitions:
      - {id: back, to: draft, label: {zh: 退回, en: Return}, roles: [community_staff], comment: required}
      - {id: accept, to: done, label: {zh: 通过, en: Accept}, roles: [community_staff]}
  done: {title: {zh: 已办结, en: Done}, final: true}
"""


@pytest.fixture(scope="module")
def shipped() -> Any:
    return load_definitions(ROOT)


@pytest.fixture
def tricky(tmp_path: Path, registry: Any) -> Any:
    root = definitions_dir(tmp_path)
    (root / "workflows" / "tricky.yaml").write_text(TRICKY, encoding="utf-8")
    return load_definitions(root, registry)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


def groups(root: ET.Element, cls: str) -> dict[str, ET.Element]:
    found = {}
    for g in root.iter(SVG + "g"):
        if cls in g.get("class", "").split():
            found[g.get("data-state") or g.get("data-transition")] = g
    return found


def box(g: ET.Element) -> tuple[float, float, float, float]:
    rect = g.find(SVG + "rect")
    x, y, w, h = (float(rect.get(k)) for k in ("x", "y", "width", "height"))
    return x, y, x + w, y + h


def texts(g: ET.Element) -> str:
    return " ".join(t.text or "" for t in g.iter(SVG + "text"))


def test_text_from_yaml_is_escaped(tricky: Any):
    svg = str(render_svg(tricky.workflows["tricky"], tricky.roles, "zh"))
    root = parse(svg)
    assert {el.tag for el in root.iter()} <= {SVG + t for t in ("svg", "title", "desc", "g", "rect", "text", "path",
                                                                "circle")}
    assert not any(k.startswith("on") for el in root.iter() for k in el.attrib)
    assert "<script" not in svg and "<img" not in svg and "<svg onload" not in svg
    assert root.find(SVG + "title").text == "<script>alert(1)</script>流程"
    assert 'onerror=alert(1)>"' in texts(groups(root, "dg-state")["draft"])
    assert "提交 & <svg" in texts(groups(root, "dg-label")["draft.send"])
    english = parse(str(render_svg(tricky.workflows["tricky"], tricky.roles, "en")))
    assert english.find(SVG + "title").text == "Tricky & <b>bold</b>"


def test_every_state_and_transition_is_drawn_with_its_roles(shipped: Any):
    wf = shipped.workflows["volunteer_registration"]
    root = parse(str(render_svg(wf, shipped.roles, "zh")))
    assert set(groups(root, "dg-state")) == set(wf.states)
    edges = {f"{t.source}.{t.id}" for t in wf.transitions()}
    assert set(groups(root, "dg-edge")) == edges and set(groups(root, "dg-label")) == edges
    approve = texts(groups(root, "dg-label")["submitted.approve"])
    assert "审核通过" in approve and "社区工作者、社区书记" in approve
    assert "发起人" in texts(groups(root, "dg-label")["returned.resubmit"])  # the creator pseudo-role
    assert "dg-final" in groups(root, "dg-state")["active"].get("class")
    english = parse(str(render_svg(wf, shipped.roles, "en")))
    assert "Community staff, Community secretary" in texts(groups(english, "dg-label")["submitted.approve"])


def test_a_transition_to_the_same_state_is_written_in_the_state(tricky: Any):
    root = parse(str(render_svg(tricky.workflows["tricky"], tricky.roles, "zh")))
    assert "↻ 补充说明" in texts(groups(root, "dg-state")["draft"])
    assert "draft.note" not in groups(root, "dg-edge")


def test_layout_keeps_boxes_apart_and_inside_the_picture(shipped: Any, tricky: Any):
    for wf, roles in ((shipped.workflows["volunteer_registration"], shipped.roles),
                      (tricky.workflows["tricky"], tricky.roles)):
        root = parse(str(render_svg(wf, roles, "zh")))
        width, height = float(root.get("width")), float(root.get("height"))
        assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
        boxes = [box(g) for g in list(groups(root, "dg-state").values()) + list(groups(root, "dg-label").values())]
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (wf.id, a, b)
        states = groups(root, "dg-state")
        # the first state is on top; a forward step's label lies between its two states
        assert box(states[wf.initial])[1] == min(box(g)[1] for g in states.values())
        labels = groups(root, "dg-label")
        for t in wf.transitions():
            if t.target != t.source and box(states[t.target])[1] > box(states[t.source])[1]:
                assert box(states[t.source])[3] <= box(labels[f"{t.source}.{t.id}"])[1]
                assert box(labels[f"{t.source}.{t.id}"])[3] <= box(states[t.target])[1]


def test_current_state_and_the_way_taken_are_highlighted(shipped: Any):
    wf = shipped.workflows["volunteer_registration"]
    root = parse(str(render_svg(wf, shipped.roles, "zh", current="submitted",
                                path=["submitted", "returned", "submitted"],
                                taken={("submitted", "return_for_changes"), ("returned", "resubmit")})))
    states = groups(root, "dg-state")
    assert [s for s, g in states.items() if "dg-current" in g.get("class")] == ["submitted"]
    assert {s for s, g in states.items() if "dg-visited" in g.get("class")} == {"submitted", "returned"}
    assert set(groups(root, "dg-taken")) == {"submitted.return_for_changes", "returned.resubmit"}
    assert box(states["submitted"])  # drawn, filled in the primary colour
    assert states["submitted"].find(SVG + "rect").get("fill") == "#b4232a"
    assert states["active"].find(SVG + "rect").get("fill") == "#ffffff"
    assert "当前状态：待审核" == root.find(SVG + "desc").text


def test_wrap_breaks_chinese_between_characters_and_english_at_spaces():
    assert wrap("社区工作者、社区书记", 11, 60) == ["社区工作者、", "社区书记"]  # 、 does not start a line
    assert wrap("社区推荐，报街道初评", 13, 120, bold=True) == ["社区推荐，", "报街道初评"]  # even, no lone 评
    assert wrap("Community staff, Community secretary", 11, 120) == ["Community staff,", "Community secretary"]
    assert wrap("审核通过", 13, 120) == ["审核通过"]
    assert wrap("", 11, 100) == [""]


def test_case_page_shows_where_the_case_is(app: Any, as_user: Any):
    applicant = as_user("resident")
    cid = case_id(register(applicant))
    staff = as_user("staff")
    act(staff, cid, "approve")
    page = applicant.get(f"/cases/{cid}").get_data(as_text=True)
    svg = re.search(r"<svg .*?</svg>", page, re.S).group(0)
    root = parse(svg)
    states = groups(root, "dg-state")
    assert "dg-current" in states["active"].get("class") and "dg-visited" in states["submitted"].get("class")
    assert set(groups(root, "dg-taken")) == {"submitted.approve"}
    assert 'href="/workflows/volunteer_registration/diagram"' in page
    assert "<em>当前状态</em>" in page  # the text version says it too


def test_each_workflow_has_a_diagram_page_linked_from_its_list(app: Any, as_user: Any):
    staff = as_user("staff")
    assert 'href="/workflows/volunteer_registration/diagram"' in staff.get(
        "/workflows/volunteer_registration").get_data(as_text=True)
    page = staff.get("/workflows/volunteer_registration/diagram")
    assert page.status_code == 200
    root = parse(re.search(r"<svg .*?</svg>", page.get_data(as_text=True), re.S).group(0))
    assert not groups(root, "dg-current") and len(groups(root, "dg-state")) == 5
    assert as_user("grid").get("/workflows/volunteer_registration/diagram").status_code == 403
    assert staff.get("/workflows/nothing_here/diagram").status_code == 404
