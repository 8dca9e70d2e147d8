"""The definition editor through its pages: the lint endpoint gives `civicflow lint`'s problems at their lines, a
broken or unbumped save is refused with the text kept, a save is a new version that cases started afterwards use
while older ones keep theirs (in this process and in another one on the same store), the file is written as
typed, every save and rollback is audited, and nobody but an admin of the root unit gets in.

Each test edits a copy of a small permit workflow (tests/test_versions.py's) with the shipped org tree.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.cases import CASES
from engine.definition_edit import SAVES, diff_rows, digest
from engine.loader import lint as lint_definitions
from engine.loader import load_draft
from engine.readmodel import AUDIT
from engine.versions import generation
from engine.web import create_app
from tests.conftest import DEMO_USERS, ROOT, STORES, Browser, add_users, started, store_location
from tests.test_versions import FORM_V1, write

WORKFLOW = """\
# The permit process (a comment the editor must keep).
id: permit
version: 1
title: {zh: 许可, en: Permit}
start: {form: permit_request, roles: [resident], title: subject}
roles: [resident, community_staff, community_secretary]
initial: submitted
states:
  submitted:
    title: {zh: 已提交, en: Submitted}
    transitions:
      - {id: send, to: review, label: {zh: 送审, en: Send to review}, roles: [community_staff]}
  review:        # aligned comment
    title: {zh: 审核中, en: In review}
    transitions:
      - {id: approve, to: done, label: {zh: 书记批准, en: Secretary approves}, roles: [community_secretary]}
  done:
    title: {zh: 完成, en: Done}
    final: true
"""
EDIT = "/admin/definitions/workflow/permit"
FORM_EDIT = "/admin/definitions/form/permit_request"
COMMUNITY_ADMIN = ("admin_rj", "社区管理员", ["admin"], "renjia")

# Version 2: staff approve at once (no review state), the version bumped; comments and spacing as typed.
V2 = (WORKFLOW.replace("version: 1", "version: 2  # staff decide at once")
      .replace("      - {id: send, to: review, label: {zh: 送审, en: Send to review}, roles: [community_staff]}\n",
               "      - {id: decide, to: done, label: {zh: 直接办结, en: Decide},   roles: [community_staff]}\n")
      .replace("""  review:        # aligned comment
    title: {zh: 审核中, en: In review}
    transitions:
      - {id: approve, to: done, label: {zh: 书记批准, en: Secretary approves}, roles: [community_secretary]}
