"""XSS payloads typed into every text field of every shipped start form, in a real Chromium (issue 14).

For each workflow, the person the demo has start it opens its start form on a server with the shipped definitions and
the demo data, types payloads (a script tag, an attribute breakout with an onerror image, a ``javascript:`` link, a
``{{7*7}}`` template injection) into every text and textarea field (repeat columns too), fills the other fields with
the demo scenario's values, and submits. Then the case page, the inbox, /mine, the list page, the dashboard and the
public page are opened, by the submitter and by a second person who sees the case: no dialog fires, no element carries
an injected event handler or ``javascript:`` link, no inline script exists, and the payload reads as text
(``{{7*7}}`` stays ``{{7*7}}``, not 49). Note: the CSP (script-src 'self') would stop an injected script from
running, so the markup checks, not only the dialog, are what can catch an injection here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect
from ruamel.yaml import YAML

from engine.demo import load_demo
from engine.loader import load_definitions
from engine.users import USERS, User, find_user, hash_password
from engine.web import create_app
from tests.browser.conftest import DESKTOP, Server, _new_page, login, serve
from tests.browser.test_live_forms import png
from tests.conftest import PASSWORD, ROOT, new_id_number

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
JS_LINK = "javascript:alert(1)"
TEMPLATE = "{{7*7}}"
ALL = f"{SCRIPT}{BREAKOUT}{JS_LINK} {TEMPLATE}"
#: shortest last: a field with a small max_length gets the longest payload that fits
PAYLOADS = [ALL, BREAKOUT + TEMPLATE, SCRIPT, BREAKOUT, "<svg onload=alert(1)>", JS_LINK, TEMPLATE, "<b>x"]
YAML_SAFE = YAML(typ="safe")


def demo_scenarios() -> dict[str, dict[str, Any]]:
    """The first demo scenario that starts each workflow (who starts it and with what)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((ROOT / "demo" / "cases").glob("*.yaml")):
        for item in YAML_SAFE.load(path.read_text(encoding="utf-8")) or []:
            if "workflow" in item and item["workflow"] not in found:
                found[item["workflow"]] = item
    return found


def has_text_field(form: Any) -> bool:
    return any(is_text(f) or (f.is_repeat and any(is_text(s) for s in f.fields)) for f in form.fields)


def is_text(f: Any) -> bool:
    return type(f.kind).__name__ in ("TextType", "TextareaType") and not f.compute


