"""Live forms: the fields fragment htmx asks for on every change, rendered by the same rules as the full page."""
from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from engine.cases import CASES
from tests.conftest import PNG, PURCHASE, Browser

HX = {"HX-Request": "true"}
BASE = PURCHASE


@pytest.fixture
def buyer(purchase_app: Any) -> Browser:
    return Browser(purchase_app).login("resident")


def live(b: Browser, url: str, data: dict[str, Any], trigger: str | None = None, page: str | None = None) -> Any:
    headers = dict(HX, **({"HX-Trigger-Name": trigger} if trigger else {}))
    return b.post(url, data, page=page or url.rsplit("/fields", 1)[0], headers=headers)


def test_the_form_page_is_wired_for_live_updates(buyer: Browser):
    page = buyer.get("/start/purchase").get_data(as_text=True)
    form = re.search(r'<form [^>]*enctype="multipart/form-data"[^>]*>', page).group(0)
    assert 'hx-post="/start/purchase/fields"' in form and 'hx-target="#fields"' in form
    assert 'hx-swap="morph:innerHTML"' in form and 'hx-params="not receipt"' in form  # files are not re-sent
    assert '<div id="fields">' in page
    assert 'hx-post="/start/purchase/fields"' in re.search(r'<button[^>]*name="_add_row"[^>]*>', page).group(0)


def test_live_update_needs_the_csrf_token(buyer: Browser):
    response = buyer.client.post("/start/purchase/fields", data=BASE, headers=HX)
    assert response.status_code == 400
    assert live(buyer, "/start/purchase/fields", BASE).status_code == 200


def test_live_update_after_the_session_ended_is_refused_not_redirected(purchase_app: Any):
    response = Browser(purchase_app).post("/start/purchase/fields", BASE, page="/login", headers=HX)
    assert response.status_code == 401  # htmx does not swap an error: the login page never lands in the form


def test_fragment_shows_a_show_if_field_only_while_it_applies(buyer: Browser):
    fragment = live(buyer, "/start/purchase/fields", BASE).get_data(as_text=True)
    assert "<html" not in fragment and 'name="subject"' in fragment and 'value="活动室椅子"' in fragment
    assert 'name="reason"' not in fragment
    fragment = live(buyer, "/start/purchase/fields", {**BASE, "urgent": "1"}).get_data(as_text=True)
    assert 'name="reason"' in fragment
    assert "此项为必填项" not in fragment  # nothing is reported before the person submits


def test_fragment_computes_like_the_server_validates(as_user: Any):
    applicant = as_user("resident")
    data = {"name": "王芳", "id_number": "11010519491231002X", "political_status": "party_member"}
    fragment = live(applicant, "/start/volunteer_registration/fields", data).get_data(as_text=True)
    assert re.search(r'<output id="age_years" class="computed">76</output>', fragment)
    assert 'name="party_org"' in fragment  # show_if: political_status == 'party_member'
    fragment = live(applicant, "/start/volunteer_registration/fields",
                    {**data, "id_number": "1101", "political_status": "masses"}).get_data(as_text=True)
    assert re.search(r'<output id="age_years" class="computed"></output>', fragment)  # no birth date in it: no age
    assert 'name="party_org"' not in fragment


def test_rows_are_added_and_removed_within_min_and_max(buyer: Browser):
    url = "/start/purchase/fields"
    fragment = live(buyer, url, {**BASE, "_add_row": "items"}, trigger="_add_row").get_data(as_text=True)
    assert 'id="row-items-1"' in fragment and 'value="椅子"' in fragment
    for button in re.findall(r'<button[^>]*name="_(?:add|remove)_row"[^>]*>', fragment):
        assert f'hx-post="{url}"' in button  # the buttons of the new fields stay live
    two = {**BASE, "items-1-item": "桌子", "items-1-qty": "1", "items-1-price": "50"}
    fragment = live(buyer, url, {**two, "_add_row": "items"}, trigger="_add_row").get_data(as_text=True)
    assert 'id="row-items-2"' in fragment and 'name="_add_row"' not in fragment  # max_rows 3 reached
    fragment = live(buyer, url, {**two, "_remove_row": "items-0"}, trigger="_remove_row").get_data(as_text=True)
    assert 'value="桌子"' in fragment and 'value="椅子"' not in fragment and 'id="row-items-1"' not in fragment
    assert 'name="_remove_row"' not in fragment  # min_rows 1: the last row cannot go


