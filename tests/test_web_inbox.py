"""The inbox page over HTTP on every store: filters by process and state with counts, sorts, search, page links
that keep the filters, due dates and overdue marks, bulk approval (each case through the transition path with
its own history entry; a case the person may not act on is refused) and notifications read when followed."""
from __future__ import annotations

import re
from typing import Any

from engine.cases import CASES
from engine.notify import NOTIFICATIONS
from engine.users import find_user
from tests.conftest import new_id_number

VOLUNTEER = {"gender": "female", "phone": "13812345678", "id_number": "11010519491231002X",
             "political_status": "masses", "occupation": "退休教师", "skills": ["tutoring"],
             "available_times": ["weekend"], "grid": "renjia-g1", "address": "1号楼302", "pledge": True}
PARTY = {"phone": "13812345678", "member_type": "on_duty", "workplace": "供电公司", "party_org": "供电公司党支部",
         "community": "renjia", "skills": ["tutoring"], "available_times": ["weekend"], "pledge": True}


def engine_of(app: Any) -> Any:
    return app.extensions["civicflow"]


def volunteer(app: Any, name: str, username: str = "resident", **changes: Any) -> int:
    engine = engine_of(app)
    return engine.start("volunteer_registration", find_user(engine.store, username),
                        {**VOLUNTEER, "name": name, "id_number": new_id_number(), **changes}).id


def party(app: Any, name: str) -> int:
    engine = engine_of(app)
    return engine.start("party_member_reporting", find_user(engine.store, "resident"), {**PARTY, "name": name}).id


def ids_on(page: str) -> list[int]:
    """The case numbers of the inbox cards, in order (not those of "cases I started")."""
    cards = page.split('class="cases inbox-cards"', 1)
    return [int(n) for n in re.findall(r'<a href="/cases/(\d+)">', cards[1].split("</ul>", 1)[0])] if len(cards) > 1 else []


def test_filters_by_process_and_state_with_counts(app, as_user, clock):
    v = [volunteer(app, f"志愿者{i}") for i in range(3)]
    p = [party(app, f"党员{i}") for i in range(2)]
    staff = as_user("staff")
    page = staff.get("/").get_data(as_text=True)
    assert sorted(ids_on(page)) == sorted(v + p)
    assert "全部流程 (5)" in page and "志愿者注册 (3)" in page and "在职党员双报到 (2)" in page
    page = staff.get("/?process=volunteer_registration").get_data(as_text=True)
    assert sorted(ids_on(page)) == sorted(v)
    assert "待审核 (3)" in page and 'aria-current="page">志愿者注册 (3)' in page
    page = staff.get("/?process=volunteer_registration&state=submitted").get_data(as_text=True)
    assert sorted(ids_on(page)) == sorted(v)
    page = staff.get("/?process=party_member_reporting&state=submitted").get_data(as_text=True)
    assert sorted(ids_on(page)) == sorted(p)
    # an unknown process or state is dropped, not an error
    assert sorted(ids_on(staff.get("/?process=nope&state=zzz&sort=x&page=abc").get_data(as_text=True))) == sorted(v + p)
    # staff of another community see none of it, and no counts for it
    other = as_user("staff2").get("/").get_data(as_text=True)
    assert ids_on(other) == [] and "志愿者注册 (" not in other


def test_sorts_by_waiting_time_due_date_and_recent_with_overdue_marks(app, as_user, clock):
    first = volunteer(app, "甲")
    clock.advance(hours=5)
    report = party(app, "乙")  # 5 working days to confirm
    clock.advance(hours=5)
    last = volunteer(app, "丙")
    staff = as_user("staff")
    assert ids_on(staff.get("/").get_data(as_text=True)) == [first, report, last]  # waiting longest first
    assert ids_on(staff.get("/?sort=recent").get_data(as_text=True)) == [last, report, first]
    page = staff.get("/?sort=due").get_data(as_text=True)
    assert ids_on(page) == [report, first, last]  # the one with a deadline first
    assert "期限 2026-12-04" in page and "已等待 10 小时" in page and "已超期" not in page
    clock.advance(days=9)
    page = staff.get("/?sort=due").get_data(as_text=True)
    card = page.split(f'<a href="/cases/{report}">', 1)[1].split("</li>", 1)[0]
    assert "已超期" in card and "已等待 9 天" in card  # past its due date, before the clock flags it
    assert page.count('class="late"') == 1
    engine_of(app).tick()
    assert engine_of(app).store.get(CASES, report)["overdue"] is True
    assert 'card overdue' in staff.get("/?sort=due").get_data(as_text=True)


