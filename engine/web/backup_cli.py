"""The ``civicflow backup DEST``, ``restore SRC`` and ``db copy --from SRC --to DST`` commands.

The logic is in :mod:`engine.backup` and :mod:`engine.transfer` (any store, no Flask); these commands only pick the stores and print.
``backup`` and ``restore`` work on the instance's own store and uploads (the app's configuration, so the
same environment as ``civicflow serve``); ``db copy`` needs no app, only two stores, so it also runs where
the definitions are absent or broken.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import backup as backups
from .. import transfer
from ..store import open_store
from ..store.base import Store
from ..store.memory import StoreError
from . import get_engine


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.command("backup")
@with_appcontext
@click.argument("dest", type=click.Path(path_type=Path))
def backup_command(dest: Path) -> None:
    """Write a consistent backup (store and uploads) to the new directory DEST; safe while the app serves."""
    try:
        manifest = backups.backup(get_engine().store, dest, current_app.config["UPLOADS"])
    except (transfer.TransferError, StoreError) as exc:
        raise _fail(exc) from exc
    click.echo(f"backup written to {dest} and checked: {manifest.summary()}")


@click.command("restore")
@with_appcontext
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace what the store holds (refused by default unless it is empty)")
def restore_command(src: Path, force: bool) -> None:
    """Check the backup SRC whole, then replace the instance's store (and add its uploads) with it.

    Stop the app first: a restore refuses a TinyDB store another process has open.
    """
    try:
        manifest = backups.restore(get_engine().store, src, current_app.config["UPLOADS"], force=force)
    except (transfer.TransferError, StoreError) as exc:
        raise _fail(exc) from exc
    click.echo(f"restored from {src}: {manifest.summary()}; counts and both ledger chains verified")


@click.group("db")
def db_group() -> None:
    """Move data between stores."""


def shown(where: str) -> str:
    """``where`` as it may be printed: a URL's password replaced by ``***``."""
    parts = urlsplit(where)
    if "://" not in where or parts.password is None:
        return where
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _open(where: str, role: str) -> Store:
    path = os.path.expanduser(where)
    if "://" not in where and where not in ("memory", "memory:") and role == "source" \
            and not os.path.exists(path) and not os.path.exists(path + ".journal"):  # a store not compacted yet
        raise click.ClickException(f"the source {shown(where)} does not exist")
    try:
        return open_store(where)
    except (StoreError, OSError, ValueError) as exc:
        raise click.ClickException(f"cannot open the {role} {shown(where)}: {exc}") from exc


@db_group.command("copy")
@click.option("--from", "source", required=True, metavar="SRC", help="A TinyDB store file or a store URL")
@click.option("--to", "target", required=True, metavar="DST", help="A TinyDB store file or a store URL")
@click.option("--force", "--into-nonempty", "force", is_flag=True,
              help="Copy into a target that holds data (what the source does not have is deleted)")
def db_copy(source: str, target: str, force: bool) -> None:
    """Copy every table (cases, users, ledgers, notifications, uploads' metadata...) from SRC to DST, ids
    kept, then check counts and both ledger chains on DST. Uploaded files themselves are not copied."""
    if "://" not in source and "://" not in target and \
            os.path.realpath(os.path.expanduser(source)) == os.path.realpath(os.path.expanduser(target)):
        raise click.ClickException("--from and --to name the same store")
    src = _open(source, "source")
    try:
        dst = _open(target, "target")
        try:
            copied = transfer.copy_store(src, dst, force=force)
        except (transfer.TransferError, StoreError) as exc:
            raise _fail(exc) from exc
        finally:
            dst.close()
    finally:
        src.close()
    total = sum(copied.values())
    click.echo(f"copied {total} documents in {len(copied)} tables from {shown(source)} to {shown(target)}; "
               f"counts and both ledger chains verified")
