"""The ``civicflow`` command, built on Flask's CLI: ``civicflow serve``, ``run``, ``lint``, ``migrate``, ``user add``,
``demo``."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import FlaskGroup, ScriptInfo, get_debug_flag, run_command, with_appcontext
from werkzeug.serving import is_running_from_reloader
from ruamel.yaml import YAML

from .. import ledger, migration
from ..cases import CASES
from ..demo import DemoError, load_demo
from ..errors import DefinitionError, EngineError
from ..loader import lint as lint_definitions
from ..store.memory import CorruptStoreError, StoreError
from ..users import USERS, User, hash_password, password_problems
from ..webhooks import Deliverer
from . import ROOT, create_app, get_engine, server, settings, ticker
from .backup_cli import backup_command, db_group, restore_command
from .settings import SettingsError
from .xlsform_cli import export_command, import_command


def _create_app() -> Any:
    # One-shot commands (tick, user add, demo, ...) need no background timers; serve and run start them.
    return create_app(start_timers=False)


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False)
def cli() -> None:
    """Civicflow: community-governance workflows defined in YAML."""


@click.pass_context
def _run_development_server(ctx: click.Context, **options: Any) -> None:
    reload = options.get("reload")
    if reload is None:
        reload = get_debug_flag()
    # With the reloader, the first process only watches files; the one it starts serves and ticks.
    if not reload or is_running_from_reloader():
        try:
            app = ctx.ensure_object(ScriptInfo).load_app()
        except Exception:  # noqa: BLE001 - Flask's run command reports it (or shows it on each page when reloading)
            pass
        else:
            ticker.start(app)
    ctx.invoke(run_command.callback, **options)  # type: ignore[arg-type]


cli.add_command(click.Command(
    "run", params=list(run_command.params), callback=_run_development_server,
    help="Serve with Flask's development server: for development only (reloader and debugger with --debug). "
         "It is not built for real traffic; use `civicflow serve` for that.",
    short_help="Development server (for development only; use `serve` otherwise).",
))


def _definitions_root(path: Path) -> tuple[Path, Path | None]:
    """A definitions directory, or the directory a single definition file belongs to."""
    path = path.resolve()
    if path.is_file():
        root = path.parent.parent
        return root, path
    return path, None


def _instance_store() -> str | None:
    """The store of the instance (as ``create_app`` finds it: ``CIVICFLOW_DATABASE_URL``, else the instance's
    file), if there is one."""
    url = settings.database_url(os.environ)
    if url:
        return url
    home = Path(os.environ.get("CIVICFLOW_HOME", ROOT))
    path = str(Path(os.environ.get("CIVICFLOW_INSTANCE", home / "instance")) / "civicflow.json")
    return path if _store_exists(path) else None


def _store_exists(path: str) -> bool:
    """A file store is its snapshot and its journal: either may be there alone (a URL: the store says)."""
    return "://" in path or Path(path).is_file() or Path(path + ".journal").is_file()


def _store_problems(root: Path, store_path: str) -> list[Any]:
    """What only the live store shows (``engine.migration.lint``): unbumped changes, stranded cases."""
    from ..loader import load_definitions
    from ..runtime import Engine
    from ..store import open_store

    store = open_store(store_path)
    try:
        return migration.lint(Engine(load_definitions(root), store))
    finally:
        store.close()


def _calendar_warnings(root: Path, only: Path | None) -> None:
    """Years the working-day calendar does not know (Mon-Fri only): a warning, lint still passes."""
    from ..clock import now
    from ..loader import load_definitions

    calendar = load_definitions(root).calendar
    if only is not None and str(only.relative_to(root)) != calendar.file:
        return
    for text in calendar.warnings(now().date()):
        click.echo(f"{root / calendar.file}:1:1: warning: {text}")


@cli.command("lint", with_appcontext=False)
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--store", "store_path", type=click.Path(dir_okay=False),
              help="Check against the versions and cases of this store too  [default: the instance's store, "
                   "when linting the instance's own definitions]")
def lint_command(paths: tuple[Path, ...], store_path: str | None) -> None:
    """Check definitions (a directory, or single files) and print every problem as file:line:col; against a
    store, also changes made without a new version and running cases a migration would strand."""
    home = Path(os.environ.get("CIVICFLOW_HOME", ROOT))
    if store_path and not _store_exists(store_path):
        raise click.BadParameter(f"no store at {store_path}", param_hint="--store")
    targets = paths or (home,)
    failed = False
    for target in targets:
        root, only = _definitions_root(target)
        found = lint_definitions(root, warnings=True)  # old spellings are warnings: said, and lint passes
        problems = [p for p in found if not p.warning]
        warnings = [p for p in found if p.warning]
        store = store_path or (_instance_store() if root == home.resolve() else None)
        if not problems and store:
            problems = _store_problems(root, store)
        whole_ok = not problems
        if only is not None:
            rel = str(only.relative_to(root))
            problems = [p for p in problems if p.file == rel]
            warnings = [p for p in warnings if p.file == rel]
        for problem in sorted(problems + warnings, key=lambda p: (p.file, p.line, p.col, p.warning)):
            click.echo(f"{root / problem.file if not Path(problem.file).is_absolute() else problem.file}"
                       f"{str(problem)[len(problem.file):]}")
        failed = failed or bool(problems)
        if not problems:
            if whole_ok:
                _calendar_warnings(root, only)
            click.echo(f"{target}: ok")
    if failed:
        sys.exit(1)


cli.add_command(import_command)  # spreadsheets in and out: no app, no store
cli.add_command(export_command)
cli.add_command(db_group)  # `db copy` opens the stores it is given: no app, no definitions needed


# -- civicflow db upgrade: the PostgreSQL schema (kept in its own block; `db` may gain more commands) --------


@db_group.command("upgrade")
@click.option("--url", default=None, metavar="URL",
              help="postgresql://user:password@host:5432/dbname  [default: CIVICFLOW_DATABASE_URL]")
def db_upgrade_command(url: str | None) -> None:
    """Bring the database's schema to this Civicflow's version (idempotent; safe while others run it too)."""
    from ..store import pg_migrations
    from ..store.postgres_store import connect, database_errors, describe

    url = url or settings.database_url(os.environ)
    if not url:
        raise click.UsageError("no database: set CIVICFLOW_DATABASE_URL or give --url")
    if not url.startswith(settings.DATABASE_SCHEMES):
        raise click.BadParameter("must be a postgresql:// URL", param_hint="--url")
    try:
        conn = connect(url)
        try:
            with database_errors():
                before, after = pg_migrations.upgrade(conn)
        finally:
            conn.close()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if before == after:
        click.echo(f"{describe(url)}: schema already at version {after}, nothing to do")
    else:
        click.echo(f"{describe(url)}: schema upgraded from version {before} to {after}")


# Commands that need the app (its definitions and store) are registered on every app's ``app.cli`` by
# ``init_app``, so ``civicflow ...``, ``flask --app engine.web ...`` and tests' ``app.test_cli_runner()`` share them.
@click.group("user")
def user_group() -> None:
    """Manage users."""


@user_group.command("add")
@with_appcontext
@click.argument("username")
@click.option("--name", default="", help="Display name, e.g. 王芳")
@click.option("--role", "roles", multiple=True, required=True, help="A role from org/roles.yaml (repeatable)")
@click.option("--unit", required=True, help="An org unit id from org/units.yaml")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh")
def user_add(username: str, name: str, roles: tuple[str, ...], unit: str, password: str, lang: str) -> None:
    """Add a user (or replace the password and roles of an existing one)."""
    engine = get_engine()
    unknown = [r for r in roles if r not in engine.definitions.roles]
    if unknown:
        raise click.BadParameter(f"unknown role(s) {', '.join(unknown)}; known: {', '.join(engine.definitions.roles)}")
    if unit not in engine.definitions.org.units:
        raise click.BadParameter(f"unknown org unit {unit!r}; known: {', '.join(engine.definitions.org.units)}")
    problems = password_problems(password, username)
    if problems:
        raise click.BadParameter(" ".join(p["en"] for p in problems), param_hint="--password")
    save_user(User(username, name or username, roles, unit, hash_password(password), lang))
    click.echo(f"user {username} saved")


def save_user(user: User) -> None:
    store = get_engine().store
    with store.transaction() as tx:
        existing = tx.first(USERS, ("username", user.username))
        if existing:
            tx.replace(USERS, existing["id"], {**user.to_doc(), "id": existing["id"]})
        else:
            tx.insert(USERS, user.to_doc())


@user_group.command("list")
@with_appcontext
def user_list() -> None:
    for doc in get_engine().store.search(USERS):
        inactive = "  (deactivated)" if doc.get("active", True) is False else ""
        click.echo(f"{doc['username']:<12} {doc.get('name', ''):<8} {','.join(doc['roles']):<40} {doc['org_unit']}{inactive}")


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Load the demo users (demo/users.yaml) and demo cases (demo/cases/*.yaml) into an empty instance only."""
    engine = get_engine()
    if engine.store.count(USERS) or engine.store.count(CASES):
        click.echo("the instance has data already: demo data not loaded")
        return
    folder = Path(current_app.config["DEFINITIONS"]) / "demo"
    doc = YAML(typ="safe").load((folder / "users.yaml").read_text(encoding="utf-8"))
    password = doc["password"]
    hashed = hash_password(password)  # one hash for the shared demo password: hashing is slow on purpose
    for item in doc["users"]:
        save_user(User(item["username"], item["name"], tuple(item["roles"]), item["unit"], hashed))
    click.echo(f"loaded {len(doc['users'])} demo users (password: {password})")
    try:
        count = load_demo(engine, folder / "cases")
    except DemoError as exc:
        click.echo(f"demo cases could not be loaded: {exc}", err=True)
        sys.exit(1)
    click.echo(f"loaded {count} demo cases")


