"""The definition editor in a real Chromium: an admin types a mistake and sees its line marked (CodeMirror's lint
gutter, from the server's lint), fixes it, saves a new version, and a resident's next case runs on it; the page
passes axe and fits a phone; without JavaScript it is a textarea form whose Check button gives the same lines."""
from __future__ import annotations

import shutil
from typing import Any, Iterator

import pytest

from engine.cases import CASES
from tests.browser.axe import violations
from tests.browser.conftest import Server, login, logout, make_app, serve
from tests.test_editor import WORKFLOW
from tests.test_versions import FORM_V1, write

MISTAKE_AT = "to: done, label: {zh: 书记批准"


@pytest.fixture(scope="module")
def editor_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("editor")
    root = write(tmp / "defs", WORKFLOW, FORM_V1)
    yield from serve(make_app(tmp / "instance", root))
    shutil.rmtree(tmp, ignore_errors=True)


def fits(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


def put_cursor(page: Any, before: str, offset: int) -> None:
    """The cursor ``offset`` characters into the first ``before`` of the text, as a click there would."""
    page.evaluate("""([before, offset]) => {
        const view = window.civicflowEditor;
        const at = view.state.doc.toString().indexOf(before) + offset;
        view.dispatch({selection: {anchor: at}, scrollIntoView: true});
        view.focus();
    }""", [before, offset])


def marked_lines(page: Any) -> list[str]:
    """The text of every editor line holding a problem mark."""
    return page.eval_on_selector_all(".cm-line", "lines => lines.filter(l => l.querySelector('.cm-lintRange-error'))"
                                                 ".map(l => l.textContent)")


def test_type_a_mistake_see_it_marked_fix_it_save_and_start_a_case_on_it(phone: Any, editor_server: Server):
    page = phone
    login(page, editor_server, "admin")
    page.goto(editor_server.url + "/admin/definitions")
    page.click("a[href='/admin/definitions/workflow/permit']")
    page.wait_for_selector("#definition-editor .cm-content")
    assert page.locator("#definition-text").is_hidden()
    page.click("#definition-editor .cm-content")
    page.keyboard.press("Escape")                          # Tab indents in the editor; Esc, Tab leaves it
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "definition-save"
    assert not violations(page)
    assert fits(page)

    put_cursor(page, MISTAKE_AT, len("to: d"))
    page.keyboard.press("Delete")                          # "done" -> "dne": a state that does not exist
    page.wait_for_selector(".cm-lint-marker-error")        # the gutter mark, from the server's lint
    assert [line.strip() for line in marked_lines(page)] == [
        "- {id: approve, to: dne, label: {zh: 书记批准, en: Secretary approves}, roles: [community_secretary]}"]
    problems = page.locator("#definition-problems").inner_text()
    assert "1 个问题" in problems and "第 16 行，第 27 列" in problems and "unknown state 'dne'" in problems
    assert not violations(page)
    assert fits(page)

    page.keyboard.type("o")                                # fixed
    page.wait_for_selector(".cm-lint-marker-error", state="detached")
    page.wait_for_selector("#definition-problems .ok")
    page.wait_for_selector("#definition-preview svg")      # a clean text previews its diagram by itself
    put_cursor(page, "version: 1", len("version: 1"))
    page.keyboard.press("Backspace")
    page.keyboard.type("2")
    put_cursor(page, "书记批准", len("书记"))
    page.keyboard.press("Delete")
    page.keyboard.press("Delete")
    page.keyboard.type("审定")
    page.locator("#definition-preview").filter(has_text="书记审定").locator("svg").wait_for()
    page.click("#definition-save")
    page.wait_for_url("**/admin/definitions/workflow/permit?saved=*")
    assert "已保存为第 2 版" in page.locator(".flash").inner_text()
    assert "version: 2" in page.locator("table.diff tr.added").all_inner_texts()[0]
    assert not violations(page)
    assert fits(page)

    page.click("a[href='/admin/definitions/workflow/permit/history']")
    page.wait_for_selector("#versions")
    assert not violations(page)
    assert fits(page)
    page.click("#versions a.btn")                          # compare the earlier version with the current one
    page.wait_for_selector("table.diff")
    assert "第 1 版 → 第 2 版" in page.locator("main h2").inner_text()
    assert not violations(page)
    assert fits(page)
    page.goto(editor_server.url + "/admin/definitions")
    assert not violations(page)
    assert fits(page)

    logout(page)
    login(page, editor_server, "resident")
    page.goto(editor_server.url + "/start/permit")
    page.fill("#subject", "在小区广场搭建临时棚")
    page.click("main form button.primary")
    page.wait_for_url("**/cases/*")
    case_id = int(page.url.rstrip("/").split("/")[-1])
    assert editor_server.engine.store.get(CASES, case_id)["workflow_version"] == 2


def test_without_javascript_the_check_button_lists_the_lines(chromium: Any, editor_server: Server):
    context = chromium.new_context(viewport={"width": 390, "height": 800}, locale="zh-CN", java_script_enabled=False)
    page = context.new_page()
    try:
        login(page, editor_server, "admin")
        page.goto(editor_server.url + "/admin/definitions/form/permit_request")
        text = page.input_value("#definition-text")
        page.fill("#definition-text", text.replace("type: text", "type: txt", 1))
        page.click("button[value=check]")
        page.wait_for_selector("#problem-list")
        assert "第 5 行" in page.locator("#problem-list").inner_text()
        assert "type: txt" in page.input_value("#definition-text")  # what was typed is kept
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_an_old_spelling_is_marked_as_a_warning_that_does_not_block(phone: Any, editor_server: Server):
    """``guard:`` still loads (it is ``when:`` now): the gutter marks it as a warning, not a problem, and the text
    still checks clean (a save is not refused)."""
    page = phone
    login(page, editor_server, "admin")
    page.goto(editor_server.url + "/admin/definitions/workflow/permit")
    page.wait_for_selector("#definition-editor .cm-content")
    put_cursor(page, "roles: [community_secretary]}", len("roles: [community_secretary]"))
    page.keyboard.type(", guard: subject")
    page.wait_for_selector(".cm-lint-marker-warning")      # the gutter mark, from the server's lint warnings
    page.wait_for_selector("#definition-problems .ok")
    assert page.locator(".cm-lint-marker-error").count() == 0
    listed = page.locator("#problem-warnings").inner_text()
    assert "旧写法" in page.locator("#definition-problems").inner_text()
    assert "states.review.transitions[0].guard" in listed and "(write when: subject)" in listed
    assert not violations(page)
    assert fits(page)
