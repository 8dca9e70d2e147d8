"""``civicflow import-xlsform`` and ``export-xlsform``: forms designed in a spreadsheet in and out
(the work is done by :mod:`engine.xlsform`). Neither needs the app or the store."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from ruamel.yaml import YAML

from ..errors import DefinitionError
from ..loader import load_definitions
from ..xlsform import XLSFormError, export_xlsform, import_xlsform
from . import ROOT


def _home() -> Path:
    return Path(os.environ.get("CIVICFLOW_HOME", ROOT))


def _report(notes: list) -> None:
    if notes:
        click.echo(f"{len(notes)} thing(s) not carried over:")
        for note in notes:
            click.echo(f"  {note}")


@click.command("import-xlsform")
@click.argument("workbook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--definitions", "root", type=click.Path(file_okay=False, path_type=Path),
              help="The definitions directory to write forms/<id>.yaml into  [default: the instance's]")
@click.option("--replace", is_flag=True, help="Overwrite forms/<id>.yaml if it exists")
def import_command(workbook: Path, root: Path | None, replace: bool) -> None:
    """Write forms/<id>.yaml from an XLSForm (.xlsx with survey, choices and settings sheets), if the form it
    makes passes `civicflow lint`; print what could not be carried over and why."""
    root = root or _home()
    try:
        imported = import_xlsform(workbook.read_bytes(), workbook.name, root, replace=replace)
    except XLSFormError as exc:
        click.echo(f"{workbook}: {exc}", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    click.echo(f"{imported.path}: form {imported.form_id} written (lint: ok)")
    _report(imported.notes)


def _description(root: Path, file: str) -> object:
    """The form's ``description`` as written in its file (the loaded spec keeps only what pages use)."""
    path = Path(file) if Path(file).is_absolute() else root / file
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("description") if isinstance(data, dict) else None


@click.command("export-xlsform")
@click.argument("form_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the workbook  [default: <form id>.xlsx]")
@click.option("--definitions", "root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The definitions directory  [default: the instance's]")
def export_command(form_id: str, output: Path | None, root: Path | None) -> None:
    """Write a form as an XLSForm workbook (to edit in a spreadsheet, or for ODK/KoboToolbox)."""
    try:
        definitions = load_definitions(root or _home())
    except DefinitionError as exc:
        click.echo(f"the definitions have {len(exc.problems)} problem(s); run `civicflow lint`", err=True)
        sys.exit(1)
    form = definitions.forms.get(form_id)
    if form is None:
        raise click.BadParameter(f"no form {form_id!r}; forms: {', '.join(sorted(definitions.forms))}",
                                 param_hint="FORM_ID")
    data, notes = export_xlsform(form, _description(root or _home(), form.file))
    output = output or Path(f"{form_id}.xlsx")
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(output)
    click.echo(f"{output}: form {form_id} written")
    _report(notes)
