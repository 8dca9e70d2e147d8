"""“3+1”清单: the needs list (needs_list), the resources list (resources_list) and the projects list (projects_list),
claimed in both directions and signed by both sides — through the pages."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from tests.conftest import Browser, act, case, shipped_app, started

ROOT = Path(__file__).resolve().parents[1]
USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident3", "高建国", ["resident"], "renjia-g2"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("partner", "供电公司 徐工", ["partner_unit"], "renjia"),
    ("partner2", "区医院 何医生", ["partner_unit"], "renjia"),
    ("partner_wf", "文峰共建单位", ["partner_unit"], "wenfeng"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
]
NEED = {"need_title": "小区健身器材损坏需维修", "category": "facilities", "grid": "renjia-g1", "beneficiaries": "200",
        "need_description": "1号楼旁健身区3件器材损坏，存在安全隐患。", "contact_name": "王芳", "contact_phone": "13812345678"}
RESOURCE = {"resource_title": "电工义务维修", "provider": "国网徽州供电公司", "category": "facilities", "community": "renjia",
            "resource_description": "为困难家庭和公共设施提供小型电器、照明维修。", "capacity": "每周六上午",
            "capacity_people": "40", "contact_name": "徐工", "contact_phone": "13955550001"}
PROJECT = {"project_name": "健身器材维修更换", "category": "facilities", "partner_name": "国网徽州供电公司",
           "project_content": "更换损坏的健身器材并加装照明。", "start_date": "2026-12-01", "end_date": "2026-12-20",
           "planned_beneficiaries": "200", "budget": "6000"}


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS)


def listed_need(who: Any) -> int:
    cid = started(who("resident").post("/start/needs_list", NEED))
    assert act(who("grid"), cid, "verify", comment="已到现场核实").status_code == 302
    return cid


def listed_resource(who: Any) -> int:
    cid = started(who("partner").post("/start/resources_list", RESOURCE))
    assert act(who("staff"), cid, "accept").status_code == 302
    return cid


def test_both_way_claims_signed_project_carried_out_and_accepted(app: Any, who: Any):
    need = listed_need(who)
    assert case(app, need)["state"] == "published"
    public = Browser(app).get("/public").get_data(as_text=True)
    assert "小区健身器材损坏需维修" in public and "13812345678" not in public
    assert f"#{need}" in who("partner").get("/").get_data(as_text=True)  # partners see the needs waiting for a claim
    assert who("partner_wf").get(f"/cases/{need}").status_code == 404
    assert act(who("partner"), need, "claim").status_code == 302  # a partner claims a need
    assert case(app, need)["state"] == "claimed" and case(app, need)["assignees"] == ["partner"]

    resource = listed_resource(who)
    assert "电工义务维修（国网徽州供电公司）" in Browser(app).get("/public").get_data(as_text=True)
    assert act(who("partner"), resource, "claim").status_code == 403  # communities claim resources
    assert act(who("staff"), resource, "claim").status_code == 302    # the community claims a resource
    assert case(app, resource)["assignees"] == ["staff"]

    # the claimed need offers a project, pre-filled from it
    form = who("staff").get(f"/start/projects_list?parent={need}").get_data(as_text=True)
    assert 'value="小区健身器材损坏需维修"' in form and f'name="parent" value="{need}"' in form
    assert who("partner").get(f"/start/projects_list?parent={need}").status_code == 403
    project = started(who("staff").post("/start/projects_list",
                                        {**PROJECT, "need": str(need), "resource": str(resource), "parent": str(need)}))
    data = case(app, project)
    assert data["state"] == "drafted" and data["parent"] == need and data["data"]["need"] == need
    assert f"#{project}" in who("staff").get(f"/cases/{need}").get_data(as_text=True)  # linked from the need

    picker = who("staff").get(f"/cases/{project}/do/send_for_signing").get_data(as_text=True)
    assert 'value="partner"' in picker and 'value="partner_wf"' not in picker
    assert act(who("staff"), project, "send_for_signing", assignees="partner").status_code == 302
    assert f"#{project}" in who("partner").get("/").get_data(as_text=True)
    assert f"#{project}" not in who("partner2").get("/").get_data(as_text=True)
    assert act(who("partner"), project, "sign", signer="徐工", signed_on="2026-11-28").status_code == 422  # commit
    assert act(who("partner"), project, "sign", signer="徐工", signed_on="2026-11-28", commitment="1").status_code == 302
    assert case(app, project)["state"] == "implementing"
    # signing moved the need and the resource into the project, as the system, naming the project and the signer
    assert case(app, need)["state"] == "in_project" and case(app, resource)["state"] == "in_project"
    moved = case(app, need)["history"][-1]
    assert (moved["action"], moved["by"], moved["from"]) == ("to_project", "system", "claimed")
    assert moved["comment"].startswith(f"由 #{project}（项目清单）带动 · ")
    done = {"completed_on": "2026-12-18", "outcome": "更换器材3件，加装路灯2盏。", "people_served": "180"}
    assert act(who("partner"), project, "finish", **done).status_code == 302
    assert act(who("secretary"), project, "rework").status_code == 422
    assert act(who("secretary"), project, "rework", comment="路灯尚未通电").status_code == 302
    assert act(who("partner"), project, "finish", **done).status_code == 302
    assert act(who("secretary"), project, "accept").status_code == 302
    data = case(app, project)
    assert data["state"] == "done"
    assert [h["action"] for h in data["history"]] == ["start", "send_for_signing", "sign", "linked", "linked", "finish",
                                                      "rework", "finish", "accept", "linked", "linked"]
    assert [h["comment"] for h in data["history"] if h["action"] == "linked"][2:] == [
        f"#{need}（需求清单）→ 已满足", f"#{resource}（资源清单）→ 已入资源清单（待认领）"]
    assert "健身器材维修更换" in Browser(app).get("/public").get_data(as_text=True)

    # accepting the project met the need and freed the resource (the same transaction as the acceptance)
    assert [h["action"] for h in case(app, need)["history"]][-2:] == ["to_project", "mark_met"]
    assert case(app, need)["state"] == "met" and case(app, resource)["state"] == "listed"
    assert case(app, resource)["assignees"] == []

    engine = app.extensions["civicflow"]
    figures = engine.figures(engine.users(role="community_secretary")[0])
    total = {m: sum(r["value"] for r in figures if r["metric"] == m)
             for m in ("needs_collected", "needs_claimed", "needs_met", "resources_offered", "projects_signed",
                       "projects_done", "project_people_served")}
    assert total == {"needs_collected": 1, "needs_claimed": 1, "needs_met": 1, "resources_offered": 1,
                     "projects_signed": 1, "projects_done": 1, "project_people_served": 180}


def test_a_project_is_signed_only_with_a_need_and_a_resource_and_the_partner_may_decline(app: Any, who: Any):
    submitted = started(who("resident3").post("/start/needs_list", {**NEED, "grid": "renjia-g2"}))
    resource = listed_resource(who)
    bad = who("staff").post("/start/projects_list", {**PROJECT, "need": str(submitted), "resource": str(resource)})
    assert bad.status_code == 422 and "请选择一个有效的事项" in bad.get_data(as_text=True)  # the need is not listed yet
    project = started(who("secretary").post("/start/projects_list", {**PROJECT, "resource": str(resource)}))
    assert act(who("secretary"), project, "send_for_signing", assignees="partner").status_code == 409  # no need yet
    act(who("staff"), submitted, "verify")
    response = act(who("secretary"), project, "edit", **{**PROJECT, "need": str(submitted), "resource": str(resource)})
    assert response.status_code == 302
    assert case(app, project)["data"]["need"] == submitted
    assert act(who("secretary"), project, "send_for_signing", assignees="partner2").status_code == 302
    assert act(who("partner2"), project, "decline").status_code == 422
    assert act(who("partner2"), project, "decline", comment="本单位不具备电工资质").status_code == 302
    data = case(app, project)
    assert data["state"] == "drafted" and data["assignees"] == []
    assert act(who("secretary"), project, "cancel", comment="改由供电公司承接").status_code == 302
    assert case(app, project)["state"] == "cancelled"


def test_needs_and_resources_returned_rejected_declined_and_released(app: Any, who: Any):
    need = started(who("resident").post("/start/needs_list", NEED))
    assert who("staff2").get(f"/cases/{need}").status_code == 404
    assert act(who("grid"), need, "return_for_changes", comment="请补充器材位置").status_code == 302
    data = {**NEED, "need_description": "1号楼东侧健身区：单杠、漫步机、扭腰器损坏。", "version": "2"}
    assert who("resident").post(f"/cases/{need}/do/resubmit", data).status_code == 302
    assert act(who("staff"), need, "reject", comment="已列入物业维修计划").status_code == 302
    assert case(app, need)["state"] == "rejected"

    other = listed_need(who)
    act(who("partner"), other, "claim")
    assert act(who("partner"), other, "release", comment="本季度人手不足").status_code == 302
    assert case(app, other)["state"] == "published" and case(app, other)["assignees"] == []
    assert act(who("staff"), other, "withdraw", comment="居民已自行解决").status_code == 302

    offered = started(who("partner2").post("/start/resources_list", {**RESOURCE, "resource_title": "健康义诊", "provider": "区医院"}))
    assert f"#{offered}" in who("staff").get("/").get_data(as_text=True)
    assert act(who("staff"), offered, "decline", comment="与已有资源重复").status_code == 302
    assert case(app, offered)["state"] == "declined"
    resource = listed_resource(who)
    assert act(who("secretary"), resource, "claim").status_code == 302
    assert act(who("secretary"), resource, "release", comment="暂不需要").status_code == 302
    assert act(who("partner"), resource, "withdraw", comment="服务调整").status_code == 302
    assert case(app, resource)["state"] == "withdrawn"
    assert [h["action"] for h in case(app, resource)["history"]] == ["start", "accept", "claim", "release", "withdraw"]
