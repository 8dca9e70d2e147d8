"""Civicflow's pages under the production server, next to a Flask hello world, at 1k / 10k / 100k cases.

    python bench/http.py [--sizes 1000 10000 100000] [--duration 10] [--threads 4]

For each size: build or reuse an instance (bench/instance.py), start the app under waitress
(bench/serve_app.py; ``civicflow serve`` when it exists) and the hello world (bench/hello.py) under the
same server with the same threads, then measure in the same run with ``wrk -t2 -c8 -d<D>s --latency``:
hello world, /login, the inbox as staff and as secretary, a list page with a filter, a case page,
/public, /dashboard, CSV and XLSX export. A page slower than 2 s for one request is measured instead by
a few sequential requests with a timeout (marked ``seq``). Then, over HTTP with CSRF, a sequential client
submits a start form and takes one transition, 40 times (p50/p99). Also: server start time (spawn until
/login answers 200) and resident memory after the runs.

Prints markdown tables and writes them to bench/results/http-<timestamp>.md. Figures are relative to the
hello world and /login measured in the same run; absolute numbers depend on the machine.

Needs ``wrk`` (Debian: ``apt-get install -y wrk``) and ``waitress`` (a project dependency).
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where this file would hide the standard
# library's ``http`` package (urllib and Flask import it): take the folder off, import bench modules by package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import datetime as dt
import http.cookiejar
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import instance  # noqa: E402
from bench.serve_app import cli_serve_available  # noqa: E402

from engine.loader import load_definitions  # noqa: E402

PASSWORD = instance.PASSWORD
SLOW = 2.0  # seconds for one request: above this, wrk is replaced by a few sequential requests


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    start_seconds: float

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        """VmRSS of the server process and its children."""
        total = 0
        pids = [self.proc.pid]
        while pids:
            pid = pids.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pids += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, AttributeError):
                continue
        return total / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(name: str, args: list[str], env: dict[str, str], probe: str, timeout: float, log_path: Path) -> Server:
    port = free_port()
    out = open(log_path, "wb")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "serve_app.py"), "--port", str(port), *args],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}{probe}"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{name} server exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            pass
        if time.perf_counter() - started > timeout:
            proc.kill()
            raise SystemExit(f"{name} server did not answer {probe} within {timeout:.0f}s; see {log_path}")
        time.sleep(0.05)
    return Server(name, proc, port, time.perf_counter() - started)


# ----------------------------------------------------------------------------- an HTTP client with a session

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Client:
    """A browser-like session: cookies kept, CSRF token read from pages, redirects not followed."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, data: list[tuple[str, str]] | None = None, timeout: float = 120) -> tuple[int, str, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body)
        try:
            with self.opener.open(req, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace"), response.headers.get("Location", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace"), exc.headers.get("Location", "")

    @staticmethod
    def csrf(page: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if not found:
            raise SystemExit("no csrf_token on the page")
        return found.group(1)

    def login(self, username: str) -> None:
        status, page, _ = self.request("/login")
        status, _, _ = self.request("/login", [("csrf_token", self.csrf(page)), ("username", username),
                                               ("password", PASSWORD), ("next", "")])
        if status != 302:
            raise SystemExit(f"login as {username} failed: HTTP {status}")

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


# ----------------------------------------------------------------------------- measuring

@dataclass
class Result:
    page: str
    rps: float | None
    p50: float | None   # ms
    p99: float | None   # ms
    note: str = ""


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def run_wrk(url: str, cookie: str, duration: int) -> Result:
    cmd = ["wrk", "-t2", "-c8", f"-d{duration}s", "--latency", "--timeout", "30s", url]
    if cookie:
        cmd[1:1] = ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    notes = []
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        notes.append(f"{m.group(1)} non-2xx")
    if m := re.search(r"Socket errors: (.*)", out):
        notes.append(f"socket errors: {m.group(1)}")
    total = re.search(r"(\d+) requests in", out)
    if total and int(total.group(1)) < 50:
        notes.append(f"only {total.group(1)} requests")
    return Result("", rps, p50, p99, "; ".join(notes))


def timed_get(url: str, cookie: str, timeout: float) -> tuple[float | None, int]:
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, socket.timeout, TimeoutError):
        return None, 0
    return time.perf_counter() - started, status


