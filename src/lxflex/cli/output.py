"""Printing what the daemon answers: lists in lxc's formats, objects as YAML, progress."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
import yaml
from rich import box
from rich.console import Console
from rich.table import Table

__all__ = ["FORMATS", "Column", "Progress", "dump_yaml", "print_list"]

FORMATS = ("table", "json", "yaml", "csv", "compact")

Column = tuple[str, Callable[[dict[str, Any]], str]]


def dump_yaml(doc: Any) -> str:
    text: str = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return text


def print_list(items: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: str) -> None:
    """``items`` (whole objects) as a table of ``columns``, or whole in JSON or YAML."""
    if fmt == "json":
        click.echo(json.dumps(list(items)))
        return
    if fmt == "yaml":
        click.echo(dump_yaml(list(items)), nl=False)
        return
    rows = [[get(item) for _, get in columns] for item in items]
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        click.echo(out.getvalue(), nl=False)
        return
    table = Table(
        box=None if fmt == "compact" else box.ASCII2,
        show_lines=fmt != "compact",
        header_style="",
        pad_edge=fmt != "compact",
    )
    for title, _ in columns:
        table.add_column(title, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(width=200 if not sys.stdout.isatty() else None, highlight=False).print(table)


class Progress:
    """One status line on stderr while an operation runs, on a terminal only."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.shown = False
        self.enabled = sys.stderr.isatty()

    def __call__(self, metadata: dict[str, Any]) -> None:
        if not self.enabled:
            return
        text = next((str(v) for k, v in metadata.items() if k.endswith("_progress") and v), "")
        if text:
            click.echo(f"\r\033[K{self.title}: {text}", nl=False, err=True)
            self.shown = True

    def transfer(self, done: int, total: int) -> None:
        """Bytes sent or received so far (of ``total``, when known)."""
        if self.enabled:
            of = f" of {total / 2**20:.1f}MiB" if total else ""
            click.echo(f"\r\033[K{self.title}: {done / 2**20:.1f}MiB{of}", nl=False, err=True)
            self.shown = True

    def done(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False, err=True)