def test_search_by_title_and_by_number(app, as_user):
    a = volunteer(app, "欧阳娜娜")
    b = volunteer(app, "欧阳修")
    c = party(app, "张三")
    staff = as_user("staff")
    assert sorted(ids_on(staff.get("/?q=欧阳").get_data(as_text=True))) == sorted([a, b])
    assert ids_on(staff.get("/?q=娜娜").get_data(as_text=True)) == [a]
    assert ids_on(staff.get("/?q=欧").get_data(as_text=True)) == [a, b]  # one character: within the inbox
    assert ids_on(staff.get(f"/?q=%23{c}").get_data(as_text=True)) == [c]
    assert ids_on(staff.get(f"/?q={c}").get_data(as_text=True)) == [c]
    assert ids_on(staff.get("/?q=欧阳&process=party_member_reporting").get_data(as_text=True)) == []
    page = staff.get("/?q=<script>alert(1)</script>").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "没有符合条件的待办事项" in page
    # a number the person may not act on is not found through the search either
    assert ids_on(as_user("staff2").get(f"/?q={a}").get_data(as_text=True)) == []


def test_pages_link_to_each_other_and_keep_the_filters(app, as_user):
    made = [volunteer(app, f"居民{i:02d}") for i in range(23)]
    party(app, "不在此流程")
    staff = as_user("staff")
    page = staff.get("/?process=volunteer_registration&sort=recent").get_data(as_text=True)
    assert len(ids_on(page)) == 20 and "第 1 / 2 页 · 共 23 项" in page
    assert 'aria-label="第 2 页"' in page and 'aria-current="page">1</span>' in page  # page numbers, not only next
    links = re.findall(r'href="(/\?[^"]*page=2[^"]*)"', page)
    assert links, "no link to page 2"
    second = links[0].replace("&amp;", "&")
    assert "process=volunteer_registration" in second and "sort=recent" in second
    rest = ids_on(staff.get(second).get_data(as_text=True))
    assert sorted(ids_on(page) + rest) == sorted(made) and len(rest) == 3
    assert ids_on(page) + rest == sorted(made, reverse=True)


def bulk_post(b: Any, cases: list[int], transition: str = "approve", versions: dict[int, int] | None = None,
              **extra: Any) -> Any:
    page = b.get("/?process=volunteer_registration").get_data(as_text=True)
    data: dict[str, Any] = {"case": [str(c) for c in cases], "transition": transition,
                            "next": "/?process=volunteer_registration", **extra}
    for c in cases:
        found = re.search(rf'name="version-{c}" value="(\d+)"', page)
        data[f"version-{c}"] = str((versions or {}).get(c) or (found.group(1) if found else 1))
    return b.post("/inbox/bulk", data, page="/")


def test_bulk_approval_runs_each_case_through_the_transition_and_refuses_what_the_user_may_not_do(app, as_user):
    ours = [volunteer(app, f"批量{i}") for i in range(3)]
    theirs = volunteer(app, "文峰居民", username="resident2", grid="wenfeng-g1")
    staff = as_user("staff")
    page = staff.get("/?process=volunteer_registration").get_data(as_text=True)
    assert all(f'name="case" value="{c}"' in page for c in ours) and f'value="{theirs}"' not in page
    assert 'name="transition" value="approve"' in page and "审核通过（所勾选事项）" in page
    response = bulk_post(staff, ours + [theirs], comment="材料齐全")
    assert response.status_code == 302 and response.headers["Location"].endswith("/?process=volunteer_registration")
    page = staff.get(response.headers["Location"]).get_data(as_text=True)
    assert "已办理 3 个事项" in page and f'role="alert">未办理：#{theirs}：不存在' in page
    store = engine_of(app).store
    for c in ours:
        doc = store.get(CASES, c)
        assert doc["state"] == "active"
        assert [(h["action"], h["by"], h["comment"]) for h in doc["history"]] == [
            ("start", "resident", ""), ("approve", "staff", "材料齐全")]
    assert store.get(CASES, theirs)["state"] == "submitted"  # another community's case: untouched
    assert "volunteer" in find_user(store, "resident").roles  # the approve step's actions ran
    assert ids_on(page) == []


