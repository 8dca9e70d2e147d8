"""Volunteer registration 志愿者注册, end to end through the Flask test client as applicant and staff."""
from __future__ import annotations

import re
from typing import Any

from engine.builtin_actions import POINTS_ACCOUNTS
from engine.cases import CASES
from engine.users import find_user
from tests.conftest import add_users

VALID = {
    "name": "王芳", "gender": "female", "phone": "138 1234 5678", "id_number": "11010519491231002X",
    "political_status": "masses", "occupation": "退休教师", "skills": ["tutoring", "elderly_care"],
    "available_times": ["weekend"], "grid": "renjia-g1", "address": "1号楼302", "pledge": "1",
}


def register(b: Any, **changes: Any) -> Any:
    data = {**VALID, **changes}
    return b.post("/start/volunteer_registration", data)


def case_id(response: Any) -> int:
    return int(re.search(r"/cases/(\d+)", response.headers["Location"]).group(1))


def act(b: Any, cid: int, transition: str, **data: Any) -> Any:
    page = b.get(f"/cases/{cid}").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', page)
    data.setdefault("version", version.group(1) if version else "")
    return b.post(f"/cases/{cid}/do/{transition}", data, page=f"/cases/{cid}")


def test_register_approve_and_history(app, as_user):
    applicant = as_user("resident")
    response = register(applicant)
    assert response.status_code == 302
    cid = case_id(response)
    page = applicant.get(f"/cases/{cid}").get_data(as_text=True)
    assert "待审核" in page and "王芳" in page and "年龄" in page and "76" in page

    staff = as_user("staff")
    inbox = staff.get("/").get_data(as_text=True)
    assert f"#{cid} 王芳" in inbox
    page = staff.get(f"/cases/{cid}").get_data(as_text=True)
    assert "11010519491231002X" in page  # staff who review may see the ID number
    response = act(staff, cid, "approve")
    assert response.status_code == 302

    page = applicant.get(f"/cases/{cid}").get_data(as_text=True)
    assert "已注册" in page and "审核通过" in page and "陈静" in page
    engine = app.extensions["civicflow"]
    assert "volunteer" in find_user(engine.store, "resident").roles
    assert engine.store.search(POINTS_ACCOUNTS, lambda d: d["owner"] == "resident")
    assert f"#{cid} 王芳" not in staff.get("/").get_data(as_text=True)  # left the staff inbox
    history = engine.store.get(CASES, cid)["history"]
    assert [h["action"] for h in history] == ["start", "approve"]
    assert history[1]["by"] == "staff" and history[1]["from"] == "submitted" and history[1]["to"] == "active"


def test_return_for_changes_then_resubmit(app, as_user):
    applicant = as_user("resident")
    cid = case_id(register(applicant, occupation=""))
    staff = as_user("staff")
    response = act(staff, cid, "return_for_changes", comment="")
    assert response.status_code == 422
    assert "请填写意见" in response.get_data(as_text=True)
    response = act(staff, cid, "return_for_changes", comment="请补充职业")
    assert response.status_code == 302
    assert f"#{cid}" in applicant.get("/").get_data(as_text=True)  # back in the applicant's inbox

    form = applicant.get(f"/cases/{cid}/do/resubmit").get_data(as_text=True)
    assert 'value="王芳"' in form  # prefilled with what was submitted
    data = {**VALID, "occupation": "退休教师", "version": "2"}
    response = applicant.post(f"/cases/{cid}/do/resubmit", data)
    assert response.status_code == 302
    case = app.extensions["civicflow"].store.get(CASES, cid)
    assert case["state"] == "submitted" and case["data"]["occupation"] == "退休教师"
    assert case["history"][-1]["changes"] == [{"field": "occupation", "old": None, "new": "退休教师"}]
    assert case["history"][1]["comment"] == "请补充职业"


def test_reject_needs_a_comment_and_is_final(app, as_user):
    applicant = as_user("resident")
    cid = case_id(register(applicant))
    staff = as_user("staff")
    assert act(staff, cid, "reject").status_code == 422
    assert act(staff, cid, "reject", comment="信息不实").status_code == 302
    page = applicant.get(f"/cases/{cid}").get_data(as_text=True)
    assert "未通过" in page and "信息不实" in page
    assert "What you can do now" not in page and "您现在可以" not in page
    assert "volunteer" not in find_user(app.extensions["civicflow"].store, "resident").roles


def test_applicant_may_withdraw(app, as_user):
    applicant = as_user("resident")
    cid = case_id(register(applicant))
    assert act(applicant, cid, "withdraw").status_code == 302
    assert app.extensions["civicflow"].store.get(CASES, cid)["state"] == "withdrawn"


def test_bad_id_number_keeps_everything_typed(as_user):
    applicant = as_user("resident")
    response = register(applicant, id_number="110105194912310021", skills=["other"], skills_other="")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "身份证号码不正确" in page
    assert "此项为必填项" in page  # skills_other, shown because 'other' was chosen
    for typed in ("王芳", "110105194912310021", "138 1234 5678", "退休教师", "1号楼302"):
        assert typed in page
    assert re.search(r'value="other"\s+checked', page) and re.search(r'value="renjia-g1"\s+selected', page)