@click.command("migrate")
@with_appcontext
@click.argument("workflow")
@click.option("--dry-run", is_flag=True, help="Show what would change per case; change nothing")
def migrate_command(workflow: str, dry_run: bool) -> None:
    """Move the running cases of the versions WORKFLOW's migrate: names to its current version, all or none."""
    engine = get_engine()
    wf = engine.definitions.workflows.get(workflow)
    if wf is None:
        raise click.BadParameter(f"unknown workflow {workflow!r}; known: {', '.join(engine.definitions.workflows)}")
    if not wf.migrations:
        click.echo(f"{workflow} (version {wf.version}) declares no migrate: nothing to move")
        return
    found = migration.plan(engine, workflow)
    if dry_run or found.stranded:
        for item in found.moves:
            click.echo(item.describe(wf.version))
        if found.stranded:
            ids = ", ".join(f"#{m.case_id}" for m in found.stranded)
            click.echo(f"refused: {len(found.stranded)} case(s) would be stranded ({ids}); nothing changed", err=True)
            sys.exit(1)
        click.echo(f"dry run: {len(found.moves)} case(s) would move to version {wf.version}; nothing changed")
        return
    try:
        done = migration.apply(engine, workflow)
    except migration.MigrationRefused as exc:  # a case moved into a stranded state since the plan above
        for item in exc.plan.stranded:
            click.echo(item.describe(wf.version))
        click.echo(str(exc), err=True)
        sys.exit(1)
    except EngineError as exc:  # e.g. what entering a renamed state refuses: the transaction wrote nothing
        click.echo(f"migration of {workflow} failed, nothing changed: {exc}", err=True)
        sys.exit(1)
    for item in done.moves:
        click.echo(item.describe(wf.version))
    click.echo(f"{len(done.moves)} case(s) moved to version {wf.version}, each with a history entry")


