"""Problem reports 随手拍 / 网格上报, end to end through the pages: a resident (or a delivery rider serving as a grid
informant) reports with a photo and the place -> the grid worker of that grid verifies it or rejects it as
unfounded -> handles it, dispatches it to a partner organisation, or mediates the dispute (矛盾纠纷调解, with a
mediation record) -> resolved -> the reporter rates it, or it closes by itself after 7 days."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.users import find_user
from tests.conftest import act, case, shipped_app, started

USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident2", "马丽", ["resident"], "renjia-g1"),
    ("rider", "骑手小刘", ["resident"], "renjia-g1"),
    ("steward", "孙丽", ["resident", "building_steward"], "renjia-g1-b1"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("grid2", "冯磊", ["grid_worker"], "renjia-g2"),
    ("partner", "供电公司 徐工", ["partner_unit"], "renjia"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS)


def figure(app: Any, metric: str) -> float:
    engine = app.extensions["civicflow"]
    return sum(r["value"] for r in engine.figures(find_user(engine.store, "staff")) if r["metric"] == metric)


REPORT = {"category": "hazard", "description": "1号楼2单元楼道堆放旧家具，堵塞消防通道", "address": "1号楼2单元楼道",
          "grid": "renjia-g1", "reporter_type": "resident", "reporter_phone": "13812345678"}
PARTIES = {"parties-0-name": "马丽", "parties-0-party_address": "2号楼201", "parties-0-party_phone": "13900001111",
           "parties-1-name": "周某", "parties-1-party_address": "2号楼301",
           "mediators": "赵敏、老娘舅调解队", "mediation_date": "2026-11-28", "dispute_summary": "夜间噪音扰民"}


def report(who: Any, by: str = "resident", **changes: Any) -> int:
    return started(who(by).post("/start/problem_report", {**REPORT, **changes}))


def test_report_with_photo_verified_fixed_rated_and_closed(app: Any, who: Any):
    resident = who("resident")
    response = resident.post("/start/problem_report", {**REPORT, "photo": (io.BytesIO(PNG), "spot.png")},
                             content_type="multipart/form-data")
    cid = started(response)
    doc = case(app, cid)
    assert doc["state"] == "reported" and doc["org_unit"] == "renjia-g1"
    assert doc["data"]["photo"]["content_type"] == "image/png"
    assert doc["title"].startswith("1号楼2单元楼道：1号楼2单元楼道堆放旧家具")

    grid = who("grid")
    assert f"#{cid}" in grid.get("/").get_data(as_text=True)  # the grid's worker is asked to verify
    assert f"#{cid}" not in who("grid2").get("/").get_data(as_text=True)  # not the other grid's
    page = grid.get(f"/cases/{cid}").get_data(as_text=True)
    assert "spot.png" in page and "13812345678" in page  # the handler sees the photo and the phone
    assert act(grid, cid, "handle", comment="到现场核实属实").status_code == 302
    assert case(app, cid)["state"] == "in_progress" and case(app, cid)["assignees"] == ["grid"]
    assert act(grid, cid, "resolve", resolution="").status_code == 422
    assert act(grid, cid, "resolve", resolution="组织志愿者清理楼道", resolved_on="2026-11-28").status_code == 302
    assert case(app, cid)["state"] == "resolved"
    assert "处置完毕" in resident.get("/notifications").get_data(as_text=True)  # the reporter is told
    assert f"#{cid}" in resident.get("/").get_data(as_text=True)  # waiting for the reporter's rating
    assert act(resident, cid, "rate").status_code == 422  # the rating is required
    assert act(resident, cid, "rate", satisfaction="5", feedback_note="很及时").status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "closed" and doc["data"]["satisfaction"] == 5
    assert [h["action"] for h in doc["history"]] == ["start", "handle", "resolve", "rate"]
    assert "已办结" in resident.get(f"/cases/{cid}").get_data(as_text=True)
    assert figure(app, "problems_found") == 1 and figure(app, "problems_solved") == 1
    assert figure(app, "satisfied") == 1


def test_unfounded_report_is_rejected_with_a_comment(app: Any, who: Any):
    cid = report(who, by="resident2", description="楼顶好像有人私搭乱建", address="6号楼楼顶")
    grid = who("grid")
    assert act(grid, cid, "reject").status_code == 422
    assert act(grid, cid, "reject", comment="现场核实为检修临时支架，已拆除").status_code == 302
    assert case(app, cid)["state"] == "rejected"
    page = who("resident2").get(f"/cases/{cid}").get_data(as_text=True)
    assert "不属实" in page and "检修临时支架" in page
    assert "核实不属实" in who("resident2").get("/notifications").get_data(as_text=True)
    assert figure(app, "problems_found") == 1 and figure(app, "problems_verified") == 0


def test_rider_report_dispatched_to_a_partner_handed_back_and_redispatched(app: Any, who: Any):
    cid = report(who, by="rider", category="environment", description="东门外垃圾满溢多日无人清运",
                 address="小区东门外", reporter_type="rider")
    grid = who("grid")
    page = grid.get(f"/cases/{cid}/do/dispatch").get_data(as_text=True)
    assert 'value="partner"' in page
    assert act(grid, cid, "dispatch", assignees="partner").status_code == 302
    partner = who("partner")
    assert f"#{cid}" in partner.get("/").get_data(as_text=True)
    assert act(partner, cid, "hand_back").status_code == 422
    assert act(partner, cid, "hand_back", comment="非供电公司职责，请联系环卫").status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "reported" and doc["assignees"] == []
    assert act(grid, cid, "handle").status_code == 302
    act(grid, cid, "resolve", resolution="联系环卫清运", resolved_on="2026-11-28")
    assert figure(app, "reports_by_riders") == 1


def test_dispute_mediated_then_closed_by_itself_without_a_rating(app: Any, who: Any, clock: FrozenClock):
    cid = report(who, by="resident2", category="dispute", description="楼上夜间噪音扰民，双方争吵", address="2号楼3单元")
    grid = who("grid")
    assert act(grid, cid, "mediate").status_code == 302
    assert case(app, cid)["state"] == "mediating"
    one_party = {k: v for k, v in PARTIES.items() if not k.startswith("parties-1")}
    response = act(grid, cid, "mediation_agreed", **one_party, mediation_outcome="agreed", agreement="晚10点后不跳绳")
    assert response.status_code == 422  # a dispute has two parties at least
    response = act(grid, cid, "mediation_agreed", **PARTIES, mediation_outcome="failed", agreement="无")
    assert response.status_code == 422 and "调解不成·引导依法解决" in response.get_data(as_text=True)
    response = act(grid, cid, "mediation_agreed", **PARTIES, mediation_outcome="agreed",
                   agreement="301住户晚10点后不再跳绳，并铺隔音垫")
    assert response.status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "resolved" and len(doc["data"]["parties"]) == 2
    assert doc["data"]["mediation_outcome"] == "agreed" and "outcome_check" not in doc["data"]
    page = who("resident2").get(f"/cases/{cid}").get_data(as_text=True)
    assert "调解协议内容" in page and "隔音垫" in page

    clock.advance(days=7, minutes=1)
    app.extensions["civicflow"].tick()
    doc = case(app, cid)
    assert doc["state"] == "closed"
    assert doc["history"][-1]["by"] == "system" and doc["history"][-1]["action"] == "auto_close"
    assert figure(app, "disputes_mediated") == 1 and figure(app, "disputes_settled") == 1
    assert figure(app, "problems_solved") == 1 and figure(app, "satisfied") == 0


def test_failed_mediation_is_referred_and_the_reporter_may_reopen_a_fix(app: Any, who: Any):
    dispute = report(who, by="resident2", category="dispute", description="两户因车位归属发生纠纷", address="地面停车场")
    grid = who("grid")
    act(grid, dispute, "mediate")
    assert act(grid, dispute, "mediation_failed", **PARTIES, referral_to="people_mediation").status_code == 422
    assert act(grid, dispute, "mediation_failed", **PARTIES, referral_to="people_mediation",
               comment="双方各执一词，引导申请人民调解").status_code == 302
    assert case(app, dispute)["state"] == "referred"
    assert case(app, dispute)["data"]["mediation_outcome"] == "failed"
    assert figure(app, "disputes_mediated") == 1 and figure(app, "disputes_settled") == 0

    cid = report(who, by="steward", description="1号楼电动车飞线充电", address="1号楼1单元", reporter_type="steward", urgent="1")
    act(grid, cid, "handle")
    act(grid, cid, "resolve", resolution="劝导拆除飞线", resolved_on="2026-11-28")
    steward = who("steward")
    assert act(steward, cid, "reopen").status_code == 422
    assert act(steward, cid, "reopen", comment="昨晚又在楼道充电").status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "in_progress" and doc["assignees"] == ["grid"]
    assert f"#{cid}" in grid.get("/").get_data(as_text=True)


def test_unverified_report_is_escalated_and_outsiders_see_nothing(app: Any, who: Any, clock: FrozenClock):
    cid = report(who)
    clock.advance(days=3, minutes=1)  # Friday + 1 working day is Monday
    app.extensions["civicflow"].tick()
    doc = case(app, cid)
    assert doc["overdue"] is True and doc["escalated_to"] == ["staff"]
    assert "已超期" in who("staff").get("/notifications").get_data(as_text=True)
    assert who("staff2").get(f"/cases/{cid}").status_code == 404
    assert who("resident2").get(f"/cases/{cid}").status_code == 404  # a neighbour does not see another's report
    assert who("grid2").post(f"/cases/{cid}/do/handle", {"version": "1"}, page="/").status_code == 404
    assert case(app, cid)["state"] == "reported"
    listing = who("staff").get("/workflows/problem_report").get_data(as_text=True)
    assert "1号楼2单元楼道" in listing and "13812345678" not in listing


def test_partner_dispatched_to_a_report_never_sees_the_reporters_phone(app: Any, who: Any):
    """Issue 14: the partner organisation fixes the problem; the reporter's phone (sensitive) stays with the grid
    worker and staff - on the inbox, the case and step pages and both exports - while the reporter sees it."""
    cid = report(who)
    grid = who("grid")
    assert act(grid, cid, "dispatch", assignees="partner").status_code == 302
    partner = who("partner")
    pages = ["/", f"/cases/{cid}", f"/cases/{cid}/do/resolve", "/workflows/problem_report",
             "/workflows/problem_report/export.csv"]
    for url in pages:
        response = partner.get(url)
        assert response.status_code == 200, url
        assert "13812345678" not in response.get_data(as_text=True), url
    assert "138****5678" in partner.get(f"/cases/{cid}").get_data(as_text=True)
    xlsx = partner.get("/workflows/problem_report/export.xlsx")
    assert xlsx.status_code == 200 and b"13812345678" not in _xlsx_text(xlsx.data)
    for user in ("grid", "staff", "resident"):
        assert "13812345678" in who(user).get(f"/cases/{cid}").get_data(as_text=True), user
    assert "13812345678" in grid.get("/workflows/problem_report/export.csv").get_data(as_text=True)


def _xlsx_text(data: bytes) -> bytes:
    """Every XML part of an XLSX file (cells may sit in the shared strings), as one byte string."""
    import zipfile
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return b"".join(z.read(n) for n in z.namelist())