""", ""))


def make_app(root: Path, store: str, **config: Any) -> Any:
    app = create_app({"TESTING": True, "SECRET_KEY": "test-editor", "STORE": store, "DEFINITIONS": str(root),
                      "UPLOADS": str(root.parent / "uploads"), "DEFINITIONS_CHECK_SECONDS": 0, **config},
                     start_timers=False)
    return app


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(tmp_path / "defs", WORKFLOW, FORM_V1)


@pytest.fixture(params=STORES)
def app(request: pytest.FixtureRequest, root: Path, tmp_path: Path) -> Any:
    app = make_app(root, store_location(request.param, request, tmp_path, "cf.json"))
    add_users(app.extensions["civicflow"].store, [*DEMO_USERS, COMMUNITY_ADMIN])
    yield app
    app.extensions["civicflow"].store.close()


@pytest.fixture
def admin(app: Any) -> Browser:
    return Browser(app).login("admin")


def engine(app: Any) -> Any:
    return app.extensions["civicflow"]


def lint(b: Browser, text: str, url: str = EDIT) -> Any:
    token = b.token(url)
    response = b.client.post(url + "/lint", data={"text": text}, headers={"X-CSRFToken": token})
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_json()


def save(b: Browser, text: str, url: str = EDIT, **more: str) -> Any:
    return b.post(url, {"text": text, "action": "save", **more}, page=url)


def start_case(app: Any) -> int:
    return started(Browser(app).login("resident").post("/start/permit", {"subject": "搭建临时棚", "phone_no": ""},
                                                        page="/start/permit"))


def audit(app: Any) -> list[dict[str, Any]]:
    return [d for d in engine(app).store.search(AUDIT) if d.get("action", "").endswith("_definition")]


# ------------------------------------------------------------------------------------------- lint endpoint

def test_the_lint_endpoint_gives_each_problem_at_its_line_and_column(admin: Browser):
    broken = WORKFLOW.replace("to: done, label: {zh: 书记批准", "to: dne, label: {zh: 书记批准")
    found = lint(admin, broken)
    assert not found["ok"]
    assert [(p["line"], p["col"], p["path"]) for p in found["here"]] == [
        (16, 27, "states.review.transitions[0].to")]
    assert "unknown state 'dne'" in found["here"][0]["message"] and found["here"][0]["hint"] == "did you mean 'done'?"
    assert lint(admin, WORKFLOW) == {"file": "workflows/permit.yaml", "here": [], "elsewhere": [], "known": [],
                                     "warnings": [], "ok": True}


def test_the_lint_endpoint_gives_an_old_spelling_as_a_warning_that_does_not_refuse(admin: Browser):
    old = WORKFLOW.replace("roles: [community_secretary]}", "roles: [community_secretary], guard: subject}")
    found = lint(admin, old)
    assert found["ok"] and found["here"] == []
    assert [(p["line"], p["col"], p["path"], p["hint"]) for p in found["warnings"]] == [
        (16, 106, "states.review.transitions[0].guard", "write when: subject")]
    assert found["warnings"][0]["message"] == "'guard' is the old spelling of 'when'"
    assert ": warning: " in found["warnings"][0]["text"]


def test_without_javascript_the_check_button_lists_old_spellings_and_saving_them_works(app: Any, admin: Browser):
    old = WORKFLOW.replace("roles: [community_secretary]}", "roles: [community_secretary], guard: subject}")
    page = admin.post(EDIT, {"text": old, "action": "check"}, page=EDIT).get_data(as_text=True)
    assert 'id="problem-warnings"' in page and "旧写法" in page and "(write when: subject)" in page
    assert "没有问题" in page
    response = save(admin, old)  # an old spelling loads: it does not refuse the save
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]


def test_a_yaml_syntax_error_is_placed_too(admin: Browser):
    found = lint(admin, WORKFLOW.replace("initial: submitted", "initial: [submitted"))
    assert not found["ok"] and found["here"][0]["line"] in (7, 8, 9)


def test_the_lint_endpoint_gives_what_civicflow_lint_gives(admin: Browser, root: Path, tmp_path: Path):
    """The same problems, word for word, as linting a directory in which the file holds the draft."""
    broken = (WORKFLOW.replace("roles: [community_staff]}", "roles: [comunity_staff]}")
              .replace("initial: submitted", "initial: submited"))
    copy = write(tmp_path / "copy", broken, FORM_V1)
    expected = [str(p) for p in lint_definitions(copy)]
    assert len(expected) >= 2
    assert [p["text"] for p in lint(admin, broken)["here"]] == expected


def test_a_form_change_that_breaks_a_workflow_is_a_problem_elsewhere(admin: Browser):
    # the workflow's start names ``subject`` as the case title: a form without it breaks the workflow
    form = FORM_V1.replace("subject", "topic")
    found = lint(admin, form, FORM_EDIT)
    assert not found["ok"] and found["here"] == []
    assert [p["file"] for p in found["elsewhere"]] == ["workflows/permit.yaml"]


# ------------------------------------------------------------------------------------------- saving

def test_a_broken_save_is_refused_with_the_text_and_the_problems_kept(app: Any, admin: Browser, root: Path):
    broken = WORKFLOW.replace("to: review,", "to: reveiw,")
    response = save(admin, broken)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "to: reveiw," in page and "# The permit process (a comment the editor must keep)." in page
    assert re.search(r'<textarea id="definition-text"[^>]*>' + re.escape("# The permit process"), page)
    assert "unknown state &#39;reveiw&#39;" in page and "第 12 行" in page
    assert (root / "workflows" / "permit.yaml").read_text() == WORKFLOW
    assert audit(app) == [] and generation(engine(app).store) == 0


def test_changing_a_workflow_that_started_cases_without_a_new_version_is_refused(app: Any, admin: Browser, root: Path):
    start_case(app)
    unbumped = V2.replace("version: 2  # staff decide at once", "version: 1")
    found = lint(admin, unbumped)
    assert [p["path"] for p in found["here"]] == ["version"]
    assert "version was not bumped" in found["here"][0]["message"] and found["here"][0]["hint"] == "bump version to 2"
    response = save(admin, unbumped)
    assert response.status_code == 422 and "version was not bumped" in response.get_data(as_text=True)
    assert (root / "workflows" / "permit.yaml").read_text() == WORKFLOW
    # a label may change without a new version: lint does not ask for one
    assert save(admin, WORKFLOW.replace("送审", "提交审核")).status_code == 302


def test_a_save_is_a_new_version_new_cases_use_and_older_cases_keep(app: Any, admin: Browser, root: Path):
    old = start_case(app)
    response = save(admin, V2)
    assert response.status_code == 302 and "saved=1" in response.headers["Location"]
    assert (root / "workflows" / "permit.yaml").read_text() == V2  # as typed: comments and spacing kept
    assert engine(app).definitions.workflows["permit"].version == 2
    new = start_case(app)
    docs = {cid: engine(app).store.get(CASES, cid) for cid in (old, new)}
    assert docs[old]["workflow_version"] == 1 and docs[new]["workflow_version"] == 2
    staff = Browser(app).login("staff")
    assert "直接办结" in staff.get(f"/cases/{new}").get_data(as_text=True)
    page = staff.get(f"/cases/{old}").get_data(as_text=True)
    assert "送审" in page and "直接办结" not in page  # the older case still runs on version 1
    assert staff.post(f"/cases/{old}/do/send", {"version": str(docs[old]["version"])}, page=f"/cases/{old}").status_code == 302
    assert engine(app).store.get(CASES, old)["state"] == "review"  # a state only version 1 has


def test_the_page_after_a_save_shows_the_change_as_a_table(admin: Browser):
    save(admin, V2)
    page = admin.get(EDIT + "?saved=1").get_data(as_text=True)
    assert "已保存为第 2 版" in page
    table = page[page.index('<table class="diff"'):]
    table = table[:table.index("</table>")]
    assert re.search(r'<tr class="removed">.*?version: 1', table, re.S)
    assert re.search(r'<tr class="added">.*?version: 2  # staff decide at once', table, re.S)


def test_the_file_is_written_as_typed_and_atomically(app: Any, admin: Browser, root: Path):
    path = root / "workflows" / "permit.yaml"
    before = path.stat().st_ino
    typed = V2.replace("\n", "\r\n")  # a browser's textarea sends CRLF line ends
    assert save(admin, typed).status_code == 302
    assert path.read_bytes() == V2.encode("utf-8")
    assert path.stat().st_ino != before  # replaced whole (a renamed temporary file), not rewritten in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["permit.yaml"]  # no temporary file left


def test_saving_records_an_audit_entry_and_a_generation(app: Any, admin: Browser):
    save(admin, V2)
    entries = audit(app)
    assert [(e["action"], e["by"], e["target"]) for e in entries] == [("save_definition", "admin", "workflows/permit.yaml")]
    assert entries[0]["details"]["version"] == [1, 2] and entries[0]["units"] == ["huizhou"]
    assert generation(engine(app).store) == 1
    saved = engine(app).store.search(SAVES)
    assert saved[0]["previous"] == WORKFLOW and saved[0]["text"] == V2
    assert "保存定义" in admin.get("/admin/audit").get_data(as_text=True)


def test_a_save_based_on_an_older_text_is_refused(app: Any, admin: Browser, root: Path):
    base = digest(WORKFLOW)
    assert save(admin, V2, base=base).status_code == 302
    response = save(admin, WORKFLOW.replace("送审", "提交"), base=base)  # the editor still showed version 1
    assert response.status_code == 422 and "已被他人保存" in response.get_data(as_text=True)
    assert (root / "workflows" / "permit.yaml").read_text() == V2


def test_nothing_changed_is_not_a_save(app: Any, admin: Browser):
    response = save(admin, WORKFLOW)
    assert response.status_code == 422 and "没有修改" in response.get_data(as_text=True)
    assert audit(app) == []


@pytest.mark.parametrize("kind", ["tinydb", "postgres"])
def test_another_process_picks_up_the_saved_version_without_a_restart(request: pytest.FixtureRequest, tmp_path: Path,
                                                                       root: Path, kind: str):
    """Two apps on one store (a TinyDB file, a PostgreSQL database), as two server processes are: each has its
    own store object, connections and engine."""
    location = store_location(kind, request, tmp_path, "shared.json")
    first, second = make_app(root, location), make_app(root, location)
    add_users(engine(first).store)
    try:
        assert Browser(second).login("resident").get("/start/permit").status_code == 200
        old = start_case(second)
        assert save(Browser(first).login("admin"), V2).status_code == 302
        new = start_case(second)  # no restart: the next request of the other process loads version 2
        assert engine(second).definitions.workflows["permit"].version == 2
        assert engine(second).store.get(CASES, new)["workflow_version"] == 2
        assert engine(second).store.get(CASES, old)["workflow_version"] == 1
        assert engine(second).workflow_of(engine(second).get(old)).version == 1
    finally:
        engine(first).store.close()
        engine(second).store.close()


def test_the_check_for_a_new_generation_is_throttled(tmp_path: Path, root: Path):
    app = make_app(root, str(tmp_path / "t.json"), DEFINITIONS_CHECK_SECONDS=3600)
    other = make_app(root, str(tmp_path / "t.json"))
    add_users(engine(app).store)
    try:
        save(Browser(other).login("admin"), V2)
        Browser(app).get("/login")
        assert engine(app).definitions.workflows["permit"].version == 1  # not looked yet (once an hour here)
        app.extensions["civicflow.definitions_watch"]._checked -= 3600
        Browser(app).get("/login")
        assert engine(app).definitions.workflows["permit"].version == 2
    finally:
        engine(app).store.close()
        engine(other).store.close()


# ------------------------------------------------------------------------------------------- history, rollback

def test_rolling_back_saves_the_earlier_text_again(app: Any, admin: Browser, root: Path):
    save(admin, V2)
    history = admin.get(EDIT + "/history").get_data(as_text=True)
    assert "第 2 版" in history and "第 1 版" in history
    earlier = digest(WORKFLOW)
    assert f'value="{earlier}"' in history
    response = admin.post(EDIT + "/rollback", {"to": earlier}, page=EDIT + "/history")
    assert response.status_code == 302
    assert (root / "workflows" / "permit.yaml").read_text() == WORKFLOW
    assert engine(app).definitions.workflows["permit"].version == 1
    assert [e["action"] for e in audit(app)] == ["save_definition", "rollback_definition"]
    assert generation(engine(app).store) == 2


def test_rolling_back_past_a_version_cases_started_on_is_refused_like_a_save(app: Any, admin: Browser, root: Path):
    """Version 1 with a changed label was kept with a case; going back to the unchanged text of version 1 is
    fine, but a text of version 1 that differs in shape from the kept one is not."""
    start_case(app)
    save(admin, V2)
    start_case(app)  # version 2 is kept with this case
    changed_v2 = V2.replace("      - {id: decide", "      - {id: decide2").replace("decide, to", "decide2, to")
    response = save(admin, changed_v2)
    assert response.status_code == 422 and "version was not bumped" in response.get_data(as_text=True)


def test_the_diff_page_compares_two_versions(admin: Browser):
    save(admin, V2)
    page = admin.get(f"{EDIT}/diff?from={digest(WORKFLOW)}").get_data(as_text=True)
    assert "第 1 版 → 第 2 版" in page and 'class="removed"' in page and 'class="added"' in page
    assert admin.get(f"{EDIT}/diff?from=nope").status_code == 404


def test_diff_rows_number_the_lines_on_both_sides():
    rows = diff_rows("a\nb\nc\n", "a\nB\nc\nd\n")
    assert [(r.kind, r.old, r.new, r.text) for r in rows] == [
        ("same", 1, 1, "a"), ("removed", 2, None, "b"), ("added", None, 2, "B"), ("same", 3, 3, "c"),
        ("added", None, 4, "d")]
    assert diff_rows("x\n", "x\r\n") == []


# ------------------------------------------------------------------------------------------- preview

def test_the_preview_shows_the_form_as_staff_see_it_and_the_diagram(admin: Browser):
    token = admin.token(FORM_EDIT)
    form = FORM_V1.replace("{zh: 电话, en: Phone}", "{zh: 联系电话, en: Phone}")
    html = admin.client.post(FORM_EDIT + "/preview", data={"text": form}, headers={"X-CSRFToken": token}).get_data(as_text=True)
    assert "<fieldset disabled" in html and 'id="subject"' in html and "联系电话" in html
    html = admin.client.post(EDIT + "/preview", data={"text": V2}, headers={"X-CSRFToken": token}).get_data(as_text=True)
    assert "<svg" in html and "直接办结" in html and "审核中" not in html
    broken = admin.client.post(EDIT + "/preview", data={"text": "id: ["}, headers={"X-CSRFToken": token})
    assert "有问题时无法预览" in broken.get_data(as_text=True)


def test_without_javascript_the_preview_button_posts_the_page(admin: Browser):
    response = admin.post(EDIT, {"text": V2, "action": "preview"}, page=EDIT)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "<svg" in page and "version: 2  # staff decide at once" in page


# ------------------------------------------------------------------------------------------- who gets in

def editor_routes(app: Any) -> list[tuple[str, str]]:
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint.split(".")[0] != "editor":
                continue
            url = rule.build({"kind": "workflow", "name": "permit"}, append_unknown=False)[1]
            found += [(m, url) for m in sorted((rule.methods or set()) & {"GET", "POST"})]
    return found


def test_every_editor_route_is_found(app: Any):
    routes = editor_routes(app)
    assert len(routes) == 8
    assert ("POST", EDIT + "/rollback") in routes and ("POST", EDIT + "/lint") in routes


@pytest.mark.parametrize("username", ["resident", "staff", "secretary", "admin_rj"])
def test_only_an_admin_of_the_root_unit_gets_in(app: Any, root: Path, username: str):
    b = Browser(app).login(username)
    token = b.token("/")
    for method, url in editor_routes(app):
        if method == "GET":
            response = b.get(url)
        else:
            response = b.client.post(url, data={"csrf_token": token, "text": V2, "action": "save", "to": digest(WORKFLOW)})
        assert response.status_code == 403, (method, url, response.status_code)
    assert (root / "workflows" / "permit.yaml").read_text() == WORKFLOW
    if username == "admin_rj":  # an admin, of a community: the admin area without the definitions
        for page in ("/admin/", "/admin/processes"):
            assert "/admin/definitions" not in b.get(page).get_data(as_text=True)


def test_logged_out_people_are_sent_to_the_login_page(app: Any):
    assert Browser(app).get("/admin/definitions").status_code == 302


def test_a_post_without_the_csrf_token_is_refused(app: Any, admin: Browser, root: Path):
    for url in (EDIT, EDIT + "/lint", EDIT + "/preview", EDIT + "/rollback"):
        assert admin.client.post(url, data={"text": V2, "action": "save", "to": digest(WORKFLOW)}).status_code == 400
    assert (root / "workflows" / "permit.yaml").read_text() == WORKFLOW


def test_the_root_admin_finds_the_editor_in_the_admin_menu(admin: Browser):
    page = admin.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/definitions"' in page
    assert 'href="/admin/definitions/workflow/permit"' in admin.get("/admin/processes").get_data(as_text=True)
    listing = admin.get("/admin/definitions").get_data(as_text=True)
    assert 'href="/admin/definitions/workflow/permit"' in listing and 'href="/admin/definitions/form/permit_request"' in listing
    assert admin.get("/admin/definitions/workflow/nope").status_code == 404
    assert admin.get("/admin/definitions/script/permit").status_code == 404



@pytest.mark.parametrize("kind, name, shown", [
    ("form", "programme_project", "<fieldset disabled"),    # a `type: case` field: its choices in the preview
    ("form", "meeting_minutes", "<fieldset disabled"),      # repeated rows
    ("form", "choices", "选项列表"),                         # choice lists: nothing to preview, said so
    ("workflow", "award_selection", "<svg"),
])
def test_shipped_definitions_open_lint_clean_and_preview(tmp_path: Path, kind: str, name: str, shown: str):
    root = tmp_path / "shipped"
    for folder in ("org", "forms", "workflows"):
        shutil.copytree(ROOT / folder, root / folder)
    app = make_app(root, "memory")
    add_users(engine(app).store)
    b = Browser(app).login("admin")
    url = f"/admin/definitions/{kind}/{name}"
    assert b.get(url).status_code == 200
    text = (root / ("forms" if kind == "form" else "workflows") / f"{name}.yaml").read_text()
    assert lint(b, text, url)["ok"]
    html = b.client.post(url + "/preview", data={"text": text}, headers={"X-CSRFToken": b.token(url)})
    assert html.status_code == 200 and shown in html.get_data(as_text=True)
    assert b.post(url, {"text": text, "action": "preview"}, page=url).status_code == 200



def test_a_file_that_cannot_be_written_is_not_saved(app: Any, admin: Browser, root: Path, monkeypatch: Any):
    import errno
    import os

    import engine.definition_edit as edit

    def disk_full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(edit.os, "replace", disk_full)
    response = save(admin, V2)
    monkeypatch.undo()
    assert response.status_code == 422 and "无法写入文件 workflows/permit.yaml" in response.get_data(as_text=True)
    assert "version: 2  # staff decide at once" in response.get_data(as_text=True)  # the text is kept
    assert (root / "workflows" / "permit.yaml").read_text() == WORKFLOW
    assert sorted(p.name for p in (root / "workflows").iterdir()) == ["permit.yaml"]
    assert audit(app) == [] and generation(engine(app).store) == 0


def test_when_the_store_refuses_the_save_the_file_goes_back(app: Any, admin: Browser, root: Path, monkeypatch: Any):
    from engine.admin import UserAdmin

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the store went away")
    monkeypatch.setattr(UserAdmin, "write_audit", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError):
        save(admin, V2)
    assert (root / "workflows" / "permit.yaml").read_text() == WORKFLOW
    assert engine(app).store.search(SAVES) == [] and generation(engine(app).store) == 0


def test_a_kept_version_is_parsed_once_for_drafts_that_leave_its_base_alone(app: Any, admin: Browser):
    """Checking a draft checks every kept version too (civicflow lint does): each is parsed once, not per
    keystroke, while what it depends on (states, fields, choice lists, roles) stays the same."""
    from engine.runtime import Engine

    start_case(app)
    save(admin, V2)
    live = engine(app)
    [doc] = [d for d in live.kept.all_docs if d["version"] == 1]
    probe = Engine(live.definitions, live.store, live.actions, indexes=False)
    assert probe.kept.parse(doc) is live.kept.parse(doc) is not None
    # a draft with another state: references across workflows may now resolve differently, so it is parsed again
    extra = (V2.replace("roles: [community_staff]}", "roles: [community_staff]}\n      - {id: file, to: archived, label: "
                        "{zh: 归档, en: File}, roles: [community_staff]}")
             + "  archived:\n    title: {zh: 已归档, en: Archived}\n    final: true\n")
    drafted = load_draft(app.config["DEFINITIONS"], {"workflows/permit.yaml": extra})
    again = Engine(drafted, live.store, live.actions, indexes=False).kept.parse(doc)
    assert again is not None and again is not live.kept.parse(doc) and again.states.keys() == live.kept.parse(doc).states.keys()


def test_rolling_back_to_a_text_kept_with_cases_after_a_change_outside_the_editor(tmp_path: Path, root: Path):
    """Version 1 started a case (its text is kept with it); the file is then changed by hand and the app
    restarted: the editor still lists version 1, from the store, and rolls back to it."""
    store = str(tmp_path / "kept.json")
    first = make_app(root, store)
    add_users(engine(first).store)
    start_case(first)
    engine(first).store.close()
    (root / "workflows" / "permit.yaml").write_text(V2, encoding="utf-8")  # by hand, not in the editor
    app = make_app(root, store)
    try:
        admin = Browser(app).login("admin")
        history = admin.get(EDIT + "/history").get_data(as_text=True)
        assert "随按此版本发起的事项保存" in history and f'value="{digest(WORKFLOW)}"' in history
        assert admin.post(EDIT + "/rollback", {"to": digest(WORKFLOW)}, page=EDIT + "/history").status_code == 302
        assert (root / "workflows" / "permit.yaml").read_text() == WORKFLOW
        assert engine(app).definitions.workflows["permit"].version == 1
    finally:
        engine(app).store.close()


def test_two_server_processes_the_second_picks_up_a_save_made_on_the_first(tmp_path: Path, root: Path):
    """Real `civicflow serve` processes on one instance: a version saved through one is used by the other's next
    start of a case, within its check interval (1 s), without a restart; the case started before keeps v1."""
    import time

    from engine.store import TinyDBStore
    from tests.test_server import Browser as Http
    from tests.test_server import serving

    instance = tmp_path / "instance"
    instance.mkdir()
    store = TinyDBStore(str(instance / "civicflow.json"))
    add_users(store)
    store.close()
    env = {"CIVICFLOW_HOME": str(root), "CIVICFLOW_SECRET_KEY": "two-processes-one-secret-key", "CIVICFLOW_TICK_SECONDS": "0"}

    def start(server: Any) -> int:
        resident = Http(server.url, follow_redirects=False)
        resident.login("resident")
        status, headers, _page = resident.request("/start/permit", {"csrf_token": resident.csrf_token("/start/permit"),
                                                                    "subject": "搭建临时棚"})
        assert status == 302, _page[:2000]
        return int(re.search(r"/cases/(\d+)", headers["Location"]).group(1))

    with serving(instance, **env) as first, serving(instance, **env) as second:
        old = start(second)
        admin = Http(first.url, follow_redirects=False)
        admin.login("admin")
        status, headers, page = admin.request(EDIT, {"csrf_token": admin.csrf_token(EDIT), "text": V2, "action": "save"})
        assert status == 302, page[:2000]
        time.sleep(1.2)  # the other process looks at the generation at most once a second
        new = start(second)
        assert "definitions reloaded at generation 1" in second.stderr()
    store = TinyDBStore(str(instance / "civicflow.json"))
    try:
        assert store.get(CASES, old)["workflow_version"] == 1 and store.get(CASES, new)["workflow_version"] == 2
    finally:
        store.close()
