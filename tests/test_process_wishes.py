"""微心愿 (micro_wish): collected for vulnerable residents, verified, published, claimed by exactly one party member or
partner organisation, fulfilled with a note and a photo, confirmed by the resident — through the pages."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.notify import NOTIFICATIONS
from tests.conftest import DURABLE_STORES, Browser, case, shipped_app, started, store_location

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
USERS = [
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("grid2", "冯磊", ["grid_worker"], "renjia-g2"),
    ("steward", "孙丽", ["resident", "building_steward"], "renjia-g1-b1"),
    ("party", "刘洋", ["resident", "party_member"], "renjia-g2"),
    ("party2", "蒋涛", ["resident", "party_member"], "renjia-g1"),
    ("party_wf", "沈洁", ["resident", "party_member"], "wenfeng-g2"),
    ("partner", "供电公司 徐工", ["partner_unit"], "renjia"),
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
]
WISH = {"wish_content": "一台助听器", "grid": "renjia-g1", "beneficiary_type": "elderly_alone", "wish_kind": "goods",
        "beneficiary_name": "吴秀珍", "beneficiary_phone": "138 0559 1234", "beneficiary_address": "第一网格1号楼102室",
        "estimated_value": "400", "source": "visit", "wish_details": "82岁独居，听力下降"}


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS, store_location(request.param, request, tmp_path))


def version(b: Browser, cid: int) -> str:
    page = b.get(f"/cases/{cid}").get_data(as_text=True)
    found = re.search(r'name="version" value="(\d+)"', page)
    return found.group(1) if found else ""


def act(b: Browser, cid: int, transition: str, **data: Any) -> Any:
    data.setdefault("version", version(b, cid))
    return b.post(f"/cases/{cid}/do/{transition}", data, page=f"/cases/{cid}")


def fulfil(b: Browser, cid: int, photo: bool = True) -> Any:
    data: dict[str, Any] = {"fulfilled_on": "2026-11-30", "fulfil_note": "购买助听器并上门帮助老人调试。",
                            "version": version(b, cid)}
    if photo:
        data["fulfil_photo"] = (io.BytesIO(PNG), "圆梦.png")
    return b.post(f"/cases/{cid}/do/fulfil", data, page=f"/cases/{cid}", content_type="multipart/form-data")


def published(app: Any, who: Any, **changes: str) -> int:
    cid = started(who("grid").post("/start/micro_wish", {**WISH, **changes}))
    response = act(who("staff"), cid, "verify", verified_on="2026-11-27", verify_way="home")
    assert response.status_code == 302
    return cid


def test_wish_verified_published_claimed_fulfilled_and_confirmed(app: Any, who: Any):
    cid = started(who("grid").post("/start/micro_wish", WISH))
    assert case(app, cid)["state"] == "collected"
    assert f"#{cid} 一台助听器" in who("staff").get("/").get_data(as_text=True)
    assert act(who("staff"), cid, "verify").status_code == 422  # the verification form is required
    assert act(who("staff"), cid, "verify", verified_on="2026-11-27", verify_way="home").status_code == 302
    assert case(app, cid)["state"] == "published"

    public = Browser(app).get("/public").get_data(as_text=True)
    assert "一台助听器" in public and "吴秀珍" not in public and "13805591234" not in public
    detail = Browser(app).get(f"/public/{cid}").get_data(as_text=True)
    assert "独居" in detail and "1号楼102室" not in detail
    # party members of the whole community are asked; another community's never see it
    assert f"#{cid}" in who("party").get("/").get_data(as_text=True)  # grid 2, same community
    assert f"#{cid}" in who("partner").get("/").get_data(as_text=True)
    assert who("party_wf").get(f"/cases/{cid}").status_code == 404
    assert who("staff2").get(f"/cases/{cid}").status_code == 404

    stale = version(who("partner"), cid)
    assert act(who("party"), cid, "claim").status_code == 302
    late = who("partner").post(f"/cases/{cid}/do/claim", {"version": stale}, page="/")
    assert late.status_code == 409
    data = case(app, cid)
    assert data["state"] == "claimed" and data["assignees"] == ["party"]
    assert f"#{cid}" not in who("partner").get("/").get_data(as_text=True)
    assert who("party").get(f"/cases/{cid}").get_data(as_text=True).count("第一网格1号楼102室") >= 1  # the claimer may visit
    notes = app.extensions["civicflow"].store.search(NOTIFICATIONS, lambda d: d["to"] == "grid" and d["case"] == cid)
    assert any(n["kind"] == "claimed" for n in notes)

    response = fulfil(who("party"), cid, photo=False)
    assert response.status_code == 422  # a photo is required
    assert "购买助听器" in response.get_data(as_text=True)  # what was typed is kept
    assert fulfil(who("party"), cid).status_code == 302
    data = case(app, cid)
    assert data["state"] == "to_confirm" and data["data"]["fulfil_photo"]["content_type"] == "image/png"
    assert f"#{cid}" in who("grid").get("/").get_data(as_text=True)  # the collector goes back to the resident
    photo = who("grid").get(f"/files/{data['data']['fulfil_photo']['key']}")
    assert photo.status_code == 200 and photo.data == PNG
    assert act(who("party"), cid, "confirm", beneficiary_satisfaction="5").status_code == 403  # not the claimer
    assert act(who("grid"), cid, "confirm", beneficiary_satisfaction="5", beneficiary_words="谢谢党员同志").status_code == 302
    data = case(app, cid)
    assert data["state"] == "fulfilled"
    assert [h["action"] for h in data["history"]] == ["start", "verify", "claim", "fulfil", "confirm"]
    assert [h["by"] for h in data["history"]] == ["grid", "staff", "party", "party", "grid"]
    assert "已圆梦" in Browser(app).get("/public").get_data(as_text=True)

    engine = app.extensions["civicflow"]
    figures = engine.figures(engine.users(role="community_secretary")[0])
    totals = {m: sum(r["value"] for r in figures if r["metric"] == m)
              for m in ("wishes_collected", "wishes_claimed", "wishes_fulfilled", "wish_value")}
    assert totals == {"wishes_collected": 1, "wishes_claimed": 1, "wishes_fulfilled": 1, "wish_value": 400}
    assert "实现微心愿（圆梦）" in who("secretary").get("/dashboard").get_data(as_text=True)


def test_release_to_the_pool_then_a_complaint_sends_it_back_to_the_claimer(app: Any, who: Any):
    cid = published(app, who)
    assert act(who("party2"), cid, "claim").status_code == 302
    assert act(who("party2"), cid, "release").status_code == 422  # say why
    assert act(who("party2"), cid, "release", comment="近期出差，无法完成").status_code == 302
    data = case(app, cid)
    assert data["state"] == "published" and data["assignees"] == []
    assert act(who("partner"), cid, "claim").status_code == 302
    assert act(who("party2"), cid, "fulfil").status_code in (403, 404)  # no longer theirs
    assert fulfil(who("partner"), cid).status_code == 302
    assert act(who("staff"), cid, "complain").status_code == 422
    assert act(who("staff"), cid, "complain", comment="老人反映助听器型号不合适，无法使用。").status_code == 302
    data = case(app, cid)
    assert data["state"] == "claimed" and data["assignees"] == ["partner"]
    assert f"#{cid}" in who("partner").get("/").get_data(as_text=True)
    assert fulfil(who("partner"), cid).status_code == 302
    assert act(who("staff"), cid, "confirm", beneficiary_satisfaction="4").status_code == 302
    actions = [h["action"] for h in case(app, cid)["history"]]
    assert actions == ["start", "verify", "claim", "release", "claim", "fulfil", "complain", "fulfil", "confirm"]


def test_returned_for_changes_resubmitted_then_rejected(app: Any, who: Any):
    cid = started(who("steward").post("/start/micro_wish", {**WISH, "wish_content": "一台电脑", "estimated_value": "1800"}))
    assert who("staff2").get(f"/cases/{cid}").status_code == 404
    assert act(who("staff"), cid, "return_for_changes").status_code == 422
    assert act(who("staff"), cid, "return_for_changes", comment="微心愿一般在500元以内").status_code == 302
    assert case(app, cid)["state"] == "returned"
    form = who("steward").get(f"/cases/{cid}/do/resubmit").get_data(as_text=True)
    assert 'value="一台电脑"' in form
    data = {**WISH, "wish_content": "一套学习用品", "estimated_value": "200", "version": version(who("steward"), cid)}
    assert who("steward").post(f"/cases/{cid}/do/resubmit", data).status_code == 302
    assert case(app, cid)["state"] == "collected" and case(app, cid)["data"]["wish_content"] == "一套学习用品"
    assert act(who("secretary"), cid, "reject", comment="经核实已由民政部门解决").status_code == 302
    data = case(app, cid)
    assert data["state"] == "rejected" and "一套学习用品" in data["title"]
    assert "13805591234" not in who("party").get("/workflows/micro_wish").get_data(as_text=True)


def test_a_claim_left_for_30_days_is_flagged_overdue(app: Any, who: Any, clock: FrozenClock):
    cid = published(app, who)
    act(who("party"), cid, "claim")
    clock.advance(days=30, minutes=1)
    app.extensions["civicflow"].tick()
    data = case(app, cid)
    assert data["overdue"] is True and data["state"] == "claimed" and data["history"][-1]["action"] == "overdue"
    assert fulfil(who("party"), cid).status_code == 302
    assert case(app, cid)["overdue"] is False
