"""The purchase request of tests/data/valid/runtime in a real Chromium: repeat rows added and removed live,
a show_if field, typing that live updates never disturb, and a photo previewed, checked and uploaded."""
from __future__ import annotations

import struct
import zlib
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, login, mark_page, same_page


def png(width: int = 24, height: int = 16, padding: int = 0) -> bytes:
    """A real PNG (the browser decodes it), optionally padded past a size limit."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xb4\x23\x2a" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"") + b"\x00" * padding)


def values(page: Any, *ids: str) -> list[str]:
    return [page.input_value("#" + i) for i in ids]


def test_repeat_rows_are_added_and_removed_without_a_reload(page: Any, runtime_server: Server):
    login(page, runtime_server, "resident")
    page.goto(runtime_server.url + "/start/purchase")
    mark_page(page)
    page.fill("#subject", "活动室椅子")
    page.fill("#items-0-item", "椅子")
    page.fill("#items-0-qty", "4")
    page.fill("#items-0-price", "20")
    page.click("button[name=_add_row]")
    expect(page.locator("#row-items-1")).to_be_visible()
    expect(page.locator("#items-1-item")).to_be_focused()  # the new row is where the typing goes on
    page.keyboard.type("桌子")
    page.fill("#items-1-qty", "1")
    page.fill("#items-1-price", "50")
    page.click("button[name=_add_row]")
    # a change while the new row is on its way (250 ms): its update must not cancel the row, and is not lost
    page.select_option("#unit", "renjia")
    expect(page.locator("#row-items-2")).to_be_visible()
    page.wait_for_timeout(600)
    expect(page.locator("#row-items-2")).to_be_visible()
    assert page.input_value("#unit") == "renjia"
    expect(page.locator("button[name=_add_row]")).to_have_count(0)  # max_rows: 3
    page.fill("#items-2-item", "柜子")
    page.click("#row-items-0 button[name=_remove_row]")
    expect(page.locator("#row-items-2")).to_have_count(0)
    assert values(page, "items-0-item", "items-0-qty", "items-1-item") == ["桌子", "1", "柜子"]
    expect(page.locator("button[name=_add_row]")).to_be_visible()
    page.click("#row-items-1 button[name=_remove_row]")
    expect(page.locator("#row-items-1")).to_have_count(0)
    expect(page.locator("button[name=_remove_row]")).to_have_count(0)  # min_rows: 1
    page.wait_for_timeout(500)  # no live update brings a removed row back
    expect(page.locator(".row")).to_have_count(1)
    assert values(page, "subject", "items-0-item") == ["活动室椅子", "桌子"]
    assert same_page(page)


def test_show_if_follows_the_checkbox_and_typing_is_never_disturbed(page: Any, runtime_server: Server):
    login(page, runtime_server, "resident")
    page.goto(runtime_server.url + "/start/purchase")
    mark_page(page)
    expect(page.locator("#reason")).to_have_count(0)
    page.check("#urgent")
    expect(page.locator("#reason")).to_be_visible()
    # pauses just long enough for a live update to start, typing on while its answer comes back:
    # the answer holds what was typed before the pause, and must not take back what came after
    chunks = ["下周一", "社区活动", "要用，", "需要尽快", "购买"]
    for chunk in chunks:
        page.locator("#reason").press_sequentially(chunk, delay=15)
        page.wait_for_timeout(405)
    text = "".join(chunks)
    page.wait_for_timeout(300)
    assert page.input_value("#reason") == text
    expect(page.locator("#reason")).to_be_focused()
    assert page.evaluate("document.activeElement.selectionStart") == len(text)
    page.uncheck("#urgent")
    expect(page.locator("#reason")).to_have_count(0)
    assert same_page(page)


def test_a_photo_is_previewed_checked_early_and_shown_after_upload(page: Any, runtime_server: Server):
    login(page, runtime_server, "resident")
    page.goto(runtime_server.url + "/start/purchase")
    page.set_input_files("#receipt", {"name": "big.png", "mimeType": "image/png", "buffer": png(padding=200_000)})
    expect(page.locator("#receipt-client-error")).to_have_text("文件太大（最大 100KB）")  # before any upload
    assert page.get_attribute("#receipt", "aria-describedby") == "receipt-client-error"
    assert page.evaluate("document.getElementById('receipt').files.length") == 0  # not sent with the form
    page.set_input_files("#receipt", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"})
    expect(page.locator("#receipt-client-error")).to_contain_text("不支持的文件类型")
    page.set_input_files("#receipt", {"name": "票据.png", "mimeType": "image/png", "buffer": png()})
    expect(page.locator("#receipt-client-error")).to_have_count(0)
    preview = page.locator("#receipt-preview img")
    expect(preview).to_be_visible()
    assert preview.get_attribute("src").startswith("blob:")
    assert preview.evaluate("img => img.complete && img.naturalWidth") == 24
    # a live update re-renders the fields: the chosen file and its preview stay
    page.fill("#subject", "活动室椅子")
    page.fill("#items-0-item", "椅子")
    page.fill("#items-0-qty", "4")
    page.fill("#items-0-price", "20")
    page.fill("#amount", "80")
    page.select_option("#unit", "renjia")
    page.wait_for_timeout(600)
    expect(page.locator("#receipt-preview img")).to_be_visible()
    assert page.evaluate("document.getElementById('receipt').files.length") == 1
    page.press("#subject", "Enter")  # Enter submits the form (and does not add a row)
    page.wait_for_url("**/cases/*")
    photo = page.locator("dl.data img.photo")
    expect(photo).to_be_visible()
    assert photo.get_attribute("src").startswith("/files/")
    assert photo.evaluate("img => img.complete && img.naturalWidth") == 24  # served and decoded
    expect(page.locator("dl.data")).to_contain_text("票据.png")


def test_rows_are_added_and_removed_with_the_keyboard(page: Any, runtime_server: Server):
    login(page, runtime_server, "resident")
    page.goto(runtime_server.url + "/start/purchase")
    page.focus("#items-0-price")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "_add_row"
    page.keyboard.press("Enter")
    expect(page.locator("#items-1-item")).to_be_focused()
    page.keyboard.type("桌子")
    page.keyboard.press("Shift+Tab")  # back to the first row's remove button
    assert page.evaluate("document.activeElement.value") == "items-0"
    page.keyboard.press("Space")
    expect(page.locator(".row")).to_have_count(1)
    assert page.input_value("#items-0-item") == "桌子"
    expect(page.locator("#items-0-item")).to_be_focused()  # focus stays in the row that took its place


def test_without_javascript_the_same_buttons_post_the_whole_form(chromium: Any, runtime_server: Server):
    context = chromium.new_context(java_script_enabled=False, locale="zh-CN")
    try:
        page = context.new_page()
        login(page, runtime_server, "resident")
        page.goto(runtime_server.url + "/start/purchase")
        page.fill("#subject", "活动室椅子")
        page.fill("#items-0-item", "椅子")
        page.click("button[name=_add_row]")                  # a full post back, the page comes again
        expect(page.locator("#row-items-1")).to_be_visible()
        assert page.input_value("#subject") == "活动室椅子" and page.input_value("#items-0-item") == "椅子"
        page.check("#urgent")
        expect(page.locator("#reason")).to_have_count(0)
        page.click("button[name=_refresh]")                  # visible without JavaScript
        expect(page.locator("#reason")).to_be_visible()
        expect(page.locator("#receipt-preview")).to_be_hidden()  # no preview without script, the upload still works
    finally:
        context.close()