def test_a_role_that_may_not_approve(app, as_user):
    applicant = as_user("resident")
    cid = case_id(register(applicant))
    grid = as_user("grid")  # a grid worker in the same grid, not community staff
    assert grid.get(f"/cases/{cid}").status_code == 404
    response = grid.post(f"/cases/{cid}/do/approve", {"version": "1"}, page="/")
    assert response.status_code == 404
    response = act(applicant, cid, "approve")  # the applicant cannot approve themself
    assert response.status_code == 403
    assert app.extensions["civicflow"].store.get(CASES, cid)["state"] == "submitted"


def test_staff_of_another_community_cannot_see_or_act(app, as_user):
    cid = case_id(register(as_user("resident")))
    other = as_user("staff2")
    assert other.get(f"/cases/{cid}").status_code == 404
    assert f"#{cid}" not in other.get("/").get_data(as_text=True)
    assert f"#{cid}" not in other.get("/workflows/volunteer_registration").get_data(as_text=True)
    assert other.post(f"/cases/{cid}/do/approve", {"version": "1"}, page="/").status_code == 404


def test_stale_version_conflict(app, as_user):
    cid = case_id(register(as_user("resident")))
    staff, secretary = as_user("staff"), as_user("secretary")
    page_staff = staff.get(f"/cases/{cid}").get_data(as_text=True)
    secretary_response = act(secretary, cid, "return_for_changes", comment="先补充材料")
    assert secretary_response.status_code == 302
    token = re.search(r'name="csrf_token" value="([^"]+)"', page_staff).group(1)
    response = staff.client.post(f"/cases/{cid}/do/reject", data={"csrf_token": token, "version": "1",
                                                                  "comment": "重复申请"})
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "已被他人修改" in page and "重复申请" in page  # the comment typed is kept
    assert app.extensions["civicflow"].store.get(CASES, cid)["state"] == "returned"


def test_post_without_csrf_token_is_refused(app, as_user):
    applicant = as_user("resident")
    response = applicant.client.post("/start/volunteer_registration", data=VALID)
    assert response.status_code == 400
    assert app.extensions["civicflow"].store.count(CASES) == 0


def test_list_filters_by_state_and_masks_sensitive(app, as_user):
    applicant = as_user("resident")
    first = case_id(register(applicant))
    case_id(register(applicant, name="李四", id_number="110105198001010016"))  # one registration per ID number
    staff = as_user("staff")
    act(staff, first, "approve")
    page = staff.get("/workflows/volunteer_registration?state=active").get_data(as_text=True)
    assert "王芳" in page and "李四" not in page
    page = staff.get("/workflows/volunteer_registration").get_data(as_text=True)
    assert "王芳" in page and "李四" in page
    assert "13812345678" not in page and "138****5678" in page


def test_one_registration_per_id_number_names_the_case_that_holds_it(app, as_user):
    """The workflow's unique rule: an ID number waiting for review, returned or registered is not registered
    again; the refusal keeps what was typed and names the case holding it (linked only for someone who sees it)."""
    applicant = as_user("resident")
    first = case_id(register(applicant))
    again = register(applicant, name="王芳芳", id_number=" 11010519491231002x ")  # the same number, typed loosely
    page = again.get_data(as_text=True)
    assert again.status_code == 422
    assert f'<a href="/cases/{first}">该身份证号码已提交过志愿者注册（#{first} 王芳）</a>' in page
    assert 'value="王芳芳"' in page  # nothing typed is lost
    other = as_user("resident2")  # cannot see the first case: only its number, no link, no name
    page = register(other, name="马丽").get_data(as_text=True)
    assert f"该身份证号码已提交过志愿者注册（#{first}）" in page and f'href="/cases/{first}"' not in page
    assert len(app.extensions["civicflow"].store.search(CASES)) == 1
    staff = as_user("staff")
    assert act(staff, first, "return_for_changes", comment="请补充地址").status_code == 302
    assert register(other, name="马丽").status_code == 422  # returned for changes still holds it
    assert act(applicant, first, "withdraw").status_code == 302  # the claim is freed
    second = register(other, name="马丽")
    assert second.status_code == 302
    assert register(applicant).status_code == 422  # now the second case holds it


def test_login_required_and_wrong_password(browser):
    assert browser.get("/").status_code == 302
    response = browser.post("/login", {"username": "resident", "password": "nope"})
    assert response.status_code == 401 and "用户名或密码错误" in response.get_data(as_text=True)


def test_session_cookie_is_httponly_and_samesite(browser):
    response = browser.post("/login", {"username": "resident", "password": "demo1234"})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_language_switch_is_remembered_for_the_user(app, as_user):
    b = as_user("resident")
    assert "收件箱" in b.get("/").get_data(as_text=True)
    b.post("/lang/en", {"next": "/"}, page="/")
    page = b.get("/").get_data(as_text=True)
    assert "Inbox" in page and "收件箱" not in page
    fresh = as_user("resident")  # a new login on another device keeps English
    assert "Inbox" in fresh.get("/").get_data(as_text=True)


def test_unknown_case_and_workflow_give_404(as_user):
    b = as_user("staff")
    assert b.get("/cases/999").status_code == 404
    assert b.get("/start/nope").status_code == 404
    assert b.get("/workflows/nope").status_code == 404


def test_a_neighbour_cannot_see_another_residents_application(app, as_user):
    cid = case_id(register(as_user("resident")))
    add_users(app.extensions["civicflow"].store, [("neighbour", "邻居", ["resident"], "renjia-g1")])
    neighbour = as_user("neighbour")
    assert neighbour.get(f"/cases/{cid}").status_code == 404
    assert "王芳" not in neighbour.get("/workflows/volunteer_registration").get_data(as_text=True)