def measure(page: str, url: str, cookie: str, duration: int, seq_requests: int, seq_timeout: float) -> Result:
    # The first request warms up what the app builds once (templates, caches); it is not counted unless the
    # page is so slow that warming up is noise next to it.
    first, status = timed_get(url, cookie, seq_timeout)
    if first is not None and first <= 10 * SLOW:
        first, status = timed_get(url, cookie, seq_timeout)
    if first is not None and status != 200:
        log(f"  {page}: HTTP {status}")
    if first is not None and first <= SLOW:
        result = run_wrk(url, cookie, duration)
    else:
        samples = [first] if first is not None else []
        timeouts = 0 if first is not None else 1
        for _ in range(seq_requests - 1 if first is not None else 0):
            took, _ = timed_get(url, cookie, seq_timeout)
            if took is None:
                timeouts += 1
                break
            samples.append(took)
        if not samples:
            result = Result("", None, None, None, f"seq: timeout > {seq_timeout:.0f} s")
        else:
            ms = sorted(s * 1000 for s in samples)
            note = f"seq: {len(samples)} requests" + (f", {timeouts} timeout > {seq_timeout:.0f} s" if timeouts else "")
            result = Result("", 1000 / statistics.mean(ms), statistics.median(ms), ms[-1], note)
    if status not in (0, 200):
        result.note = "; ".join(filter(None, [result.note, f"HTTP {status}"]))
    result.page = page
    log(f"  {page:<28} {fmt(result.rps)} req/s  p50 {fmt(result.p50)} ms  p99 {fmt(result.p99)} ms  {result.note}")
    return result


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def form_post_values(definitions: Any, form_id: str, unit: str, rng: random.Random) -> list[tuple[str, str]]:
    """Valid-looking HTML form input for a start form of simple fields, as a browser would post it."""
    form = definitions.forms[form_id]
    org = definitions.org
    out: list[tuple[str, str]] = []
    for f in form.fields:
        if f.compute is not None or (not f.required and f.type not in ("select",)):
            continue
        if f.type == "multiselect":
            out.append((f.id, f.choices[0].value))
        elif f.type == "select":
            out.append((f.id, rng.choice(f.choices).value))
        elif f.type == "checkbox":
            out.append((f.id, "on"))
        elif f.type == "orgunit":
            units = [u.id for u in org.at_level(f.level) if org.contains(unit, u.id)] or [u.id for u in org.at_level(f.level)]
            out.append((f.id, units[0]))
        elif f.type == "date":
            out.append((f.id, dt.date.today().isoformat()))
        elif f.type == "phone":
            out.append((f.id, f"139{rng.randrange(10**8):08d}"))
        elif f.type in ("integer", "number", "score", "rating"):
            out.append((f.id, str(int(f.min or 1))))
        else:
            out.append((f.id, ("入户走访记录" * 10)[: max(f.min_length or 4, 4)][: f.max_length or 30]))
    return out


def measure_write(server: Server, definitions: Any, iterations: int) -> list[Result]:
    """Start a visit log as staff, then archive it: two POSTs with CSRF per iteration, sequentially."""
    client = Client(server.base)
    client.login("staff")
    status, page, _ = client.request("/start/visit_log")
    if status != 200:
        return [Result("write: start visit_log", None, None, None, f"GET form: HTTP {status}")]
    token = client.csrf(page)
    rng = random.Random(1)
    values = form_post_values(definitions, definitions.workflows["visit_log"].start_form, "renjia", rng)
    starts, moves = [], []
    for _ in range(iterations):
        began = time.perf_counter()
        status, body, location = client.request("/start/visit_log", [("csrf_token", token), *values])
        starts.append((time.perf_counter() - began) * 1000)
        found = re.search(r"/cases/(\d+)", location)
        if status != 302 or not found:
            errors = re.findall(r'class="error[^"]*"[^>]*>([^<]+)<', body)[:3]
            return [Result("write: start visit_log", None, None, None, f"HTTP {status} {errors}")]
        case_id = found.group(1)
        began = time.perf_counter()
        status, _, _ = client.request(f"/cases/{case_id}/do/archive", [("csrf_token", token), ("comment", "")])
        moves.append((time.perf_counter() - began) * 1000)
        if status != 302:
            return [Result("write: transition archive", None, None, None, f"HTTP {status}")]
    status, page, _ = client.request(f"/cases/{case_id}")
    archived = tr_title(definitions, "visit_log", "archived")
    if status != 200 or archived not in page:  # the writes really happened: the last case shows its new state
        return [Result("write: start + transition", None, None, None, f"case #{case_id} not '{archived}': HTTP {status}")]
    return [Result("write: start (POST, seq)", 1000 / statistics.mean(starts), statistics.median(starts),
                   percentile(starts, 0.99), f"seq: {iterations}"),
            Result("write: transition (POST, seq)", 1000 / statistics.mean(moves), statistics.median(moves),
                   percentile(moves, 0.99), f"seq: {iterations}")]


