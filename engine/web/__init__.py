"""The Flask app: ``create_app(test_config=None)`` wires definitions, store and engine into blueprints."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, g, request
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import notify
from ..actions import ACTIONS
from ..loader import load_definitions
from ..runtime import Engine
from ..store import is_database_url, open_store
from ..channels import ChannelConfig, ChannelError
from ..webhooks import http_send
from . import i18n, reload, settings, ticker, tokens
from .requestlog import RequestLog
from .fragments import FragmentCache
from .sessions import CookieSessions
from .urls import UrlCache

ROOT = Path(__file__).resolve().parents[2]
#: The Content-Security-Policy of every page (a page that needs more sets its own, e.g. engine.web.editor).
CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'"
_MEMORY_STORES = ("memory", "memory:", "memory://")
csrf = CSRFProtect()
babel = Babel()


def _secret_key(instance: Path) -> str:
    """A random key, made once per instance and kept in ``instance/secret_key`` (never in git).

    Several worker processes (gunicorn) start at once: each writes a key to a file of its own and links it
    into place, which only the first does, so none reads a half-written file or keeps a key of its own."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        mine = instance / f".secret_key.{os.getpid()}"
        fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            os.link(mine, path)
        except FileExistsError:
            pass  # another process was first: its key is the instance's
        finally:
            mine.unlink(missing_ok=True)
    return path.read_text().strip()


