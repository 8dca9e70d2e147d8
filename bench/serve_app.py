"""Serve Civicflow (or the hello world) under waitress for the HTTP bench.

    CIVICFLOW_INSTANCE=dir python bench/serve_app.py --app civicflow --port 5100 --threads 4
    python bench/serve_app.py --app hello --port 5101 --threads 4
    python bench/serve_app.py --app civicflow --port 5102 --server gunicorn --workers 2 --threads 4

For Civicflow it prefers the project's own production command, ``python -m engine.web.cli serve``,
when that exists (it replaces this process, so the pid the bench watches stays the server's);
otherwise it calls ``waitress.serve(create_app(), ...)`` itself.

``--server gunicorn`` replaces this process with gunicorn (``gthread`` workers, ``--preload``: the app is
built once and forked, so every worker answers from the first request and start time is one app build),
the same way for the app and the hello world, so the two are compared under the same settings.
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would hide the standard library's ``http`` package from Flask: take this folder off sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import subprocess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cli_serve_available(env: dict[str, str] | None = None) -> bool:
    """Whether ``civicflow serve`` exists (and takes --threads).

    Asking may build the app (Flask's CLI looks for unknown commands on it), so the bench asks once,
    with an empty instance, and passes ``--cli yes/no``: the answer is not part of the start time.
    """
    probe = subprocess.run([sys.executable, "-m", "engine.web.cli", "serve", "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, env=env)
    return probe.returncode == 0 and "--threads" in probe.stdout


def exec_gunicorn(app: str, host: str, port: int, workers: int, threads: int) -> None:
    """Become ``gunicorn`` serving the app or the hello world (the pid the bench watches stays the server's).

    A long timeout: at 100k cases a page may take many seconds, and a killed worker would be measured as
    an error rather than as a slow page."""
    target = "bench.hello:app" if app == "hello" else "engine.web:create_app()"
    os.chdir(ROOT)
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers),
                              "--worker-class", "gthread", "--threads", str(threads), "--preload",
                              "--timeout", "600", "--graceful-timeout", "5", "--log-level", "warning", target])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--app", choices=["civicflow", "hello"], default="civicflow")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--cli", choices=["auto", "yes", "no"], default="auto",
                        help="use `civicflow serve` (auto: if it exists; the bench decides once, beforehand)")
    parser.add_argument("--server", choices=["waitress", "gunicorn"], default="waitress")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    args = parser.parse_args()
    if args.server == "gunicorn":
        exec_gunicorn(args.app, args.host, args.port, args.workers, args.threads)
    import waitress

    if args.app == "hello":
        from bench.hello import app
        waitress.serve(app, host=args.host, port=args.port, threads=args.threads, _quiet=True)
        return
    if args.cli == "yes" or (args.cli == "auto" and cli_serve_available()):
        print("serve_app: using `python -m engine.web.cli serve`", file=sys.stderr, flush=True)
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "engine.web.cli", "serve", "--host", args.host,
                                  "--port", str(args.port), "--threads", str(args.threads)])
    from engine.web import create_app
    waitress.serve(create_app(), host=args.host, port=args.port, threads=args.threads, _quiet=True)


if __name__ == "__main__":
    main()