def test_bulk_refuses_a_step_that_is_not_bulk_a_role_that_may_not_and_a_stale_page(app, as_user):
    a, b = volunteer(app, "甲"), volunteer(app, "乙")
    staff = as_user("staff")
    bulk_post(staff, [a], transition="reject")  # reject asks for a comment: never in bulk
    assert engine_of(app).store.get(CASES, a)["state"] == "submitted"
    bulk_post(as_user("grid"), [a, b])  # a grid worker does not approve volunteers
    assert {engine_of(app).store.get(CASES, c)["state"] for c in (a, b)} == {"submitted"}
    response = bulk_post(staff, [a, b], versions={a: 99})
    page = staff.get(response.headers["Location"]).get_data(as_text=True)
    assert f"#{a}：页面打开后已被他人修改" in page and "已办理 1 个事项" in page
    assert engine_of(app).store.get(CASES, a)["state"] == "submitted"
    assert engine_of(app).store.get(CASES, b)["state"] == "active"
    assert len(engine_of(app).store.get(CASES, b)["history"]) == 2


def test_bulk_needs_the_csrf_token_and_a_ticked_case(app, as_user):
    a = volunteer(app, "甲")
    staff = as_user("staff")
    response = staff.client.post("/inbox/bulk", data={"case": str(a), "transition": "approve"})
    assert response.status_code == 400
    assert engine_of(app).store.get(CASES, a)["state"] == "submitted"
    response = bulk_post(staff, [])
    assert "请先勾选至少一个事项" in staff.get(response.headers["Location"]).get_data(as_text=True)
    response = bulk_post(staff, [a], next="https://evil.example/")
    assert response.headers["Location"] == "/"  # only back to a page of this site


def test_a_notification_leads_to_its_case_and_is_read_once_followed(app, as_user):
    a = volunteer(app, "甲")
    staff = as_user("staff")
    bulk_post(staff, [a])
    resident = as_user("resident")
    store = engine_of(app).store
    note = next(d for d in store.search(NOTIFICATIONS) if d["to"] == "resident" and d["case"] == a)
    assert note["read"] is False
    page = resident.get("/notifications").get_data(as_text=True)
    assert f'href="/notifications/{note["id"]}"' in page and 'class="badge"' in page
    response = resident.get(f"/notifications/{note['id']}")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/cases/{a}")
    assert store.get(NOTIFICATIONS, note["id"])["read"] is True  # read by following it, before the case opens
    assert resident.get(response.headers["Location"]).status_code == 200
    assert engine_of(app).read.unread_count("resident") == 0  # the case page reads the case's other ones
    assert staff.get(f"/notifications/{note['id']}").status_code == 404  # someone else's notification
    assert resident.get("/notifications/999999").status_code == 404


def test_a_notification_about_a_case_out_of_reach_is_read_and_says_so(app, as_user, clock):
    """Someone told about a case they can no longer open (another community's case, here written the way
    engine.notify writes it) gets a sentence, not an error page, and the notification stops counting."""
    from engine.notify import notify

    a = volunteer(app, "甲")
    engine = engine_of(app)
    with engine.store.transaction() as tx:
        notify(tx, ["staff2"], "assigned", engine.get(a), {"zh": "分配给您", "en": "Assigned"}, clock())
    note = next(d for d in engine.store.search(NOTIFICATIONS) if d["to"] == "staff2")
    other = as_user("staff2")
    response = other.get(f"/notifications/{note['id']}")
    assert response.status_code == 302 and response.headers["Location"].endswith("/notifications")
    assert f"事项 #{a} 您已无权查看" in other.get("/notifications").get_data(as_text=True)
    assert engine.store.get(NOTIFICATIONS, note["id"])["read"] is True


def test_shipped_bulk_steps_are_the_plain_approvals(app):
    """``bulk: true`` is on the approvals that ask nothing per case, and nowhere the loader would refuse it."""
    workflows = engine_of(app).definitions.workflows
    bulk = sorted((wf.id, t.id) for wf in workflows.values() for s in wf.states.values() for t in s.transitions if t.bulk)
    assert bulk == [("party_member_reporting", "confirm"), ("volunteer_registration", "approve")]
