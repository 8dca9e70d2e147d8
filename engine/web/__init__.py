"""The Flask app: ``create_app(test_config=None)`` wires definitions, store and engine into blueprints."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, g
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect

from .. import notify
from ..actions import ACTIONS
from ..loader import load_definitions
from ..runtime import Engine
from ..store import open_store
from . import i18n, ticker

ROOT = Path(__file__).resolve().parents[2]
csrf = CSRFProtect()
babel = Babel()


def _secret_key(instance: Path) -> str:
    """A random key, made once per instance and kept in ``instance/secret_key`` (never in git)."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. Raises :class:`engine.errors.DefinitionError` if a definition is broken."""
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
    )
    if test_config:
        app.config.from_mapping(test_config)
    instance = Path(app.instance_path)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(instance)
    app.config["STORE"] = app.config["STORE"] or str(instance / "civicflow.json")
    app.config["UPLOADS"] = app.config["UPLOADS"] or str(instance / "uploads")

    actions = app.config.get("ACTIONS") or ACTIONS
    definitions = load_definitions(app.config["DEFINITIONS"], actions)
    actions.close()
    store = open_store(app.config["STORE"])
    kwargs = {"clock": app.config["CLOCK"]} if app.config["CLOCK"] else {}
    app.extensions["civicflow"] = Engine(definitions, store, actions, **kwargs)

    i18n.compile_catalogs(Path(app.config["BABEL_TRANSLATION_DIRECTORIES"]))
    babel.init_app(app, locale_selector=i18n.select_locale)
    csrf.init_app(app)

    from . import auth, cases, cli, dashboard, diagrams, errors, export, files, governance
    app.register_blueprint(auth.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(diagrams.bp)
    app.register_blueprint(export.bp)
    app.register_blueprint(governance.bp)
    app.register_blueprint(dashboard.bp)
    errors.register(app)
    cli.init_app(app)
    ticker.start(app)

    @app.before_request
    def load_user() -> None:
        auth.load_logged_in_user()

    # Templates get the (immutable) definitions to label things, never the engine or the store: what a page
    # shows is computed by its view.
    engine = app.extensions["civicflow"]
    app.jinja_env.globals.update(tr=i18n.tr, org=definitions.org, workflows_by_id=definitions.workflows,
                                 forms_by_id=definitions.forms, notification_kinds=notify.KINDS)

    @app.context_processor
    def globals_for_templates() -> dict[str, Any]:
        unread = engine.read.unread_count(g.user.username) if g.get("user") else 0
        return {"lang": i18n.current_lang(), "unread": unread}

    @app.after_request
    def security_headers(response):  # type: ignore[no-untyped-def]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'")
        return response

    return app


def get_engine() -> Engine:
    from flask import current_app
    return current_app.extensions["civicflow"]
