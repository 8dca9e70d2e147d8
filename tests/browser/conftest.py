"""Browser tests: Playwright drives Debian's Chromium against the app served by a real werkzeug server.

One Chromium for the session; one server per test module (a thread on a free port, with its own
instance directory and TinyDB file); a fresh browser context (cookies) per test. Every page a test
opens is watched: a JavaScript dialog, an uncaught error or a console error (a CSP violation is one)
fails the test.

`make test` installs Chromium (apt-get) and Playwright (pip); without them these tests fail, they are
not skipped. ``CIVICFLOW_CHROMIUM`` points at another Chromium binary.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from engine.clock import FrozenClock
from engine.users import User, find_user
from engine.web import create_app
from tests.conftest import PASSWORD, ROOT, add_users, definitions_dir, make_registry

CHROMIUM = os.environ.get("CIVICFLOW_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1100, "height": 900}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}. `make test` installs it "
                    "(apt-get install chromium fonts-noto-cjk); or set CIVICFLOW_CHROMIUM.", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: `make test` installs it (pip install -e '.[test]').", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@dataclass
class Server:
    app: Any
    url: str

    @property
    def engine(self) -> Any:
        return self.app.extensions["civicflow"]

    def user(self, username: str) -> User:
        found = find_user(self.engine.store, username)
        assert found is not None
        return found


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # keep failure reports readable
        pass


def serve(app: Any) -> Iterator[Server]:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="civicflow-test-server", daemon=True)
    thread.start()
    try:
        yield Server(app, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(5)
        app.extensions["civicflow"].store.close()


def make_app(instance: Path, definitions: Path, **config: Any) -> Any:
    app = create_app({"SECRET_KEY": "browser-tests", "STORE": str(instance / "civicflow.json"),
                      "UPLOADS": str(instance / "uploads"), "DEFINITIONS": str(definitions),
                      "CLOCK": FrozenClock("2026-11-27T09:00:00"), **config})
    add_users(app.extensions["civicflow"].store)
    return app


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shipped definitions (volunteer registration)."""
    yield from serve(make_app(tmp_path_factory.mktemp("instance"), ROOT))


def slow_live_updates(app: Any, seconds: float) -> Any:
    """Answer live form updates late, as over a slow phone connection, so that answers arrive while the
    person types on: the races the live forms must win happen in every run, not by chance."""
    inner = app.wsgi_app

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").endswith("/fields"):
            time.sleep(seconds)
        return inner(environ, start_response)

    app.wsgi_app = wsgi
    return app


@pytest.fixture(scope="module")
def runtime_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """tests/data/valid/runtime: the purchase workflow with repeat rows and a photo; live updates take 250 ms."""
    tmp = tmp_path_factory.mktemp("runtime")
    app = make_app(tmp / "instance", definitions_dir(tmp), ACTIONS=make_registry([]))
    yield from serve(slow_live_updates(app, 0.25))


@dataclass
class Watch:
    """What went wrong on the pages of one test."""
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def watch() -> Watch:
    return Watch()


def _new_page(chromium: Any, watch: Watch, viewport: dict[str, int]) -> Any:
    context = chromium.new_context(viewport=viewport, locale="zh-CN", accept_downloads=True)
    context.set_default_timeout(10_000)
    page = context.new_page()

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: watch.errors.append(f"page error: {exc}"))
    def on_console(msg: Any) -> None:
        # hx-sync="this:replace" aborts a live update that a newer one supersedes, and htmx logs each abort
        # as an error; that is the design (see templates/_macros.html), not a failure.
        # A form sent back with its errors comes with status 422, which Chromium also reports.
        expected = ("htmx:sendAbort", "htmx:afterRequest", "Failed to load resource: the server responded with a "
                    "status of 422")
        if msg.type == "error" and not msg.text.startswith(expected):
            watch.errors.append(f"console {msg.type}: {msg.text}")

    page.on("console", on_console)
    return page


@pytest.fixture
def page(chromium: Any, watch: Watch) -> Iterator[Any]:
    page = _new_page(chromium, watch, DESKTOP)
    yield page
    page.context.close()
    assert not watch.dialogs, f"a dialog opened: {watch.dialogs}"
    assert not watch.errors, "\n".join(watch.errors)


@pytest.fixture
def phone(chromium: Any, watch: Watch) -> Iterator[Any]:
    page = _new_page(chromium, watch, PHONE)
    yield page
    page.context.close()
    assert not watch.dialogs, f"a dialog opened: {watch.dialogs}"
    assert not watch.errors, "\n".join(watch.errors)


def login(page: Any, server: Server, username: str) -> None:
    """Through the login page, as a person does."""
    page.goto(server.url + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(server.url + "/")


def open_menu(page: Any) -> None:
    """On a phone the top bar's links sit behind its "Menu" disclosure: open it (nothing to do on a wide screen)."""
    summary = page.locator("header.top details.menu > summary")
    if summary.is_visible() and page.locator("header.top details.menu[open]").count() == 0:
        summary.click()


def logout(page: Any) -> None:
    open_menu(page)
    page.click("header form[action='/logout'] button")
    page.wait_for_url("**/login")


def mark_page(page: Any) -> None:
    """Set a flag that only survives as long as the page is not reloaded."""
    page.evaluate("window.__stillThisPage = true")


def same_page(page: Any) -> bool:
    return bool(page.evaluate("window.__stillThisPage === true"))


def no_injected_markup(page: Any) -> None:
    """No element carries an event handler attribute, and no inline script exists."""
    found = page.evaluate("""() => {
        const bad = [];
        for (const el of document.querySelectorAll('*')) {
            for (const a of el.attributes) if (a.name.startsWith('on')) bad.push(el.tagName + '[' + a.name + ']');
        }
        for (const s of document.querySelectorAll('script:not([src])')) bad.push('inline script');
        return bad;
    }""")
    assert found == [], f"{page.url}: {found}"


def no_sideways_scroll(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the page scrolls sideways"


def start_funds_request(page: Any, server: "Server", project: str = "楼道照明改造", amount: str = "8600",
                        purpose: str = "为1号楼、2号楼更换声控灯共48盏。") -> str:
    """As staff, ask for service funds (服务群众专项经费) for the 人家 community; the new case's URL."""
    login(page, server, "staff")
    page.goto(server.url + "/start/service_funds")
    page.fill("#project", project)
    page.select_option("#community", "renjia")
    page.fill("#amount", amount)
    page.fill("#purpose", purpose)
    page.click("form .actions button.primary")
    page.wait_for_url("**/cases/*")
    return page.url