def tr_title(definitions: Any, workflow: str, state: str) -> str:
    title = definitions.workflows[workflow].states[state].title
    return title.get("zh", "") if isinstance(title, dict) else str(title)


def pick_list_filter(definitions: Any) -> tuple[str, str]:
    """A workflow with declared list filters and one select filter set to its first choice."""
    ordered = sorted(definitions.workflows.values(), key=lambda wf: wf.id != "service_order")
    for wf in ordered:
        form = definitions.forms[wf.start_form]
        for name in wf.listing.filters:
            f = form.field(name)
            if f is not None and f.type == "select" and f.choices:
                return wf.id, urllib.parse.urlencode({f.id: f.choices[0].value})
    raise SystemExit("no workflow declares a select list filter")


# ----------------------------------------------------------------------------- one size

@dataclass
class SizeRun:
    size: int
    results: list[Result]
    start_seconds: float
    rss_mb: float
    hello_rss_mb: float
    hello_start: float
    load: str  # the machine's load average before and after: other work on the machine skews every figure


def run_size(size: int, args: argparse.Namespace, use_cli: bool, definitions: Any, logs: Path) -> SizeRun:
    directory = instance.build(size)
    load_before = os.getloadavg()[0]
    env = {**os.environ, "CIVICFLOW_INSTANCE": str(directory), "PYTHONUNBUFFERED": "1"}
    threads = ["--threads", str(args.threads)]
    hello = start_server("hello", ["--app", "hello", *threads], env, "/", 60, logs / f"hello-{size}.log")
    app = None
    try:
        log(f"size {size}: starting the app ({directory.name})")
        app = start_server("civicflow", ["--app", "civicflow", "--cli", "yes" if use_cli else "no", *threads], env,
                           "/login", args.start_timeout, logs / f"app-{size}.log")
        log(f"size {size}: app answered /login after {app.start_seconds:.1f}s")
        staff, secretary = Client(app.base), Client(app.base)
        staff.login("staff")
        secretary.login("secretary")
        wf_id, query = pick_list_filter(definitions)
        _, listing, _ = staff.request(f"/workflows/{wf_id}?{query}", timeout=args.seq_timeout)
        case_ids = re.findall(r'href="/cases/(\d+)"', listing)
        if not case_ids:
            _, listing, _ = staff.request(f"/workflows/{wf_id}", timeout=args.seq_timeout)
            case_ids = re.findall(r'href="/cases/(\d+)"', listing)
        pages: list[tuple[str, str, str]] = [
            ("hello world", hello.base + "/", ""),
            ("/login", app.base + "/login", ""),
            ("/ inbox (staff)", app.base + "/", staff.cookie_header()),
            ("/ inbox (secretary)", app.base + "/", secretary.cookie_header()),
            (f"/workflows/{wf_id}?{query}", app.base + f"/workflows/{wf_id}?{query}", staff.cookie_header()),
        ]
        if case_ids:
            pages.append(("/cases/<id> (staff)", app.base + f"/cases/{case_ids[0]}", staff.cookie_header()))
        pages += [
            ("/public", app.base + "/public", ""),
            ("/dashboard (staff)", app.base + "/dashboard", staff.cookie_header()),
            (f"/workflows/{wf_id}/export.csv", app.base + f"/workflows/{wf_id}/export.csv", staff.cookie_header()),
            (f"/workflows/{wf_id}/export.xlsx", app.base + f"/workflows/{wf_id}/export.xlsx", staff.cookie_header()),
        ]
        if args.only:
            pages = [p for p in pages if p[0] in ("hello world", "/login") or any(o in p[0] for o in args.only)]
        results = [measure(name, url, cookie, args.duration, args.seq_requests, args.seq_timeout)
                   for name, url, cookie in pages]
        if not args.no_write:
            results += measure_write(app, definitions, args.iterations)
            for r in results[-2:]:
                log(f"  {r.page:<28} p50 {fmt(r.p50)} ms  p99 {fmt(r.p99)} ms  {r.note}")
        return SizeRun(size, results, app.start_seconds, app.rss_mb(), hello.rss_mb(), hello.start_seconds,
                       f"{load_before:.1f} → {os.getloadavg()[0]:.1f}")
    finally:
        if app is not None:
            app.stop()
        hello.stop()


# ----------------------------------------------------------------------------- report

