"""What pages keep between requests to be cheaper (issue 9) changes nothing people see or the checks made:
rendered pieces (engine.web.fragments) follow the case's version, the language and a definitions reload; the
CSRF token is signed once per session (engine.web.tokens) and still checked against the session; an unchanged
session cookie is sent again only once it is a minute old (engine.web.sessions), a changed one at once."""
from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any

from engine.cases import CASES
from engine.loader import load_definitions
from engine.runtime import Engine
from engine.users import find_user
from engine.web import reload, sessions

from tests.conftest import PASSWORD, ROOT
from tests.test_web_inbox import VOLUNTEER, engine_of, ids_on, volunteer


def card_of(page: str, case_id: int) -> str:
    found = re.search(rf'<li class="card[^"]*">(?:(?!</li>).)*?href="/cases/{case_id}">.*?</li>', page, re.S)
    assert found, f"no card for #{case_id}"
    return found.group(0)


def test_a_kept_card_shows_the_case_as_it_is_now(app, as_user):
    a = volunteer(app, "甲申")
    staff = as_user("staff")
    first = staff.get("/").get_data(as_text=True)
    assert "甲申" in card_of(first, a) and "待审核" in card_of(first, a)
    assert staff.get("/").get_data(as_text=True) == first  # the kept pieces give the same page
    engine = engine_of(app)
    engine.fire(a, "return_for_changes", find_user(engine.store, "staff"), comment="请补充住址")
    assert a not in ids_on(staff.get("/").get_data(as_text=True))
    engine.fire(a, "resubmit", find_user(engine.store, "resident"), {**VOLUNTEER, "name": "乙酉"})
    page = staff.get("/").get_data(as_text=True)
    assert "乙酉" in card_of(page, a) and "甲申" not in page  # a new version: the card is rendered anew
    staff.post("/lang/en", {"next": "/"}, page="/")
    page = staff.get("/").get_data(as_text=True)
    assert "Awaiting review" in card_of(page, a) and "待审核" not in card_of(page, a)
    assert "Inbox" in page and "收件箱" not in page  # the top bar in the new language too


def test_a_definitions_reload_renders_the_kept_pieces_anew(app, as_user, tmp_path: Path):
    a = volunteer(app, "丙戌")
    staff = as_user("staff")
    assert "待审核" in card_of(staff.get("/").get_data(as_text=True), a)
    copy = tmp_path / "defs"
    for folder in ("workflows", "forms", "org"):
        shutil.copytree(ROOT / folder, copy / folder)
    path = copy / "workflows" / "volunteer_registration.yaml"
    text = path.read_text(encoding="utf-8")
    assert "title: {zh: 待审核, en: Awaiting review}" in text
    path.write_text(text.replace("title: {zh: 待审核, en: Awaiting review}", "title: {zh: 等待社区审核, en: Awaiting review}"),
                    encoding="utf-8")
    old = engine_of(app)
    reload.install(app, Engine(load_definitions(copy, old.actions, fresh=True), old.store, old.actions, clock=old.clock))
    page = staff.get("/").get_data(as_text=True)
    assert "等待社区审核" in card_of(page, a)  # same case version, new definitions: not the kept card


def test_the_csrf_token_is_signed_once_per_session_and_still_checked(app, as_user):
    staff, other = as_user("staff"), as_user("staff")
    token = staff.token("/")
    assert staff.token("/dashboard") == token and staff.token("/workflows") == token
    assert other.token("/") != token  # another session, another token
    refused = staff.client.post("/lang/en", data={"csrf_token": other.token("/"), "next": "/"})
    assert refused.status_code == 400  # a token of another session does not pass
    assert staff.client.post("/lang/en", data={"next": "/"}).status_code == 400
    assert staff.client.post("/lang/en", data={"csrf_token": token, "next": "/"}).status_code == 302
    app.config["WTF_CSRF_TIME_LIMIT"] = 3600  # tokens that expire: signed on every page, checked as before
    fresh = staff.token("/")
    assert staff.client.post("/lang/zh", data={"csrf_token": fresh, "next": "/"}).status_code == 302


def test_an_unchanged_session_cookie_is_sent_again_only_after_a_minute(app, as_user, monkeypatch):
    staff = as_user("staff")
    staff.get("/")  # the first page after login makes the session's CSRF token: a changed session
    response = staff.get("/dashboard")
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    monkeypatch.setattr(sessions, "REFRESH_AFTER", dt.timedelta(0))
    response = staff.get("/dashboard")
    cookie = response.headers["Set-Cookie"]  # moves the 8 hours along, with the same attributes as at login
    assert cookie.startswith("session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    monkeypatch.setattr(sessions, "REFRESH_AFTER", dt.timedelta(seconds=60))
    assert "Set-Cookie" not in staff.get("/dashboard").headers
    response = staff.post("/lang/en", {"next": "/"}, page="/")
    assert "Set-Cookie" in response.headers  # a changed session is sent at once
    assert "Inbox" in staff.get("/").get_data(as_text=True)


def test_a_session_cookie_past_its_lifetime_opens_no_session(app, as_user, monkeypatch):
    staff = as_user("staff")
    assert staff.get("/").status_code == 200  # the cookie checked once, and kept as checked
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=8, minutes=1)
    monkeypatch.setattr(sessions, "_now", lambda: later)  # the kept check of the cookie
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later.timestamp())  # itsdangerous' own check
    assert staff.get("/").status_code == 302  # to the login page: the cookie is past its 8 hours


def test_an_export_row_follows_its_case(app, as_user):
    a = volunteer(app, "丁亥", id_number=VOLUNTEER["id_number"])
    staff = as_user("staff")
    first = staff.get("/workflows/volunteer_registration/export.csv").get_data(as_text=True)
    assert "丁亥" in first and "11010519491231002X" in first  # staff see the ID number
    assert staff.get("/workflows/volunteer_registration/export.csv").get_data(as_text=True) == first
    engine = engine_of(app)
    engine.fire(a, "return_for_changes", find_user(engine.store, "staff"), comment="请补充住址")
    engine.fire(a, "resubmit", find_user(engine.store, "resident"), {**VOLUNTEER, "name": "戊子"})
    again = staff.get("/workflows/volunteer_registration/export.csv").get_data(as_text=True)
    assert "戊子" in again and "丁亥" not in again  # a new version: the row made anew
    with engine.store.transaction() as tx:  # as tests/test_web_export.py: the grid worker sees the case, not its data
        doc = tx.get(CASES, a)
        doc["escalated_to"] = ["grid"]
        tx.replace(CASES, a, doc)
    masked = as_user("grid").get("/workflows/volunteer_registration/export.csv").get_data(as_text=True)
    assert "戊子" in masked and "1101**********002X" in masked and "11010519491231002X" not in masked


def test_a_kept_login_page_carries_each_sessions_own_token(app):
    first, second = app.test_client(), app.test_client()
    pages = [c.get("/login").get_data(as_text=True) for c in (first, second)]
    tokens = [re.findall(r'name="csrf_token" value="([^"]+)"', page) for page in pages]
    assert all(len(set(found)) == 1 and len(found) == 2 for found in tokens)  # the language form and the login form
    assert tokens[0][0] != tokens[1][0]
    assert pages[0].replace(tokens[0][0], "") == pages[1].replace(tokens[1][0], "")  # otherwise the same page
    login = {"username": "staff", "password": PASSWORD, "next": ""}
    assert first.post("/login", data={**login, "csrf_token": tokens[1][0]}).status_code == 400  # not its session's
    assert first.post("/login", data={**login, "csrf_token": tokens[0][0]}).status_code == 302