@click.command("tick")
@with_appcontext
def tick_command() -> None:
    """Run every due timer once and send the webhooks that are due (idempotent: safe from cron while the web
    app runs)."""
    engine = get_engine()
    fired = engine.tick()
    for item in fired:
        click.echo(f"case #{item['case']}: {item['kind']}" + (f" -> {item['transition']}" if item["transition"] else ""))
    click.echo(f"{len(fired)} timer(s) fired")
    sent = Deliverer(engine.store, engine.clock,
                     channels=current_app.extensions.get("civicflow_channels")).deliver_due(limit=500)
    if any(sent.values()):
        click.echo("webhooks: " + ", ".join(f"{n} {what}" for what, n in sent.items()))


@click.command("verify")
@with_appcontext
def verify_command() -> None:
    """Check the points ledger and the publication record: print the first broken link, exit 1 if any."""
    broken = ledger.verify(get_engine().store)
    for problem in broken:
        click.echo(f"BROKEN {problem}")
    if broken:
        sys.exit(1)
    store = get_engine().store
    click.echo(f"ok: {store.count(ledger.LEDGER)} ledger entries, {store.count(ledger.PUBLICATIONS)} publications, "
               "every link intact")


@click.command("serve")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface)")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free port)")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Worker threads  [default: CIVICFLOW_THREADS, else 8]")
def serve_command(host: str, port: int, threads: int | None) -> None:
    """Serve the app with the production server (waitress), timers and a request log on stderr."""
    server.serve(current_app._get_current_object(), host=host, port=port,  # type: ignore[attr-defined]
                 threads=threads or settings.threads(os.environ))


def init_app(app: Any) -> None:
    for command in (serve_command, user_group, demo_command, migrate_command, tick_command, verify_command,
                    backup_command, restore_command):
        app.cli.add_command(command)


def main() -> None:
    """Entry point: a broken definition prints its problems and exits 1, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except DefinitionError as exc:
        click.echo(f"Civicflow cannot start: {len(exc.problems)} problem(s) in the definitions:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        click.echo("Fix them (see docs/definitions.md) and run again; `civicflow lint` checks without starting.", err=True)
        sys.exit(1)
    except SettingsError as exc:
        click.echo(f"Civicflow cannot start: {exc}", err=True)
        sys.exit(1)
    except CorruptStoreError as exc:
        click.echo(f"Civicflow cannot start: {exc}", err=True)
        click.echo("To restore a backup instead, move the store's files aside (the file and its .journal and "
                   ".offsets) and run `civicflow restore BACKUP` into the empty instance.", err=True)
        sys.exit(1)
    except StoreError as exc:
        click.echo(f"Civicflow cannot start: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
