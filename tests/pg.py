"""A real PostgreSQL server for the tests: started once per session from Debian's packages, one fresh database
per test, stopped at the end.

The server runs from a temporary data directory on a free local port (``initdb`` refuses to run as root, so
as root it runs as the ``postgres`` user). Durability settings are off (``fsync``, ``synchronous_commit``,
``full_page_writes``): the tests check what the store does, not the disk. A migrated template database
makes each test's database a cheap ``CREATE DATABASE … TEMPLATE``. Missing binaries fail the tests with a
sentence saying how to install them: there is no skip.
"""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from engine.store import pg_migrations

TEMPLATE = "cf_template"
USER = "civicflow"


def find_bin() -> Path:
    """The newest installed server binaries (Debian: /usr/lib/postgresql/<major>/bin), or a clear error."""
    override = os.environ.get("CIVICFLOW_TEST_PG_BIN")
    candidates = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                                     key=lambda p: int(Path(p).parent.name))[::-1]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise RuntimeError("the tests need a PostgreSQL server (initdb and pg_ctl under /usr/lib/postgresql/*/bin, "
                       "or CIVICFLOW_TEST_PG_BIN): install it with `apt-get install postgresql` "
                       "(`make test` does that by itself)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One running server; :meth:`database` makes a fresh database and gives its URL."""

    def __init__(self, durable: bool = False) -> None:
        """``durable``: keep PostgreSQL's default fsync and commit settings (benchmarks measure real writes)."""
        self.bin = find_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="civicflow-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self._serial = 0
        self._free: list[str] = []
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync",
                  "--locale=C.UTF-8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        atexit.register(self.stop)  # also when the session ends without running its teardown
        try:
            self.admin = psycopg.connect(self.url("postgres"), autocommit=True)
            self.admin.execute(f"CREATE DATABASE {TEMPLATE}")
            with psycopg.connect(self.url(TEMPLATE), autocommit=True) as conn:
                pg_migrations.upgrade(conn)
        except BaseException:
            self.stop()
            raise

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            log = self.dir / "log"
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                               + (f"\n{log.read_text()[-2000:]}" if log.exists() else ""))

    def url(self, dbname: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def database(self, migrated: bool = True) -> str:
        """A new, empty database (with the current schema unless ``migrated`` is False); its URL."""
        self._serial += 1
        name = f"t{self._serial}"
        self.admin.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY" + (f" TEMPLATE {TEMPLATE}" if migrated else ""))
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a database made by :meth:`database` (closing whatever connections are still open on it)."""
        self.admin.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def lease(self) -> str:
        """A migrated database holding no data: one given back by :meth:`give_back`, else a new one.

        Emptying the tables (about a millisecond) is what makes one database per test affordable; a new
        database from the template costs 0.1-0.4 s here."""
        return self._free.pop() if self._free else self.database()

    def give_back(self, url: str) -> None:
        """End every session still open on the database (a test may leak a store), empty it, keep it."""
        name = url.rsplit("/", 1)[1]
        self.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        with psycopg.connect(url, autocommit=True) as conn:
            tables = [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'cf_schema_version'")]
            conn.execute("; ".join(f"DELETE FROM {t}" for t in tables))
            versions = [row[0] for row in conn.execute("SELECT version FROM cf_schema_version ORDER BY version")]
        if versions == [v for v, _sql in pg_migrations.MIGRATIONS]:
            self._free.append(url)
        else:  # the test changed the schema's record: not fresh any more
            self.drop(url)

    def stop(self) -> None:
        if not self.data.exists():
            return
        admin = getattr(self, "admin", None)
        if admin is not None:
            admin.close()
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            for _ in range(20):
                try:
                    shutil.rmtree(self.dir)
                    break
                except OSError:
                    time.sleep(0.1)
