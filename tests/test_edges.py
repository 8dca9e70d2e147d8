"""The state graph: every way a case can move (transition, objection, ranking outcome) is an edge of its workflow,
built once at load; the loader's checks, the diagram and the case history agree with it."""
from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from engine.cases import CASES
from engine.clock import FrozenClock
from engine.demo import load_demo
from engine.errors import DefinitionError
from engine.loader import load_definitions
from engine.runtime import Engine
from engine.spec import TRIGGERS, EdgeSpec, WorkflowSpec, tr
from engine.store import open_store
from engine.users import USERS as USER_TABLE, User
from engine.web.diagrams import render_svg
from tests.conftest import ROOT, _HASH, case, shipped_app
from tests.test_process_awards import USERS, nominate

SVG = "{http://www.w3.org/2000/svg}"
BASE = Path(__file__).parent / "data" / "valid" / "base"


@pytest.fixture(scope="module")
def shipped() -> Any:
    return load_definitions(ROOT)


def drawn(svg: str, cls: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    return {g.get("data-transition"): g for g in root.iter(SVG + "g") if cls in g.get("class", "").split()}


def texts(g: ET.Element, sep: str = " ") -> str:
    return sep.join(t.text or "" for t in g.iter(SVG + "text"))


# --------------------------------------------------------------------------- the edges of shipped workflows

def test_award_selection_leaves_ranked_by_the_two_ranking_outcomes(shipped: Any):
    wf: WorkflowSpec = shipped.workflows["award_selection"]
    assert not wf.states["ranked"].transitions  # only closing the round moves these cases on
    out = [e for e in wf.edges_from("ranked") if not e.aside]  # besides 催办 and 抄送 (below)
    assert [(e.kind, e.outcome, e.target, e.via, e.roles) for e in out] == [
        ("ranking", "selected", "on_notice", "ranking", ("district_evaluator",)),
        ("ranking", "rest", "not_selected", "ranking", ("district_evaluator",))]
    assert [e.label["zh"] for e in out] == ["确定排名 · 入选", "确定排名 · 未入选"]
    assert [e.key for e in out] == ["ranked:ranking:selected", "ranked:ranking:rest"]
    assert wf.edge("ranked", "on_notice", "ranking") is out[0]
    assert wf.edge("ranked", "awarded") is None  # a move that is no edge
    assert wf.edge("ranked", "on_notice", "transition") is None
    objection = wf.edge("on_notice", "objection_review", "objection")
    assert objection is not None and objection.via == "object" and objection.roles == ("resident",)
    assert objection.label == {"zh": "提出异议", "en": "Objection filed"}
    # the clocks: the notice's end and the scoring deadline
    assert wf.edge("on_notice", "awarded", via="confirm").triggers == ("notice",)
    scoring = wf.edge("district_review", "ranked", via="done_scoring")
    assert scoring.triggers == ("collect",) and scoring.roles == ("district_evaluator", "system")
    assert wf.edge("nominated", "street_review", via="recommend").triggers == ()  # people only
    assert {e.source for e in wf.edges_to("on_notice") if not e.aside} == {"ranked", "objection_review"}


def test_annual_appraisal_notice_state_has_an_objection_edge(shipped: Any):
    wf: WorkflowSpec = shipped.workflows["annual_appraisal"]
    notice = wf.states["on_notice"].notice
    kinds = [(e.kind, e.target) for e in wf.edges_from("on_notice")]
    assert ("objection", notice.objection_to) in kinds and ("transition", "result") in kinds
    assert wf.edge("on_notice", notice.objection_to, "objection").roles == notice.objection_roles
    assert wf.edge("on_notice", "result", via=notice.on_expiry).triggers == ("notice",)
    assert wf.edge("resident_rating", "org_rating", via="close_rating").triggers == ("collect",)


def test_every_clock_of_a_shipped_workflow_is_on_its_edge(shipped: Any):
    seen: set[str] = set()
    for wf in shipped.workflows.values():
        for sid, state in wf.states.items():
            clocks = {"timeout": state.after.transition if state.after else None,
                      "notice": state.notice.on_expiry if state.notice else None,
                      "collect": state.collect.on_deadline if state.collect and state.collect.deadline else None}
            for e in wf.edges_from(sid):
                expected = tuple(name for name in TRIGGERS if e.kind == "transition" and clocks[name] == e.via)
                assert e.triggers == expected, (wf.id, e.key)
                seen |= set(e.triggers)
    assert seen == set(TRIGGERS)  # the shipped workflows use every clock at least once


def test_every_shipped_state_has_a_way_out_and_every_state_is_reachable(shipped: Any):
    for wf in shipped.workflows.values():
        assert len({e.key for e in wf.edges}) == len(wf.edges), wf.id
        for e in wf.edges:
            assert e.source in wf.states and e.target in wf.states and isinstance(e, EdgeSpec), (wf.id, e)
        for sid, state in wf.states.items():
            # a final state is left only when a closed ranking round is reopened (round.reopen)
            onward = [e for e in wf.edges_from(sid) if not (state.final and e.outcome == "reopen")]
            assert bool(onward) != state.final, (wf.id, sid)
        assert wf.reachable() == set(wf.states), wf.id
        # one edge per transition, objection and ranking outcome (of each state rankings wait in, and back from
        # their two outcomes when the round may be reopened), four per approval (two acts, two outcomes), one per
        # task move (转交 / 加签), return_to state (退回) and open state the case may be withdrawn from (撤回), and on
        # every open state the moves beside the process, urge (unless urge: false) and cc: nothing left out
        ranked = {r.state for r in wf.rankings}
        back = {t for r in wf.rankings if r.reopen is not None for t in (r.selected, r.rest)}
        expected = sum(len(s.transitions) + (s.notice is not None) + 4 * (s.approval is not None)
                       + len(s.moves) + len(s.return_to) + (wf.withdraw is not None and not s.final and sid != wf.withdraw)
                       + (not s.final) * ((wf.urge is not None) + 1)
                       for sid, s in wf.states.items()) + 2 * len(ranked) + len(back)
        assert len(wf.edges) == expected, wf.id
        for sid, state in wf.states.items():
            aside = [(e.kind, e.target, e.via) for e in wf.edges_from(sid) if e.aside]
            assert aside == ([] if state.final else [("urge", sid, "urge"), ("cc", sid, "cc")]), (wf.id, sid)


# --------------------------------------------------------------------------- the loader judges along the edges

RANKED_ONLY = """\
id: ranked_only
version: 1
title: 只靠排名
round: {period: quarter}
start: {form: help_request, roles: [resident]}
roles: [resident, community_staff]
initial: submitted
states:
  submitted:
    title: 待评审
    transitions:
      - {id: review, to: ranked, label: 评审, roles: [community_staff], form: review_note}
  ranked:
    title: 待排名
  selected: {title: 入选, final: true}
  not_selected: {title: 未入选, final: true}
ranking:
  state: ranked
  by: BY
  levels: [{id: first, label: 一等, quota: 1}]
  selected: selected
  rest: not_selected
  roles: [community_staff]
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    root = tmp_path / "defs"
    shutil.copytree(BASE, root)
    (root / "workflows" / "x.yaml").write_text(text, encoding="utf-8")
    try:
        load_definitions(root)
    except DefinitionError as exc:
        return [f"{p.path}: {p.message}" for p in exc.problems]
    return []


def test_a_state_left_only_by_a_ranking_is_no_dead_end(tmp_path: Path):
    assert problems(tmp_path, RANKED_ONLY.replace("BY", "score")) == []
    wf = load_definitions(tmp_path / "defs").workflows["ranked_only"]
    assert [(e.kind, e.target) for e in wf.edges_from("ranked") if not e.aside] == [("ranking", "selected"), ("ranking", "not_selected")]
    # without the ranking the same state is a dead end and its outcomes unreachable
    no_ranking = RANKED_ONLY.split("ranking:\n")[0].replace("round: {period: quarter}\n", "")
    assert problems(tmp_path / "2", no_ranking) == [
        "states.ranked: state 'ranked' has no way out",
        "states.selected: state 'selected' is unreachable from 'submitted'",
        "states.not_selected: state 'not_selected' is unreachable from 'submitted'"]


def test_a_ranking_that_cannot_be_built_says_so_once(tmp_path: Path):
    """Its edges are missing, but neither 'no way out' nor 'unreachable' follows from that."""
    assert problems(tmp_path, RANKED_ONLY.replace("BY", "scroe")) == [
        "ranking.by: expression of ranking.by uses unknown name 'scroe'"]


def test_a_notice_state_without_transitions_is_left_by_objection(tmp_path: Path):
    text = """\
id: notice_only
version: 1
title: 公示
start: {form: help_request, roles: [resident]}
roles: [resident, community_staff]
initial: submitted
states:
  submitted:
    title: 公示中
    notice: {duration: 5d, on_expiry: publish, objection: {roles: [resident], to: closed}}
  closed: {title: 已结束, final: true}
"""
    assert problems(tmp_path, text) == ["states.submitted.notice.on_expiry: unknown transition 'publish' in this state"]


# --------------------------------------------------------------------------- the diagram draws the edges

def test_award_selection_diagram_shows_the_ways_out_of_ranked(shipped: Any):
    wf = shipped.workflows["award_selection"]
    svg = str(render_svg(wf, shipped.roles, "zh"))
    edges, labels = drawn(svg, "dg-edge"), drawn(svg, "dg-label")
    assert {"ranked:ranking:selected", "ranked:ranking:rest", "on_notice:objection"} <= set(edges)
    selected = texts(labels["ranked:ranking:selected"])
    assert "确定排名 · 入选" in selected and "区级评审" in selected
    assert "确定排名 · 未入选" in texts(labels["ranked:ranking:rest"])
    objection = labels["on_notice:objection"]
    assert "提出异议" in texts(objection) and "居民" in texts(objection) and "dg-objection" in objection.get("class")
    assert edges["on_notice:objection"].find(SVG + "path").get("stroke-dasharray")  # dashed
    confirm = labels["on_notice.confirm"]
    assert "dg-clock" in confirm.get("class") and "◷" in texts(confirm) and "公示5个工作日期满自动" in texts(confirm, "")
    assert "系统自动" not in texts(confirm)  # the clock says when instead
    scoring = texts(labels["district_review.done_scoring"], "")  # Chinese lines wrap between characters
    assert "区级评审" in scoring and "10个工作日截止时自动" in scoring
    english = drawn(str(render_svg(wf, shipped.roles, "en")), "dg-label")
    assert "Ranking closed · selected" in texts(english["ranked:ranking:selected"])
    assert "automatic when the notice ends (5 working days)" in texts(english["on_notice.confirm"]).replace("\n", " ")


def test_every_shipped_diagram_draws_every_edge(shipped: Any):
    for wf in shipped.workflows.values():
        svg = str(render_svg(wf, shipped.roles, "zh"))
        # a person's moves on their own task (kind move) are left out, but for one compact line per return_to
        lines = {e.key for e in wf.edges if not e.loop and e.kind != "move"}
        assert set(drawn(svg, "dg-edge")) == lines and set(drawn(svg, "dg-label")) == lines, wf.id
        states = {g.get("data-state"): g for g in ET.fromstring(svg).iter(SVG + "g") if g.get("data-state")}
        for e in wf.edges:
            if e.loop and not e.aside and e.kind != "move":
                assert "↻" in texts(states[e.source]), (wf.id, e.key)
            if e.kind == "move" and e.via == "return":
                assert "↩ 可退回：" in texts(states[e.source], "") and tr(wf.states[e.target].title) in texts(states[e.source], ""), (wf.id, e.key)
        assert "↻ 转交" not in texts(ET.fromstring(svg)) and "↻ 加签" not in texts(ET.fromstring(svg)), wf.id
        # 催办 and 抄送 are on every open state: the diagram leaves them out rather than repeat them in every box
        assert "催办" not in svg and "抄送" not in svg, wf.id


# --------------------------------------------------------------------------- cases move along edges

@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS)


def test_the_case_page_outlines_the_ranking_and_the_objection_taken(app: Any, who: Any):
    cid = nominate(who, "孙丽", (95, 92, 90))
    assert who("district").post("/workflows/award_selection/ranking", {"round": "2026-Q4"}).status_code == 302
    assert who("resident2").post(f"/public/{cid}", {"reason": "她本季度没有来我家走访过。"}).status_code == 302
    assert case(app, cid)["state"] == "objection_review"
    page = who("district").get(f"/cases/{cid}").get_data(as_text=True)
    svg = re.search(r"<svg .*?</svg>", page, re.S).group(0)
    taken = set(drawn(svg, "dg-taken"))
    assert {"ranked:ranking:selected", "on_notice:objection", "district_review.done_scoring"} <= taken
    assert "ranked:ranking:rest" not in taken and "on_notice.confirm" not in taken
    # the text version lists the same moves and says which were taken
    text = page[page.index('class="diagram-text"'):]
    assert re.search(r'data-edge="ranked:ranking:selected">确定排名 · 入选 → 拟表彰公示中\s*'
                     r'<span class="muted">\(区级评审\)</span> · 已走过', text)
    assert re.search(r'data-edge="ranked:ranking:rest">确定排名 · 未入选 → 未入选\s*<span class="muted">\([^)]*\)</span></li>', text)
    assert 'data-edge="on_notice:objection">提出异议 → 异议核查' in text
    assert "◷ 公示期满，予以表彰 → 已表彰" in text


def test_the_workflow_diagram_page_lists_the_ranking_moves(app: Any, who: Any):
    page = who("district").get("/workflows/award_selection/diagram").get_data(as_text=True)
    assert 'data-edge="ranked:ranking:selected"' in page and 'data-edge="ranked:ranking:rest"' in page
    assert "已走过" not in page


def test_every_move_in_the_demo_data_is_an_edge(tmp_path: Path):
    """The demo plays every shipped process through the runtime: each history entry that moved a case (or took
    a transition back into its state) names an edge of its workflow by (from, action, to)."""
    store = open_store("memory")
    engine = Engine(load_definitions(ROOT), store)
    users = YAML(typ="safe").load((ROOT / "demo" / "users.yaml").read_text(encoding="utf-8"))["users"]
    with store.transaction() as tx:
        for u in users:
            tx.insert(USER_TABLE, User(u["username"], u["name"], tuple(u["roles"]), u["unit"], _HASH).to_doc())
    assert load_demo(engine, ROOT / "demo" / "cases") > 50
    kinds: set[str] = set()
    moves = 0
    for doc in store.search(CASES):
        wf = engine.definitions.workflows[doc["workflow"]]
        for h in doc["history"][1:]:
            loop = h["from"] == h["to"] and wf.edge(h["from"], h["to"], "transition", h["action"]) is not None
            if h["from"] != h["to"] or loop:
                e = wf.edge(h["from"], h["to"], via=h["action"])
                assert e is not None, (doc["workflow"], h["from"], h["action"], h["to"])
                kinds.add(e.kind)
                moves += 1
    assert kinds == {"transition", "objection", "ranking", "approval", "move"} and moves > 100
    store.close()


def test_the_runtime_refuses_a_move_that_is_not_an_edge():
    """``_move`` is what transitions, objections, timers and rankings all go through: it checks the graph."""
    from engine.clock import FrozenClock
    from engine.errors import TransitionError
    from engine.runtime import Engine
    from engine.store import MemoryStore
    from engine.users import User

    engine = Engine(load_definitions(ROOT), MemoryStore(), clock=FrozenClock("2026-11-27T09:00:00"))
    resident = User("resident", "王芳", ("resident",), "renjia-g1")
    case = engine.start("volunteer_registration", resident, {
        "name": "王芳", "id_number": "11010519491231002X", "phone": "13812345678", "skills": ["elderly_care"],
        "available_times": ["weekend"], "grid": "renjia-g1", "pledge": True})
    wf = engine.workflow_of(case)
    with engine.store.transaction() as tx:
        with pytest.raises(TransitionError) as refused:
            engine._move(tx, case, wf, "active", resident, "object", {"zh": "", "en": ""}, "", [], engine.clock())
        engine._move(tx, case, wf, "active", resident, "approve", {"zh": "", "en": ""}, "", [], engine.clock())
    assert "no step from 'submitted' to 'active'" in str(refused.value)
    assert case.state == "active"