SCENARIOS = demo_scenarios()
_DEFS = load_definitions(ROOT)
#: every shipped workflow whose start form has a text field to type into (points_redemption's has none: a reward,
#: a quantity and a supermarket are all picked from lists); the assert below keeps this list honest
ATTACKED = sorted(w for w in SCENARIOS if has_text_field(_DEFS.forms[_DEFS.workflows[w].start_form]))


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shipped definitions with the demo users and demo cases (choice lists of case fields have cases)."""
    instance = tmp_path_factory.mktemp("xss")
    app = create_app({"SECRET_KEY": "xss-tests", "STORE": str(instance / "civicflow.json"),
                      "UPLOADS": str(instance / "uploads"), "DEFINITIONS": str(ROOT)}, start_timers=False)
    engine = app.extensions["civicflow"]
    doc = YAML_SAFE.load((ROOT / "demo" / "users.yaml").read_text(encoding="utf-8"))
    hashed = hash_password(PASSWORD)
    with engine.store.transaction() as tx:
        for u in doc["users"]:
            tx.insert(USERS, User(u["username"], u["name"], tuple(u["roles"]), u["unit"], hashed).to_doc())
    load_demo(engine, ROOT / "demo" / "cases")
    yield from serve(app)


def payload_for(f: Any, n: int) -> str:
    """A payload that fits the field (max_length); rotates so that each kind is typed somewhere."""
    limit = f.max_length or 10_000
    fitting = [p for p in PAYLOADS if len(p) <= limit]
    assert fitting, f"{f.id}: max_length {limit} fits no payload"
    return fitting[0] if n % 2 == 0 or len(fitting) == 1 else fitting[min(n % len(fitting), len(fitting) - 1)]


def set_value(page: Any, name: str, f: Any, value: Any) -> None:
    """A non-text field set to a demo value, as a person would pick it (selects, boxes, dates, numbers)."""
    widget = f.kind.widget
    if value is None or widget in ("rows",):
        return
    if widget in ("select", "orgunit"):
        page.select_option(f"[name='{name}']", str(value))
    elif widget == "case":
        options = page.locator(f"select[name='{name}'] option:not([value=''])")
        if options.count():
            page.select_option(f"[name='{name}']", options.first.get_attribute("value"))
    elif widget == "multiselect":
        for v in value if isinstance(value, list) else [value]:
            page.check(f"input[name='{name}'][value='{v}']")
    elif widget == "rating":
        page.check(f"input[name='{name}'][value='{value}']")
    elif widget == "checkbox":
        if value:
            page.check(f"#{name}")
    elif widget == "file":
        page.set_input_files(f"#{name}", files=[{"name": "x.png", "mimeType": "image/png", "buffer": png()}])
    elif widget == "datetime":
        page.fill(f"#{name}", str(value).replace(" ", "T")[:16])
    elif not f.compute:
        page.fill(f"#{name}", str(value))


def turn_page(page: Any, form: Any, values: dict[str, Any], to: str) -> None:
    """下一步 to the page ``to`` of a paged form; where a payload is refused on the page being left (a pattern, a
    length), the demo value is typed instead and the page left again."""
    with page.expect_response(lambda r: r.request.headers.get("hx-trigger-name") == "_page"):
        page.click(".page-buttons button[value=next]")
    page.wait_for_load_state("networkidle")
    if page.locator(f"#page-{to}:not([hidden])").count() == 0:
        for name in page.locator(".form-page:not([hidden]) .field.invalid").evaluate_all(
                "els => els.map(e => e.id.replace('field-', ''))"):
            f = form.field(name)
            if f is not None and is_text(f) and values.get(name):
                page.fill(f"#{name}", str(values[name]))
        page.click(".page-buttons button[value=next]")
    expect(page.locator(f"#page-{to}")).to_be_visible()


def fill_start_form(page: Any, form: Any, values: dict[str, Any]) -> list[str]:
    """Type payloads into every text field, demo values into the rest; returns the payloads typed."""
    typed: list[str] = []
    n = 0
    for f in form.fields:
        if f.kind.starts_page and f.id != form.pages[0].id:  # a paged form: on to the next page
            turn_page(page, form, values, f.id)
            continue
        if page.locator(f"[name='{f.id}'], #field-{f.id}").count() == 0:
            continue  # hidden by show_if just now
        if f.is_repeat:
            rows = values.get(f.id) or [{}]
            for i in range(page.locator(f"#field-{f.id} .row").count()):
                row = rows[i] if i < len(rows) and isinstance(rows[i], dict) else {}
                for sub in f.fields:
                    name = f"{f.id}-{i}-{sub.id}"
                    if page.locator(f"[name='{name}']").count() == 0:
                        continue
                    if is_text(sub):
                        typed.append(payload_for(sub, n))
                        n += 1
                        page.fill(f"#{name}", typed[-1])
                    else:
                        set_value(page, name, sub, row.get(sub.id))
        elif is_text(f):
            typed.append(payload_for(f, n))
            n += 1
            page.fill(f"#{f.id}", typed[-1])
        elif f.id in values or (f.required and f.kind.widget in ("file", "case")):
            set_value(page, f.id, f, values.get(f.id))
    return typed


def assert_clean(page: Any, where: str) -> None:
    """No injected event handler, inline script or javascript: link on the page."""
    found = page.evaluate("""() => {
        const bad = [];
        for (const el of document.querySelectorAll('*')) {
            for (const a of el.attributes) if (a.name.startsWith('on')) bad.push(el.tagName + '[' + a.name + ']');
        }
        for (const s of document.querySelectorAll('script:not([src])')) bad.push('inline script');
        for (const a of document.querySelectorAll('[href], [src], [action], [formaction]')) {
            for (const n of ['href', 'src', 'action', 'formaction']) {
                const v = (a.getAttribute(n) || '').trim().toLowerCase();
                if (v.startsWith('javascript:')) bad.push(a.tagName + '[' + n + '=' + v + ']');
            }
        }
        if (document.querySelector('img[src="x"]')) bad.push('injected img');
        return bad;
    }""")
    assert found == [], f"{where}: injected markup {found}"


def second_viewer(server: Server, case: Any, starter: str) -> str | None:
    """Someone other than the starter who sees the case (staff first): the inbox and list as they see them."""
    engine = server.engine
    for username in ("staff", "grid", "secretary", "street", "district", "admin"):
        user = find_user(engine.store, username)
        if username != starter and user is not None and engine.can_see(case, user):
            return username
    return None


def test_every_shipped_workflow_is_attacked_or_has_no_text_field():
    assert set(SCENARIOS) == set(_DEFS.workflows), "a shipped workflow has no demo scenario to start it from"
    assert len(ATTACKED) >= len(_DEFS.workflows) - 2, f"only {ATTACKED} have a text field on the start form"


@pytest.mark.parametrize("workflow_id", ATTACKED)
def test_xss_payloads_typed_into_a_start_form_show_as_text_everywhere(workflow_id: str, page: Any, chromium: Any,
                                                                       watch: Any, demo_server: Server):
    server = demo_server
    scenario = SCENARIOS[workflow_id]
    wf = server.engine.definitions.workflows[workflow_id]
    form = server.engine.definitions.forms[wf.start_form]
    login(page, server, scenario["by"])
    page.goto(f"{server.url}/start/{workflow_id}")
    values = json.loads(json.dumps(scenario.get("values") or {}, default=str))
    if any("id_number" in rule.fields for rule in wf.unique) and values.get("id_number"):
        values["id_number"] = new_id_number()  # one case per ID number: the demo's applicant already holds theirs
    typed = fill_start_form(page, form, values)
    page.wait_for_load_state("networkidle")  # the live form has caught up
    assert_clean(page, "start form")
    page.click("form .actions button.primary")
    page.wait_for_load_state("networkidle")
    if "/cases/" not in page.url:  # a field refused the payload (e.g. a pattern): what was typed is still there
        assert_clean(page, "start form with errors")
        assert TEMPLATE in page.locator("#fields").evaluate(
            "el => [...el.querySelectorAll('input, textarea')].map(i => i.value).join(' ')")
        invalid = page.locator(".field.invalid").evaluate_all("els => els.map(e => e.id.replace('field-', ''))")
        for name in invalid:
            f = form.field(name)
            if f is not None and is_text(f) and values.get(name):
                page.fill(f"#{name}", str(values[name]))
        page.click("form .actions button.primary")
        page.wait_for_load_state("networkidle")
    assert "/cases/" in page.url, f"{workflow_id}: not submitted: " + page.locator("main").inner_text()[:1500]
    case_id = int(page.url.rsplit("/", 1)[1])
    case = server.engine.get(case_id)
    stored = json.dumps(case.data, ensure_ascii=False)
    kept = [p for p in typed if p in stored]
    assert kept, f"{workflow_id}: none of the payloads was stored as typed"

    def visit(p: Any, who: str, own: bool) -> None:
        for url in (f"/cases/{case_id}", "/", "/mine", f"/workflows/{workflow_id}", "/dashboard", "/public"):
            response = p.goto(server.url + url)  # waits for "load": the page's own scripts have run
            assert response is not None and response.status in (200, 403), f"{who} {url}: {response.status}"
            assert_clean(p, f"{who} {url}")
            assert not watch.dialogs, f"{who} {url}: a dialog fired: {watch.dialogs}"
        if own:  # the submitter sees every value unmasked: each payload reads as the text that was typed
            p.goto(f"{server.url}/cases/{case_id}")
            text = p.locator("main").inner_text()
            assert [t for t in kept if t in text], f"{who}: no payload shows as text on the case page"
            if any(TEMPLATE in t for t in kept):
                assert TEMPLATE in text, f"{who}: {{{{7*7}}}} did not stay as typed"

    visit(page, scenario["by"], own=True)
    other = second_viewer(server, case, scenario["by"])
    if other is not None:
        second = _new_page(chromium, watch, DESKTOP)
        try:
            login(second, server, other)
            visit(second, other, own=False)
        finally:
            second.context.close()
    assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)
