"""The form page as a person uses it: repeat rows, show_if, computed values, uploads, and nothing typed is lost."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

from engine.cases import CASES
from tests.conftest import PNG, PURCHASE, Browser

BASE = PURCHASE


@pytest.fixture
def app(purchase_app: Any) -> Any:
    return purchase_app


@pytest.fixture
def resident(app: Any) -> Browser:
    return Browser(app).login("resident")


def test_add_and_remove_rows_keep_what_was_typed(resident: Browser):
    page = resident.post("/start/purchase", {**BASE, "_add_row": "items"}).get_data(as_text=True)
    assert 'name="items-1-item"' in page and 'value="椅子"' in page and 'value="活动室椅子"' in page
    data = {**BASE, "items-1-item": "桌子", "items-1-qty": "1", "items-1-price": "50", "_add_row": "items"}
    page = resident.post("/start/purchase", data).get_data(as_text=True)
    assert 'name="items-2-item"' in page
    assert "添加一行" not in page  # max_rows 3 reached
    data = {**BASE, "items-1-item": "桌子", "items-1-qty": "1", "items-1-price": "50", "_remove_row": "items-0"}
    page = resident.post("/start/purchase", data).get_data(as_text=True)
    assert 'value="桌子"' in page and 'value="椅子"' not in page and 'name="items-1-item"' not in page


def test_errors_inside_rows_are_shown_under_their_field(resident: Browser, app: Any):
    data = {**BASE, "items-0-qty": "0", "items-1-item": "", "items-1-qty": "2", "items-1-price": "abc"}
    response = resident.post("/start/purchase", data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert re.search(r'id="items-0-qty"[^>]*aria-invalid="true"', page)
    assert 'id="items.0.qty-error">不能小于 1<' in page
    assert 'id="items.1.item-error">此项为必填项<' in page
    assert 'id="items.1.price-error">请输入数字<' in page
    assert 'value="abc"' in page and 'value="活动室椅子"' in page
    assert app.extensions["civicflow"].store.count(CASES) == 0


def test_show_if_field_appears_when_relevant(resident: Browser):
    page = resident.get("/start/purchase").get_data(as_text=True)
    assert 'name="reason"' not in page
    page = resident.post("/start/purchase", {**BASE, "urgent": "1", "_refresh": "1"}).get_data(as_text=True)
    assert 'name="reason"' in page and "此项为必填项" not in page
    response = resident.post("/start/purchase", {**BASE, "urgent": "1"})
    assert response.status_code == 422 and 'id="reason-error"' in response.get_data(as_text=True)


def test_photo_upload_is_kept_across_a_failed_submit_and_served_to_staff(resident: Browser, app: Any):
    data = {**BASE, "subject": "", "receipt": (io.BytesIO(PNG), "票据.png")}
    page = resident.post("/start/purchase", data, content_type="multipart/form-data").get_data(as_text=True)
    key = re.search(r'name="receipt__keep" value="([^"]+)"', page).group(1)
    response = resident.post("/start/purchase", {**BASE, "receipt__keep": key})
    assert response.status_code == 302
    case = app.extensions["civicflow"].store.get(CASES, 1)
    assert case["data"]["receipt"] == {"name": "票据.png", "key": key, "size": len(PNG), "content_type": "image/png"}
    staff = Browser(app).login("staff")
    image = staff.get(f"/files/{key}")
    assert image.status_code == 200 and image.data == PNG and image.mimetype == "image/png"
    assert Browser(app).login("staff2").get(f"/files/{key}").status_code == 404  # another community
    assert Browser(app).get(f"/files/{key}").status_code == 302  # not logged in


def test_upload_type_and_size_are_checked_next_to_the_field(resident: Browser, app: Any):
    fake = {**BASE, "receipt": (io.BytesIO(b"<script>alert(1)</script>"), "x.png")}
    page = resident.post("/start/purchase", fake, content_type="multipart/form-data").get_data(as_text=True)
    assert 'id="receipt-error">不支持的文件类型' in page
    big = {**BASE, "receipt": (io.BytesIO(PNG + b"\x00" * 200_000), "big.png")}
    page = resident.post("/start/purchase", big, content_type="multipart/form-data").get_data(as_text=True)
    assert 'id="receipt-error">文件太大（最大 100KB）' in page
    assert not list(Path(app.config["UPLOADS"]).glob("*")) if Path(app.config["UPLOADS"]).exists() else True


def test_typed_markup_is_shown_as_text(resident: Browser, app: Any):
    payload = '<script>alert("x")</script>'
    response = resident.post("/start/purchase", {**BASE, "subject": payload[:40]})
    cid = re.search(r"/cases/(\d+)", response.headers["Location"]).group(1)
    for url in (f"/cases/{cid}", "/", "/workflows/purchase"):
        page = resident.get(url).get_data(as_text=True)
        assert "<script>alert" not in page and "&lt;script&gt;" in page
