"""Meeting minutes 议事会纪要 and decision follow-up 议定事项跟踪, end to end through the pages: the convener drafts
the minutes (attendees, agenda, problems and decisions as repeat groups), the community secretary approves and
publishes them (居务公开) or returns them for changes; publishing starts one follow-up per decision, linked to the
meeting; a follow-up is taken on, done and shown to residents, or flagged overdue and escalated."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import ledger
from engine.cases import CASES
from engine.clock import FrozenClock
from engine.users import find_user
from tests.conftest import Browser, act, case, shipped_app, started

USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("grid2", "冯磊", ["grid_worker"], "renjia-g2"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
    ("secretary2", "孔亮", ["community_secretary"], "wenfeng"),
]


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS)


def figure(app: Any, metric: str) -> float:
    engine = app.extensions["civicflow"]
    return sum(r["value"] for r in engine.figures(find_user(engine.store, "secretary")) if r["metric"] == metric)


MINUTES = {
    "meeting_type": "grid_council", "topic": "停车难问题议事会", "meeting_date": "2026-11-25", "place": "第一网格党群服务站",
    "unit": "renjia-g1", "convener": "赵敏",
    "attendees-0-name": "赵敏", "attendees-0-identity": "grid_party_secretary",
    "attendees-1-name": "孙丽", "attendees-1-identity": "steward", "attendees-1-organisation": "1号楼",
    "attendees-2-name": "李经理", "attendees-2-identity": "property", "attendees-2-organisation": "安居物业",
    "agenda-0-item": "夜间停车占用消防通道",
    "agenda-1-item": "楼道堆物",
    "problems-0-problem": "消防通道被占", "problems-0-raised_by": "王芳",
    "problems-1-problem": "楼道堆放纸箱", "problems-1-raised_by": "孙丽",
    "problems-2-problem": "东门路灯不亮", "problems-2-raised_by": "钱进",
    "decisions-0-decision": "施划禁停标线", "decisions-0-owner": "安居物业", "decisions-0-due": "2026-12-10",
    "decisions-1-decision": "清理1号楼楼道", "decisions-1-owner": "孙丽", "decisions-1-due": "2026-12-05",
    "notes": "一致同意先清理楼道、施划标线。",
}


def draft(who: Any, by: str = "grid", **changes: Any) -> int:
    return started(who(by).post("/start/meeting_minutes", {**MINUTES, **changes}))


def test_minutes_reviewed_published_and_each_decision_followed_up(app: Any, who: Any):
    cid = draft(who)
    data = case(app, cid)["data"]
    assert case(app, cid)["state"] == "draft"
    assert data["attendee_count"] == 3 and data["problem_count"] == 3 and data["decision_count"] == 2
    assert data["decisions_summary"] == "施划禁停标线；清理1号楼楼道"
    assert f"#{cid}" not in who("secretary").get("/").get_data(as_text=True)  # a draft is the convener's own
    assert act(who("grid"), cid, "submit").status_code == 302

    secretary = who("secretary")
    assert f"#{cid} 停车难问题议事会" in secretary.get("/").get_data(as_text=True)
    page = secretary.get(f"/cases/{cid}").get_data(as_text=True)
    assert "参会人员" in page and "李经理" in page and "审核通过并公开" in page
    assert act(secretary, cid, "approve", comment="同意公开").status_code == 302
    meeting = case(app, cid)
    assert meeting["state"] == "published"
    assert [h["action"] for h in meeting["history"]] == ["start", "submit", "approve"]

    # one follow-up per decision, linked to the meeting
    engine = app.extensions["civicflow"]
    children = sorted(engine.store.search(CASES, lambda d: d.get("parent") == cid), key=lambda d: d["id"])
    assert [(c["workflow"], c["state"], c["data"]["decision_text"], c["data"]["due"]) for c in children] == [
        ("decision_tracking", "open", "施划禁停标线", "2026-12-10"),
        ("decision_tracking", "open", "清理1号楼楼道", "2026-12-05")]
    assert all(c["org_unit"] == "renjia-g1" and c["data"]["meeting_topic"] == "停车难问题议事会" for c in children)
    page = secretary.get(f"/cases/{cid}").get_data(as_text=True)
    assert f"#{children[0]['id']} 施划禁停标线" in page and f"#{children[1]['id']} 清理1号楼楼道" in page

    # published to residents: the public page shows the summaries, not the attendees' names
    public = Browser(app)
    assert "停车难问题议事会" in public.get("/public").get_data(as_text=True)
    detail = public.get(f"/public/{cid}").get_data(as_text=True)
    assert "消防通道被占；楼道堆放纸箱；东门路灯不亮" in detail and "施划禁停标线；清理1号楼楼道" in detail
    assert "李经理" not in detail
    assert ledger.verify(engine.store) == []
    assert any(e.get("case") == cid for e in engine.store.search("publications"))

    # the grid worker takes a decision on and reports it done; the result is public
    first = children[0]["id"]
    grid = who("grid")
    assert f"#{first} 施划禁停标线" in grid.get("/").get_data(as_text=True)
    assert f'href="/cases/{cid}">#{cid}</a>' in grid.get(f"/cases/{first}").get_data(as_text=True)  # its meeting
    assert act(grid, first, "take_on").status_code == 302
    assert case(app, first)["assignees"] == ["grid"]
    assert act(grid, first, "complete", result="").status_code == 422
    assert act(grid, first, "complete", result="物业已施划黄色禁停标线", completed_on="2026-12-01").status_code == 302
    assert case(app, first)["state"] == "done"
    assert "物业已施划黄色禁停标线" in public.get(f"/public/{first}").get_data(as_text=True)

    assert figure(app, "meetings_held") == 1
    assert figure(app, "problems_collected") == 3
    assert figure(app, "decisions_made") == 2
    assert figure(app, "decisions_done") == 1
    assert "召开议事会" in secretary.get("/dashboard").get_data(as_text=True)


def test_minutes_returned_for_changes_then_resubmitted(app: Any, who: Any):
    cid = draft(who, by="staff", unit="renjia", meeting_type="party_joint", topic="社区党建联席会")
    staff, secretary = who("staff"), who("secretary")
    act(staff, cid, "submit")
    assert act(secretary, cid, "return_for_changes").status_code == 422  # a comment is required
    assert act(secretary, cid, "return_for_changes", comment="请补充二级网格长名单").status_code == 302
    assert case(app, cid)["state"] == "returned"
    assert f"#{cid}" in staff.get("/").get_data(as_text=True)
    assert "请补充二级网格长名单" in staff.get(f"/cases/{cid}").get_data(as_text=True)
    assert "请补充二级网格长名单" not in Browser(app).get("/public").get_data(as_text=True)
    assert Browser(app).get(f"/public/{cid}").status_code == 404  # nothing is public before approval

    form = staff.get(f"/cases/{cid}/do/resubmit").get_data(as_text=True)
    assert 'value="社区党建联席会"' in form  # pre-filled with what was drafted
    changed = {**MINUTES, "unit": "renjia", "meeting_type": "party_joint", "topic": "社区党建联席会",
               "attendees-3-name": "冯磊", "attendees-3-identity": "grid_worker", "version": str(case(app, cid)["version"])}
    assert staff.post(f"/cases/{cid}/do/resubmit", changed).status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "submitted" and doc["data"]["attendee_count"] == 4
    assert act(secretary, cid, "approve").status_code == 302
    assert case(app, cid)["state"] == "published"


def test_a_draft_may_be_edited_or_discarded_with_a_reason_and_nothing_is_spawned(app: Any, who: Any):
    cid = draft(who)
    edited = {**MINUTES, "topic": "停车难问题议事会（第二次）", "version": str(case(app, cid)["version"])}
    assert who("grid").post(f"/cases/{cid}/do/edit", edited).status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "draft" and doc["title"] == "停车难问题议事会（第二次）"
    assert doc["history"][-1]["changes"] == [{"field": "topic", "old": "停车难问题议事会", "new": "停车难问题议事会（第二次）"}]
    assert act(who("grid"), cid, "discard").status_code == 422
    assert act(who("grid"), cid, "discard", comment="会议延期").status_code == 302
    assert case(app, cid)["state"] == "withdrawn"
    assert not app.extensions["civicflow"].store.search(CASES, lambda d: d.get("parent") == cid)
    assert figure(app, "meetings_held") == 0


def test_decision_overdue_is_escalated_to_the_secretary_and_may_be_cancelled(app: Any, who: Any, clock: FrozenClock):
    cid = draft(who)
    act(who("grid"), cid, "submit")
    act(who("secretary"), cid, "approve")
    first, second = sorted(d["id"] for d in app.extensions["civicflow"].store.search(
        CASES, lambda d: d.get("parent") == cid))
    clock.advance(days=7, minutes=1)  # 5 working days later, nobody has taken them on
    app.extensions["civicflow"].tick()
    doc = case(app, first)
    assert doc["overdue"] is True and doc["escalated_to"] == ["secretary"]  # escalated, not made the assignee
    assert f"#{first}" in who("secretary").get("/").get_data(as_text=True)
    assert "已超期" in who("secretary").get("/notifications").get_data(as_text=True)
    assert figure(app, "decisions_overdue") == 2

    secretary = who("secretary")
    assert act(secretary, second, "cancel").status_code == 422
    assert act(secretary, second, "cancel", comment="业主大会未同意").status_code == 302
    assert case(app, second)["state"] == "cancelled"
    page = secretary.get(f"/cases/{first}/do/assign_worker").get_data(as_text=True)
    assert 'value="grid"' in page and 'value="grid2"' in page
    assert act(secretary, first, "assign_worker", assignees="grid").status_code == 302
    doc = case(app, first)
    assert doc["state"] == "in_progress" and doc["assignees"] == ["grid"] and doc["overdue"] is False
    assert act(who("grid"), first, "release").status_code == 422
    assert act(who("grid"), first, "release", comment="需物业牵头").status_code == 302
    assert case(app, first)["state"] == "open"


def test_another_community_sees_nothing_and_residents_cannot_draft(app: Any, who: Any):
    cid = draft(who)
    act(who("grid"), cid, "submit")
    for name in ("staff2", "secretary2"):
        assert who(name).get(f"/cases/{cid}").status_code == 404
        assert f"#{cid}" not in who(name).get("/workflows/meeting_minutes").get_data(as_text=True)
    assert who("secretary2").post(f"/cases/{cid}/do/approve", {"version": "2"}, page="/").status_code == 404
    assert who("resident").get("/start/meeting_minutes").status_code == 403
    assert who("grid2").get(f"/cases/{cid}").status_code == 404  # another grid's worker
    assert case(app, cid)["state"] == "submitted"
