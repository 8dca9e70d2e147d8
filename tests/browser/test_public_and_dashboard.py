"""The shipped demo in a real Chromium: the public disclosure page, the dashboard's charts, certificates
printed on A4, and the governance pages on a 360 px phone."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from ruamel.yaml import YAML

from engine.cases import CASES
from engine.demo import load_demo
from engine.users import USERS, User, hash_password
from engine.web import create_app
from tests.browser.conftest import PHONE, Server, login, serve
from tests.conftest import ROOT

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shipped definitions with the demo people and demo cases, played through the engine."""
    instance = tmp_path_factory.mktemp("demo")
    app = create_app({"SECRET_KEY": "browser-tests", "STORE": str(instance / "civicflow.json"),
                      "UPLOADS": str(instance / "uploads"), "DEFINITIONS": str(ROOT), "TICK_SECONDS": 0})
    engine = app.extensions["civicflow"]
    people = YAML(typ="safe").load((ROOT / "demo" / "users.yaml").read_text(encoding="utf-8"))
    hashed = hash_password(people["password"])
    with engine.store.transaction() as tx:
        for p in people["users"]:
            tx.insert(USERS, User(p["username"], p["name"], tuple(p["roles"]), p["unit"], hashed).to_doc())
    load_demo(engine, ROOT / "demo" / "cases")
    yield from serve(app)


def first(server: Server, workflow: str, state: str) -> dict[str, Any]:
    found = server.engine.store.search(CASES, lambda d: d["workflow"] == workflow and d["state"] == state)
    assert found, f"the demo has no {workflow} case in {state}"
    return found[0]


def fits(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_public_page_shows_notices_and_results_but_no_draft(phone: Any, demo_server: Server, watch: Any):
    notice = first(demo_server, "four_deliberations", "resolution_notice")
    draft = first(demo_server, "meeting_minutes", "draft")
    published = first(demo_server, "meeting_minutes", "published")
    phone.goto(demo_server.url + "/public")  # nobody logged in
    body = phone.locator("main").inner_text()
    assert notice["title"] in body and published["title"] in body
    assert draft["title"] not in body
    assert re.search(r"异议截止 \d{4}-\d{2}-\d{2}.*剩余 \d+ 天", body)
    assert fits(phone)
    phone.click(f"a[href='/public/{notice['id']}']")
    assert "登录后提出异议" in phone.locator("main").inner_text()
    assert fits(phone)
    response = phone.goto(demo_server.url + f"/public/{draft['id']}")
    assert response.status == 404
    watch.errors.remove("console error: Failed to load resource: the server responded with a status of 404 (NOT FOUND)")


def test_dashboard_draws_charts_on_a_phone(phone: Any, demo_server: Server):
    login(phone, demo_server, "secretary")
    phone.goto(demo_server.url + "/dashboard")
    phone.wait_for_selector(".chart[data-drawn] svg")
    charts = phone.locator(".chart[data-drawn] svg").count()
    assert charts >= 8  # one per process that declares figures
    assert "收集微心愿" in phone.locator("main").inner_text() or "微心愿" in phone.locator("main").inner_text()
    assert fits(phone)


def test_governance_pages_fit_a_phone(phone: Any, demo_server: Server):
    login(phone, demo_server, "staff")
    order = first(demo_server, "service_order", "in_progress")
    for url in ("/points/overview", "/workflows/visit_log/targets", "/workflows/talent_pool?age_from=20",
                f"/cases/{order['id']}", "/notifications", "/public"):
        phone.goto(demo_server.url + url)
        assert fits(phone), url
    phone.goto(demo_server.url + "/workflows/talent_pool")
    phone.locator("details.search summary").click()
    assert phone.locator("details.search form").is_visible() and fits(phone)
    login(phone, demo_server, "district")
    phone.goto(demo_server.url + "/workflows/star_rating/ranking")
    assert phone.locator("table.ranking").is_visible() and fits(phone)


def test_certificate_prints_on_one_a4_page(page: Any, demo_server: Server, tmp_path: Path):
    awarded = first(demo_server, "award_selection", "awarded")
    login(page, demo_server, "secretary")
    page.goto(demo_server.url + f"/cases/{awarded['id']}/certificate")
    assert "荣誉证书" in page.locator("article.certificate").inner_text()
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1


def one_a4_page(page: Any) -> bool:
    page.emulate_media(media="print")
    pdf = page.pdf(format="A4", print_background=True)
    return pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1


def test_notice_sheet_and_ranking_table_print_on_a4(page: Any, demo_server: Server):
    notice = first(demo_server, "four_deliberations", "resolution_notice")
    page.goto(demo_server.url + f"/public/{notice['id']}")
    assert one_a4_page(page)
    assert not page.locator("#object-h").is_visible()  # the objection form is not printed
    page.emulate_media(media="screen")
    login(page, demo_server, "district")
    page.goto(demo_server.url + "/workflows/star_rating/ranking")
    assert page.locator("table.ranking").is_visible()
    assert one_a4_page(page)
    assert not page.locator("form.actions button").is_visible()


def test_the_ranking_page_with_one_table_per_title_fits_a_phone_and_passes_axe(phone: Any, demo_server: Server):
    from tests.browser.axe import assert_accessible
    login(phone, demo_server, "district")
    phone.goto(demo_server.url + "/workflows/award_selection/ranking")
    headings = phone.locator("main h2").all_inner_texts()
    assert [h.split("\n")[0].split(" ")[0] for h in headings][:4] == ["最美楼栋红管家", "最美楼栋长", "最美楼道长", "最美志愿者"]
    assert phone.locator("table.ranking").first.is_visible()  # the closed round's places, per title
    assert phone.locator("#reopen-reason").is_visible()  # the demo round is closed: it may be reopened, with a reason
    assert fits(phone)
    assert_accessible(phone, "the award ranking page on a phone")
