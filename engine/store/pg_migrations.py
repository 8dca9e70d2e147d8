"""The PostgreSQL store's schema, as numbered migrations, and the check that a database is at this code's version.

Each migration is SQL applied in one transaction together with the row that records it in
``cf_schema_version``, so a database is always at exactly one version and a failed upgrade changes nothing.
Migrations are only ever appended (never edited once released): a database made by an older Civicflow
reaches the current schema by applying the ones it lacks, in order. ``civicflow db upgrade`` applies them;
opening a store only *checks* (:func:`check`), because changing a shared database's schema is an
operator's decision, taken once, not something every app process should race to do at start.
"""
from __future__ import annotations

from typing import Any

from engine.store.memory import StoreError

#: Serialises upgrades (and nothing else): two ``db upgrade`` runs at once apply each migration once.
UPGRADE_LOCK = 0x43465F5550  # "CF_UP"

#: ``(version, sql)`` in order. The tables (prefixed ``cf_`` so they can share a database schema):
#:
#: ``cf_docs``        every document: logical table, id, the document as JSONB
#: ``cf_last_ids``    the highest id ever used per logical table (ids are never handed out twice)
#: ``cf_indexes``     which index or tally is built, on which table, at which version (NULL: stale), and
#:                    how many times a tally's sums changed (``serial``, from version 2)
#: ``cf_entries``     index entries: (index, key, order, document); the primary key is the B-tree lookups walk
#: ``cf_tally_docs``  what each document adds to a tally (so a replace or delete takes exactly that away)
#: ``cf_tally_sums``  each tally's sum per key
#:
#: Keys are JSON text and order values bytes whose byte order is Python's order (``engine.store.pg_indexes``),
#: both ``COLLATE "C"``/bytea so comparisons are plain byte comparisons, whatever the database's locale.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE cf_docs (
    tbl text COLLATE "C" NOT NULL,
    id bigint NOT NULL,
    doc jsonb NOT NULL,
    PRIMARY KEY (tbl, id)
);
CREATE TABLE cf_last_ids (
    tbl text COLLATE "C" PRIMARY KEY,
    last_id bigint NOT NULL
);
CREATE TABLE cf_indexes (
    name text COLLATE "C" PRIMARY KEY,
    tbl text COLLATE "C" NOT NULL,
    kind text NOT NULL,
    version text
);
CREATE TABLE cf_entries (
    idx text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    ord bytea NOT NULL,
    doc_id bigint NOT NULL,
    PRIMARY KEY (idx, key, ord, doc_id)
);
CREATE INDEX cf_entries_by_doc ON cf_entries (idx, doc_id);
CREATE TABLE cf_tally_docs (
    tally text COLLATE "C" NOT NULL,
    doc_id bigint NOT NULL,
    pairs jsonb NOT NULL,
    PRIMARY KEY (tally, doc_id)
);
CREATE TABLE cf_tally_sums (
    tally text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    total numeric NOT NULL,
    PRIMARY KEY (tally, key)
);
"""),
    # ``serial`` counts the changes of a tally's sums (bumped in the same statement as the sums), so a process
    # keeps a tally it read and reads it again only once another write changed it (``PostgresStore.totals``).
    (2, """
ALTER TABLE cf_indexes ADD COLUMN serial bigint NOT NULL DEFAULT 0;
"""),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]


class SchemaError(StoreError):
    """The database's schema is not the one this Civicflow needs (the message says what to run)."""


def current_version(conn: Any) -> int:
    """The version a database is at; 0 for an empty database (no ``cf_schema_version`` table)."""
    row = conn.execute("SELECT to_regclass('cf_schema_version') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM cf_schema_version").fetchone()
    return int(row[0] or 0)


def check(conn: Any) -> None:
    """Raise :class:`SchemaError` with a sentence saying what to do unless the database is at ``SCHEMA_VERSION``."""
    version = current_version(conn)
    if version < SCHEMA_VERSION:
        raise SchemaError(f"database schema is at version {version}, this Civicflow needs {SCHEMA_VERSION}: "
                          f"run `civicflow db upgrade`")
    if version > SCHEMA_VERSION:
        raise SchemaError(f"database schema is at version {version}, newer than this Civicflow knows "
                          f"({SCHEMA_VERSION}): run the newer Civicflow that upgraded it")


def upgrade(conn: Any) -> tuple[int, int]:
    """Apply the migrations ``conn``'s database lacks, each in its own transaction; ``(from, to)`` versions.

    Idempotent: at the current version it does nothing. ``conn`` must be in autocommit mode (each migration
    is its own transaction, so a failure keeps the ones before it).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS cf_schema_version ("
                     "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    start = current_version(conn)
    if start > SCHEMA_VERSION:
        check(conn)
    for version, sql in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
            if current_version(conn) >= version:
                continue  # another upgrade applied it meanwhile
            conn.execute(sql)
            conn.execute("INSERT INTO cf_schema_version (version) VALUES (%s)", (version,))
    return start, current_version(conn)