def create_app(test_config: Mapping[str, Any] | None = None, *, start_timers: bool = True) -> Flask:
    """Build the app. Raises :class:`engine.errors.DefinitionError` if a definition is broken and
    :class:`engine.web.settings.SettingsError` if an environment setting is invalid.

    Settings come from the defaults below, then the environment (``CIVICFLOW_SECRET_KEY``,
    ``CIVICFLOW_SECURE_COOKIES``, ``CIVICFLOW_TRUSTED_PROXIES``, ``CIVICFLOW_TICK_SECONDS``,
    ``CIVICFLOW_DATABASE_URL``), then ``test_config``. Raises :class:`engine.store.StoreError` when the
    database cannot be reached or its schema is behind. ``start_timers=False`` leaves the background ticker off (the CLI builds the app
    for one-shot commands; ``civicflow serve`` and ``run`` start it themselves).
    """
    home = Path(os.environ.get("CIVICFLOW_HOME", ROOT))
    app = Flask(__name__, instance_path=str(Path(os.environ.get("CIVICFLOW_INSTANCE", home / "instance")).resolve()),
                template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.from_mapping(
        DEFINITIONS=str(home),
        STORE=None,                           # default: instance/civicflow.json
        UPLOADS=None,                         # default: instance/uploads
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,  # per-field limits are declared in the forms
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=8 * 3600,
        WTF_CSRF_TIME_LIMIT=None,             # a long form on a phone must not expire while being typed
        BABEL_DEFAULT_LOCALE="zh",
        BABEL_DEFAULT_TIMEZONE="Asia/Shanghai",
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).parent / "translations"),
        CLOCK=None,                           # a callable returning an aware datetime (tests freeze it)
        ACTIONS=None,                         # an ActionRegistry; default: the shipped actions
        TICK_SECONDS=30,                      # run due timers this often in the background (0: never)
        TICKER_LOCK=None,                     # on a file store only the holder of this flock ticks; see below
        TRUSTED_PROXIES=0,                    # reverse proxies in front whose X-Forwarded-* headers count
        DEFINITIONS_CHECK_SECONDS=1.0,        # how often a process looks for definitions saved in the editor
    )
    app.config.from_mapping(settings.app_config(os.environ))
    if test_config:
        app.config.from_mapping(test_config)
    instance = Path(app.instance_path)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(instance)
    default_store = str(instance / "civicflow.json")
    app.config["STORE"] = app.config["STORE"] or default_store
    if (not app.config["TICKER_LOCK"] and app.config["STORE"] not in _MEMORY_STORES
            and not is_database_url(app.config["STORE"])):
        # The lock guards the store the timers write to, so an app on another store file never waits for
        # it; a memory store lives in one process only, so each process ticks its own (no lock). A database
        # has a lock of its own shared by every host (Store.leader_lock), which the ticker takes instead.
        app.config["TICKER_LOCK"] = (str(instance / "ticker.lock") if app.config["STORE"] == default_store
                                     else app.config["STORE"] + ".ticker.lock")
    app.config["UPLOADS"] = app.config["UPLOADS"] or str(instance / "uploads")

    try:  # e-mail / SMS channels the operator set up (engine.channels); a typo stops the start with one line
        app.extensions["civicflow_channels"] = app.config.get("CHANNELS") or ChannelConfig.from_environ(
            os.environ, http_send)
    except ChannelError as exc:
        raise settings.SettingsError(str(exc)) from None
    actions = app.config.get("ACTIONS") or ACTIONS
    definitions = load_definitions(app.config["DEFINITIONS"], actions)
    if definitions.warnings:  # old spellings load; say once where, so the admin can respell them
        app.logger.warning("definitions: %d old spelling(s), still read; `civicflow lint` lists them, e.g. %s",
                           len(definitions.warnings), definitions.warnings[0])
    actions.close()
    store = open_store(app.config["STORE"])
    kwargs = {"clock": app.config["CLOCK"]} if app.config["CLOCK"] else {}
    app.extensions["civicflow"] = Engine(definitions, store, actions, **kwargs)
    reload.init_app(app)

    i18n.compile_catalogs(Path(app.config["BABEL_TRANSLATION_DIRECTORIES"]))
    babel.init_app(app, locale_selector=i18n.select_locale)
    i18n.install_template_gettext(app, Path(app.config["BABEL_TRANSLATION_DIRECTORIES"]))
    csrf.init_app(app)
    app.session_interface = CookieSessions()  # an unchanged session's cookie is not re-sent on every request

    from . import (account, admin, api, auth, cases, cli, dashboard, delegation, diagrams, editor, errors, export, files,
                   governance, health, pickers, taskmoves, webhooks, worklist)
    app.register_blueprint(health.bp)
    csrf.exempt(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(worklist.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(diagrams.bp)
    app.register_blueprint(export.bp)
    app.register_blueprint(governance.bp)
    app.register_blueprint(pickers.bp)
    app.register_blueprint(taskmoves.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(delegation.bp)  # 委托代理, 催办, 抄送
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # token requests need none; the API checks CSRF itself on session writes
    app.register_blueprint(editor.bp)
    errors.register(app)
    cli.init_app(app)

    app.wsgi_app = RequestLog(app.wsgi_app)  # type: ignore[method-assign]
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # Inside the proxy fix, the request log sees the client's address, not the proxy's.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,  # type: ignore[method-assign]
                                x_host=proxies, x_prefix=proxies)

    @app.before_request
    def load_user() -> None:
        if request.blueprint == health.bp.name:
            return  # probes carry no session, and a failing store must give the 503, not an error page
        reload.check(app)  # definitions saved in the editor, by this process or another
        auth.load_logged_in_user()

    # Templates get the (immutable) definitions to label things, never the engine or the store: what a page
    # shows is computed by its view. A reload (engine.web.reload) swaps in the new definitions.
    app.jinja_env.globals.update(org=definitions.org, workflows_by_id=definitions.workflows,
                                 forms_by_id=definitions.forms, notification_kinds=notify.KINDS,
                                 url_for=UrlCache(), fragment=FragmentCache(),
                                 state_title=lambda case: _state_title(app.extensions["civicflow"], case))

    @app.context_processor
    def globals_for_templates() -> dict[str, Any]:
        engine = app.extensions["civicflow"]
        unread = engine.read.unread_count(g.user.username) if g.get("user") else 0
        # csrf_token: Flask-WTF's token, signed once per session (engine.web.tokens); this processor runs after
        # Flask-WTF's, so its name is ours
        return {"lang": i18n.current_lang(), "unread": unread, "csrf_token": tokens.csrf_token}

    @app.after_request
    def security_headers(response):  # type: ignore[no-untyped-def]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    if start_timers:
        ticker.start(app)
    return app


def _state_title(engine: Engine, case: Any) -> Mapping[str, str] | None:
    """The title of a case's state in the version of its workflow it runs on (a state only an old version has
    is still named on cards and lists)."""
    wf = engine.spec_of(case)
    state = wf.states.get(case.state) if wf is not None else None
    return state.title if state is not None else None


def get_engine() -> Engine:
    from flask import current_app
    return current_app.extensions["civicflow"]
