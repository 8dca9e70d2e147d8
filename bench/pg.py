"""Civicflow's pages on PostgreSQL under gunicorn with 1, 2 and 4 workers, next to TinyDB, in the same run.

    python bench/pg.py [--sizes 100000] [--duration 5] [--workers 1 2 4] [--threads 4] [--tinydb-gunicorn]

For each size: build or reuse the bench instance (bench/instance.py), start a throwaway PostgreSQL 15 from
Debian's packages (tests/pg.py's ``PgServer``, with durable settings: fsync and synchronous commit on, as
the TinyDB store fsyncs too) on a free port in a temporary directory, create the schema with
``civicflow db upgrade --url`` and copy the instance's TinyDB file into it with ``civicflow db copy``.
Then measure, one server at a time, each column:

- TinyDB under waitress (``bench/serve_app.py``, as bench/http.py does): the baseline;
- PostgreSQL under gunicorn with N ``gthread`` workers (``--preload``), for each N of ``--workers``;
- with ``--tinydb-gunicorn``: the TinyDB store under the same gunicorn settings too.

Each column has its own Flask hello world under the same server settings (same worker count), measured just
before the app, and its pages are given as req/s and % of that hello world. The pages are bench/http.py's
(its ``measure`` with ``wrk -t2 -c8``; its ``measure_write`` for start + transition over HTTP with CSRF):
the inbox as staff, a list with a filter, a case page, /public, /dashboard, and write latency p50/p99.
Scaling rows: req/s with N workers divided by req/s with the fewest workers, per page.

Every server gets the same ``CIVICFLOW_SECRET_KEY`` (sessions made by one worker are read by another)
and ``CIVICFLOW_TICK_SECONDS=0`` (no timers in the background while measuring). Prints one markdown table
per size and writes them to bench/results/pg-<timestamp>.md. PostgreSQL and every server are stopped at
the end, also on Ctrl+C or SIGTERM.

Needs ``wrk``, ``gunicorn`` (the ``bench`` extra: ``pip install -e '.[bench]'``) and PostgreSQL's server
binaries (``apt-get install -y postgresql``).
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide the standard
# library's ``http`` package: take the folder off, import bench modules by package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import datetime as dt
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import instance  # noqa: E402
from bench.http import Client, Result, Server, fmt, log, measure, measure_write, pick_list_filter, start_server  # noqa: E402
from bench.serve_app import cli_serve_available  # noqa: E402

from engine.loader import load_definitions  # noqa: E402


@dataclass
class Column:
    """One way of serving the app: a store, a server, a number of worker processes."""

    label: str
    store: str          # "tinydb" or "pg"
    server: str         # "waitress" or "gunicorn"
    workers: int
    hello: Result | None = None
    results: dict[str, Result] = field(default_factory=dict)
    start_seconds: float | None = None
    rss_mb: float | None = None
    failure: str = ""

    def serve_args(self, threads: int) -> list[str]:
        return ["--server", self.server, "--workers", str(self.workers), "--threads", str(threads)]

    def app_args(self, threads: int, use_cli: bool) -> list[str]:
        """Under waitress, ``civicflow serve`` when it exists (as bench/http.py does); gunicorn serves create_app()."""
        cli = "yes" if use_cli and self.server == "waitress" else "no"
        return ["--app", "civicflow", "--cli", cli, *self.serve_args(threads)]


@dataclass
class SizeRun:
    size: int
    columns: list[Column]
    pages: list[str]
    copy_seconds: float
    load: str


# ----------------------------------------------------------------------------- PostgreSQL

def start_postgres() -> Any:
    """A running throwaway PostgreSQL (tests/pg.py), or a sentence saying what to install."""
    from tests.pg import PgServer

    try:
        return PgServer(durable=True)
    except RuntimeError as exc:
        raise SystemExit(f"bench/pg.py: {exc}") from None


def cli(*args: str, env: dict[str, str], timeout: float) -> str:
    """Run ``civicflow <args>`` (the project's own command) and return its output, or stop with its message."""
    done = subprocess.run([sys.executable, "-m", "engine.web.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"civicflow {args[0]} {args[1]} failed ({done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout.strip()


def load_database(pg: Any, directory: Path, env: dict[str, str]) -> tuple[str, float]:
    """A new database with the schema (``db upgrade``) holding a copy of the instance (``db copy``)."""
    url = pg.database(migrated=False)
    log(cli("db", "upgrade", "--url", url, env=env, timeout=120))
    started = time.perf_counter()
    log(cli("db", "copy", "--from", str(directory / "civicflow.json"), "--to", url, env=env, timeout=3600))
    seconds = time.perf_counter() - started
    log(f"copy: {seconds:.1f}s")
    return url, seconds


# ----------------------------------------------------------------------------- one column

def pick_search_filter(definitions: Any) -> tuple[str, str]:
    """A workflow whose list filters hold a text field and a date field: search the text for "RE" (in any
    case: the bench instance's texts hold "Residents", "raised") and the date from a year ago. Neither is an
    index key, so the store must filter (PostgreSQL: in SQL; before: a Python scan of the workflow's cases)."""
    since = (dt.date.today() - dt.timedelta(days=365)).isoformat()
    for wf in sorted(definitions.workflows.values(), key=lambda w: w.id):
        form = definitions.forms[wf.start_form]
        fields = [form.field(name) for name in wf.listing.filters]
        text = next((f for f in fields if f is not None and f.type == "text"), None)
        date = next((f for f in fields if f is not None and f.type == "date"), None)
        if text is not None and date is not None:
            return wf.id, urllib.parse.urlencode({text.id: "RE", f"{date.id}_from": since})
    raise SystemExit("no workflow declares a text and a date list filter")


def pages_of(base: str, staff: Client, case_id: str | None, wf_id: str, query: str,
             search: tuple[str, str] | None = None) -> list[tuple[str, str, str]]:
    cookie = staff.cookie_header()
    pages = [("/ inbox (staff)", base + "/", cookie),
             (f"/workflows/{wf_id}?{query}", base + f"/workflows/{wf_id}?{query}", cookie)]
    if search is not None:
        path = f"/workflows/{search[0]}?{search[1]}"
        pages.append((f"{path} (search)", base + path, cookie))
    if case_id:
        pages.append(("/cases/<id> (staff)", base + f"/cases/{case_id}", cookie))
    pages += [("/public", base + "/public", ""), ("/dashboard (staff)", base + "/dashboard", cookie)]
    return pages


def first_case(client: Client, wf_id: str, query: str, timeout: float) -> str | None:
    """A case id from the filtered list (else the whole list): the case page every column measures."""
    for path in (f"/workflows/{wf_id}?{query}", f"/workflows/{wf_id}"):
        _, listing, _ = client.request(path, timeout=timeout)
        if ids := re.findall(r'href="/cases/(\d+)"', listing):
            return ids[0]
    return None


def run_column(column: Column, env: dict[str, str], args: argparse.Namespace, definitions: Any, logs: Path,
               size: int, case_id: list[str | None]) -> None:
    """Hello world, then the app, under the column's server settings; fills ``column`` (failures noted)."""
    tag = f"{size}-{column.store}-{column.server}-w{column.workers}"
    log(f"size {size}: {column.label}")
    hello = start_server("hello", ["--app", "hello", *column.serve_args(args.threads)], env, "/", 60,
                         logs / f"hello-{tag}.log")
    try:
        column.hello = measure("hello world", hello.base + "/", "", args.duration, args.seq_requests,
                               args.seq_timeout)
    finally:
        hello.stop()
    app: Server | None = None
    try:
        app = start_server("civicflow", column.app_args(args.threads, args.use_cli), env,
                           "/login", args.start_timeout, logs / f"app-{tag}.log")
        column.start_seconds = app.start_seconds
        log(f"  app answered /login after {app.start_seconds:.1f}s")
        staff = Client(app.base)
        staff.login("staff")
        wf_id, query = pick_list_filter(definitions)
        if not case_id:  # the first column picks the case; the others show the same one (ids are copied)
            case_id.append(first_case(staff, wf_id, query, args.seq_timeout))
        for name, url, cookie in pages_of(app.base, staff, case_id[0], wf_id, query, pick_search_filter(definitions)):
            column.results[name] = measure(name, url, cookie, args.duration, args.seq_requests, args.seq_timeout)
        if args.iterations:
            for r in measure_write(app, definitions, args.iterations):
                column.results[r.page] = r
                log(f"  {r.page:<28} p50 {fmt(r.p50)} ms  p99 {fmt(r.p99)} ms  {r.note}")
        column.rss_mb = app.rss_mb()
    except SystemExit as exc:  # a server that does not start or a failed login: noted, the other columns go on
        column.failure = str(exc)
        log(f"  {column.label}: {exc}")
    finally:
        if app is not None:
            app.stop()


def run_size(size: int, args: argparse.Namespace, definitions: Any, logs: Path) -> SizeRun:
    directory = instance.build(size)
    load_before = os.getloadavg()[0]
    base_env = {**os.environ, "CIVICFLOW_INSTANCE": str(directory), "PYTHONUNBUFFERED": "1",
                "CIVICFLOW_SECRET_KEY": secrets.token_hex(32), "CIVICFLOW_TICK_SECONDS": "0"}
    base_env.pop("CIVICFLOW_DATABASE_URL", None)
    pg = start_postgres()
    try:
        url, copy_seconds = load_database(pg, directory, base_env)
        pg_env = {**base_env, "CIVICFLOW_DATABASE_URL": url}
        columns = [Column("TinyDB waitress", "tinydb", "waitress", 1)]
        if args.tinydb_gunicorn:
            columns += [Column(f"TinyDB w{n}", "tinydb", "gunicorn", n) for n in args.workers]
        columns += [Column(f"PG w{n}", "pg", "gunicorn", n) for n in args.workers]
        case_id: list[str | None] = []
        for column in columns:
            run_column(column, pg_env if column.store == "pg" else base_env, args, definitions, logs, size, case_id)
    finally:
        pg.stop()
    pages: list[str] = []
    for column in columns:
        pages += [p for p in column.results if p not in pages]
    return SizeRun(size, columns, pages, copy_seconds, f"{load_before:.1f} → {os.getloadavg()[0]:.1f}")


# ----------------------------------------------------------------------------- report

def cell(result: Result | None, hello: Result | None) -> str:
    if result is None or result.rps is None:
        return "—" if result is None else f"— ({result.note})"
    share = f" ({100 * result.rps / hello.rps:.0f} %)" if hello is not None and hello.rps else ""
    seq = " seq" if result.note.startswith("seq") else ""
    return f"{fmt(result.rps)}{share}{seq}"


def groups(columns: list[Column]) -> list[list[Column]]:
    """The gunicorn columns of each store with two or more worker counts: what scaling is computed over."""
    out = []
    for store in ("tinydb", "pg"):
        group = [c for c in columns if c.store == store and c.server == "gunicorn"]
        if len(group) > 1:
            out.append(group)
    return out


def short(column: Column) -> str:
    return "PG" if column.store == "pg" else "TinyDB"


def scaling(columns: list[Column], page: str | None) -> list[str]:
    """req/s with N workers over req/s with the fewest, per store (``page`` None: the hello world)."""

    def rps(c: Column) -> float | None:
        r = c.hello if page is None else c.results.get(page)
        return r.rps if r is not None else None

    cells = []
    for group in groups(columns):
        low = rps(group[0])
        cells += [f"{rps(c) / low:.2f}×" if rps(c) and low else "—" for c in group[1:]]
    return cells


def size_table(run: SizeRun) -> str:
    cols = run.columns
    scale_heads = [f"{short(c)} w{c.workers}/w{g[0].workers}" for g in groups(cols) for c in g[1:]]
    heads = ["page", *[c.label for c in cols], *scale_heads]
    blank = " |" * len(scale_heads)
    lines = [f"### {run.size:,} cases", "",
             "req/s (% of the hello world under the same server and worker count); write rows: p50 / p99 ms; "
             "scaling columns: req/s ratio.", "",
             "| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]

    def row(name: str, cells: list[str], scale: list[str] | None = None) -> None:
        lines.append(f"| {name} | " + " | ".join(cells) + " |" + ("".join(f" {s} |" for s in scale) if scale else blank))

    row("hello world", [cell(c.hello, None) for c in cols], scaling(cols, None))
    for page in run.pages:
        if not page.startswith("write:"):
            row(page, [cell(c.results.get(page), c.hello) for c in cols], scaling(cols, page))
    for page in run.pages:
        if page.startswith("write:"):
            values = []
            for c in cols:
                r = c.results.get(page)
                values.append(f"{fmt(r.p50)} / {fmt(r.p99)}" if r is not None and r.p50 is not None
                              else ("—" if r is None else f"— ({r.note})"))
            row(f"{page} p50 / p99 ms", values)
    row("app start s (spawn → /login 200)",
        [f"{c.start_seconds:.1f}" if c.start_seconds is not None else "—" for c in cols])
    row("app RSS MB (all processes, after the runs)", [f"{c.rss_mb:.0f}" if c.rss_mb is not None else "—" for c in cols])
    failures = [f"- {c.label}: {c.failure}" for c in cols if c.failure]
    notes = ["", f"Copy into PostgreSQL (`civicflow db copy`, with its checks): {run.copy_seconds:.1f} s. "
                 f"Load average (1 min) before → after: {run.load}."]
    return "\n".join(lines + notes + ([""] + failures if failures else []))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100000])
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per page")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4], help="gunicorn worker counts")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (waitress threads for the baseline)")
    parser.add_argument("--iterations", type=int, default=40, help="start + transition rounds of the write test (0: none)")
    parser.add_argument("--seq-requests", type=int, default=3, help="requests for a page slower than 2 s")
    parser.add_argument("--seq-timeout", type=float, default=60, help="per-request timeout (s) for slow pages")
    parser.add_argument("--start-timeout", type=float, default=900, help="seconds the app may take to start")
    parser.add_argument("--tinydb-gunicorn", action="store_true", help="also TinyDB under gunicorn with --workers")
    parser.add_argument("--out", type=Path, default=None, help="where to write the table [bench/results/pg-<timestamp>.md]")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.workers) or args.threads < 1 or args.duration < 1:
        parser.error("--workers, --threads and --duration must be at least 1")
    if shutil.which("wrk") is None:
        raise SystemExit("bench/pg.py needs wrk: apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS)")
    for module, hint in (("gunicorn", "pip install -e '.[bench]'"), ("psycopg", "pip install -e '.[postgres]'")):
        try:
            __import__(module)
        except ImportError:
            raise SystemExit(f"bench/pg.py needs {module}: {hint}") from None
    # SIGTERM ends the run like Ctrl+C does, so the finally blocks and atexit stop the servers and PostgreSQL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    definitions = load_definitions(ROOT)
    with tempfile.TemporaryDirectory() as empty:
        args.use_cli = cli_serve_available({**os.environ, "CIVICFLOW_INSTANCE": empty})
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = instance.RESULTS / f"pg-{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log(f"gunicorn gthread, {args.threads} threads per worker, workers {args.workers}; wrk -t2 -c8 -d{args.duration}s")
    runs = [run_size(size, args, definitions, logs) for size in args.sizes]
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    header = [f"# PostgreSQL HTTP bench {stamp} (commit {git})", "",
              f"TinyDB waitress: {'civicflow serve' if args.use_cli else 'waitress.serve(create_app())'} "
              f"({args.threads} threads), the TinyDB store. "
              f"PG wN / TinyDB wN: gunicorn --preload, N gthread workers of {args.threads} threads, on a throwaway "
              "PostgreSQL 15 (fsync on) loaded with `civicflow db copy` / on the TinyDB file. Hello world: Flask "
              f"under the same server and worker count, measured just before the app. Load: wrk -t2 -c8 "
              f"-d{args.duration}s --latency, logged-in pages with the session cookie; `seq`: slower than 2 s per "
              "request, measured by a few sequential requests. Writes: a sequential client over HTTP with CSRF, "
              f"{args.iterations} rounds. Machine: {os.cpu_count()} CPUs (more workers than CPUs cannot scale "
              "further); read the ratios, not the absolute figures.", ""]
    text = "\n".join(header) + "\n" + "\n\n".join(size_table(run) for run in runs) + "\n"
    print(text)
    out = args.out or instance.RESULTS / f"pg-{stamp}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    log(f"written to {out}")


if __name__ == "__main__":
    main()