def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def pct(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "—"
    return f"{100 * value / base:.1f} %"


def size_table(run: SizeRun) -> str:
    by = {r.page: r for r in run.results}
    hello, login = by.get("hello world"), by.get("/login")
    lines = [f"### {run.size:,} cases", "",
             "| page | req/s | % of hello world | % of /login | p50 ms | p99 ms | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in run.results:
        lines.append(f"| {r.page} | {fmt(r.rps)} | {pct(r.rps, hello.rps if hello else None)} | "
                     f"{pct(r.rps, login.rps if login else None)} | {fmt(r.p50)} | {fmt(r.p99)} | {r.note} |")
    return "\n".join(lines)


def ratio(big: float | None, small: float | None) -> str:
    if big is None or not small:
        return "—"
    return f"{big / small:.2f}×"


def _method(result: Result) -> str:
    return "seq" if result.note.startswith("seq") else "wrk"


def compare_table(small: SizeRun, big: SizeRun) -> str:
    lines = [f"### {big.size:,} vs {small.size:,} cases (ratio {big.size:,} / {small.size:,})", "",
             "| page | req/s ratio | p50 ratio | p99 ratio | method |", "|---|---:|---:|---:|---|"]
    small_by = {r.page: r for r in small.results}
    for r in big.results:
        s = small_by.get(r.page)
        if s is not None:
            method = f"{_method(s)} → {_method(r)}"  # wrk latencies include queueing behind 8 connections
            lines.append(f"| {r.page} | {ratio(r.rps, s.rps)} | {ratio(r.p50, s.p50)} | {ratio(r.p99, s.p99)} | {method} |")
    return "\n".join(lines)


def server_table(runs: list[SizeRun]) -> str:
    lines = ["### Server start and memory", "",
             "| cases | app start s (spawn → /login 200) | app RSS MB (after the runs) | hello start s | hello RSS MB "
             "| load average (1 min) before → after |",
             "|---:|---:|---:|---:|---:|---|"]
    for run in runs:
        lines.append(f"| {run.size:,} | {run.start_seconds:.1f} | {run.rss_mb:.0f} | {run.hello_start:.1f} | {run.hello_rss_mb:.0f} | {run.load} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per page")
    parser.add_argument("--threads", type=int, default=4, help="waitress threads, for the app and the hello world")
    parser.add_argument("--iterations", type=int, default=40, help="start + transition rounds of the write test")
    parser.add_argument("--seq-requests", type=int, default=3, help="requests for a page slower than 2 s")
    parser.add_argument("--seq-timeout", type=float, default=60, help="per-request timeout (s) for slow pages")
    parser.add_argument("--start-timeout", type=float, default=900, help="seconds the app may take to start")
    parser.add_argument("--only", nargs="*", help="measure only pages whose name contains one of these")
    parser.add_argument("--no-write", action="store_true", help="skip the start + transition test")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench/http.py needs wrk: apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS)")
    try:
        import waitress  # noqa: F401
    except ImportError:
        raise SystemExit("bench/http.py needs waitress: pip install 'waitress>=3,<4' (a project dependency)") from None
    definitions = load_definitions(ROOT)
    with tempfile.TemporaryDirectory() as empty:
        use_cli = cli_serve_available({**os.environ, "CIVICFLOW_INSTANCE": empty})
    log(f"server: {'python -m engine.web.cli serve' if use_cli else 'bench/serve_app.py: waitress.serve(create_app())'}"
        f", {args.threads} threads; wrk -t2 -c8 -d{args.duration}s")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = instance.RESULTS / f"http-{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs = [run_size(size, args, use_cli, definitions, logs) for size in args.sizes]
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    header = [f"# HTTP bench {stamp} (commit {git})", "",
              f"Server: {'civicflow serve' if use_cli else 'waitress.serve(create_app())'} with {args.threads} threads; "
              f"hello world: Flask under the same waitress settings. Load: wrk -t2 -c8 -d{args.duration}s --latency, "
              f"logged-in pages with the session cookie. `seq`: slower than {SLOW:.0f} s per request, so measured by "
              f"a few sequential requests (req/s = 1 / mean). Machine: {os.cpu_count()} CPUs; read the ratios, not "
              "the absolute figures.", ""]
    body = [size_table(run) for run in runs]
    if len(runs) > 1:
        body.append(compare_table(min(runs, key=lambda r: r.size), max(runs, key=lambda r: r.size)))
    body.append(server_table(runs))
    text = "\n".join(header) + "\n" + "\n\n".join(body) + "\n"
    print(text)
    out = instance.RESULTS / f"http-{stamp}.md"
    out.write_text(text, encoding="utf-8")
    log(f"written to {out}")


if __name__ == "__main__":
    main()
