"""Where a page's time goes, in process: cProfile over N requests of each page through Flask's test client.

    python bench/profile_page.py [--size 1000] [--requests 200] [--pages login inbox ...] [--top 25]
                                 [--sort tottime|cumulative] [--out bench/results/profile-<page>.prof]

On a copy of the bench instance of ``--size`` cases (bench/instance.py builds it when missing, so the data is
the one bench/http.py measures), ``create_app()`` without timers, a test client logged in as staff (and one as
secretary), the same pages bench/http.py measures. For each page: the mean time per request without and with
the profiler, then the top functions. No server and no network: what is left is the app's own work (a page
under waitress adds the server's share, the same for every page, which bench/http.py's hello world measures).
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would hide the standard library's ``http`` package from Flask: take this folder off sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import cProfile
import io
import os
import pstats
import re
import shutil
import tempfile
import time
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import instance  # noqa: E402

PAGES = ("login", "inbox", "inbox-secretary", "list", "case", "public", "dashboard", "csv", "xlsx")


def login(client: Any, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post("/login", data={"csrf_token": token, "username": username,
                                           "password": instance.PASSWORD, "next": ""})
    if response.status_code != 302:
        raise SystemExit(f"login as {username} failed: HTTP {response.status_code}")


def page_urls(app: Any, staff: Any) -> dict[str, str]:
    from bench.http import pick_list_filter  # the same list page and filter bench/http.py measures

    wf_id, query = pick_list_filter(app.extensions["civicflow"].definitions)
    listing = staff.get(f"/workflows/{wf_id}?{query}").get_data(as_text=True)
    case_ids = re.findall(r'href="/cases/(\d+)"', listing)
    urls = {"login": "/login", "inbox": "/", "inbox-secretary": "/", "list": f"/workflows/{wf_id}?{query}",
            "public": "/public", "dashboard": "/dashboard", "csv": f"/workflows/{wf_id}/export.csv",
            "xlsx": f"/workflows/{wf_id}/export.xlsx"}
    if case_ids:
        urls["case"] = f"/cases/{case_ids[0]}"
    return urls


def run(client: Any, url: str, n: int) -> tuple[float, float]:
    """Wall and CPU ms per request (CPU time moves less than wall time on a machine shared with other work)."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        response = client.get(url)
        response.get_data()
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}")
    return (time.perf_counter() - started) / n * 1000, (time.process_time() - cpu) / n * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200, help="requests per page (profiled and timed each)")
    parser.add_argument("--pages", nargs="+", choices=PAGES, default=list(PAGES))
    parser.add_argument("--repeat", type=int, default=1,
                        help="time the page this many times (--requests each) and keep the fastest: on a shared machine "
                             "the minimum is the figure least skewed by other work")
    parser.add_argument("--top", type=int, default=25, help="functions shown per page (0: timings only, no profile)")
    parser.add_argument("--sort", choices=["tottime", "cumulative"], default="tottime")
    parser.add_argument("--out", help="also write each page's profile to this path (with -<page> before .prof)")
    args = parser.parse_args(argv)
    source = instance.build(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "instance"
        shutil.copytree(source, copy)  # logins write to the store: leave the cached instance as it was
        os.environ["CIVICFLOW_INSTANCE"] = str(copy)
        from engine.web import create_app

        app = create_app(start_timers=False)
        clients = {"staff": app.test_client(), "secretary": app.test_client(), "anonymous": app.test_client(use_cookies=False)}  # as wrk: no cookie
        login(clients["staff"], "staff")
        login(clients["secretary"], "secretary")
        urls = page_urls(app, clients["staff"])
        for name in args.pages:
            if name not in urls:
                print(f"## {name}: no case on the list page, skipped\n")
                continue
            client = clients["anonymous" if name in ("login", "public") else
                             "secretary" if name == "inbox-secretary" else "staff"]
            run(client, urls[name], 3)  # warm-up: templates compiled, caches filled
            timings = [run(client, urls[name], args.requests) for _ in range(max(1, args.repeat))]
            plain = (min(t[0] for t in timings), min(t[1] for t in timings))
            if not args.top:
                print(f"## {name} {urls[name]}: {plain[0]:.2f} ms per request, CPU {plain[1]:.2f} ms, "
                      f"fastest of {len(timings)} x {args.requests} requests")
                continue
            profiler = cProfile.Profile()
            profiler.enable()
            profiled = run(client, urls[name], args.requests)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
            print(f"## {name} {urls[name]}: {plain[0]:.2f} ms per request, CPU {plain[1]:.2f} ms "
                  f"({profiled[0]:.2f} ms under the profiler), {args.requests} requests")
            print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))
            print()
            if args.out:
                stats.dump_stats(re.sub(r"(\.prof)?$", f"-{name}.prof", args.out, count=1))
        app.extensions["civicflow"].store.close()


if __name__ == "__main__":
    main()