def test_a_row_button_counts_only_when_it_sent_the_request(buyer: Browser):
    # htmx keeps sending the last button clicked with the form's later change events
    fragment = live(buyer, "/start/purchase/fields", {**BASE, "_add_row": "items"}).get_data(as_text=True)
    assert 'id="row-items-1"' not in fragment
    # without JavaScript the same button still works on the full page
    page = buyer.post("/start/purchase", {**BASE, "_add_row": "items"}).get_data(as_text=True)
    assert 'id="row-items-1"' in page


def test_errors_shown_stay_until_fixed_and_no_new_ones_appear(buyer: Browser):
    response = buyer.post("/start/purchase", {**BASE, "subject": "", "amount": "-1"})
    assert response.status_code == 422
    shown = re.search(r"name=\"_errors\" value='([^']*)'", response.get_data(as_text=True)).group(1)
    assert set(json.loads(shown.replace("&#34;", '"'))) == {"subject", "amount"}
    data = {**BASE, "subject": "", "amount": "5", "items-0-qty": "0", "_errors": json.dumps(json.loads(
        shown.replace("&#34;", '"')))}
    fragment = live(buyer, "/start/purchase/fields", data).get_data(as_text=True)
    assert 'id="subject-error">此项为必填项<' in fragment           # still wrong: still shown
    assert 'id="amount-error"' not in fragment                      # fixed: gone
    assert 'id="items.0.qty-error"' not in fragment                 # new problem: waits for the submit


def test_a_kept_upload_survives_live_updates(buyer: Browser, purchase_app: Any):
    page = buyer.post("/start/purchase", {**BASE, "subject": "", "receipt": (io.BytesIO(PNG), "票据.png")},
                      content_type="multipart/form-data").get_data(as_text=True)
    key = re.search(r'name="receipt__keep" value="([^"]+)"', page).group(1)
    fragment = live(buyer, "/start/purchase/fields", {**BASE, "receipt__keep": key}).get_data(as_text=True)
    assert f'name="receipt__keep" value="{key}"' in fragment and "票据.png" in fragment
    # someone else's upload key is not honoured
    other = Browser(purchase_app).login("resident2")
    fragment = live(other, "/start/purchase/fields", {**BASE, "receipt__keep": key}).get_data(as_text=True)
    assert key not in fragment


def test_file_fields_carry_their_limits_for_the_early_check_in_the_browser(buyer: Browser):
    page = buyer.get("/start/purchase").get_data(as_text=True)
    tag = re.search(r'<input id="receipt"[^>]*>', page, re.S).group(0)
    assert 'data-max-size="102400"' in tag and 'data-msg-size="文件太大（最大 100KB）"' in tag
    assert 'data-msg-type="不支持的文件类型' in tag and 'accept="image/jpeg,image/png,image/webp"' in tag
    assert 'id="receipt-preview"' in page


def test_step_form_is_live_for_those_who_may_take_the_step(buyer: Browser, purchase_app: Any):
    response = buyer.post("/start/purchase", BASE)
    cid = int(re.search(r"/cases/(\d+)", response.headers["Location"]).group(1))
    staff = Browser(purchase_app).login("staff")
    page = staff.get(f"/cases/{cid}/do/approve").get_data(as_text=True)
    assert f'hx-post="/cases/{cid}/do/approve/fields"' in page
    fragment = live(staff, f"/cases/{cid}/do/approve/fields", {"score": "88"}, page=f"/cases/{cid}/do/approve")
    assert fragment.status_code == 200 and 'value="88"' in fragment.get_data(as_text=True)
    refused = live(buyer, f"/cases/{cid}/do/approve/fields", {"score": "88"}, page=f"/cases/{cid}")
    assert refused.status_code == 403
    stranger = Browser(purchase_app).login("staff2")
    assert live(stranger, f"/cases/{cid}/do/approve/fields", {}, page="/").status_code == 404
    assert purchase_app.extensions["civicflow"].store.get(CASES, cid)["state"] == "open"  # nothing was fired
