"""``lxflex``: the command-line client of lxflexd (storage commands in lxc's syntax).

Exit codes: 0 done; 1 the daemon refused the request or an operation failed (its message
on stderr); 2 a usage error; 3 no daemon answers where it should be.
"""

from __future__ import annotations

from typing import Any

import click

from .. import __version__
from .connection import DaemonError, Unreachable
from .storage import storage

__all__ = ["main"]

EXIT_REFUSED, EXIT_UNREACHABLE = 1, 3


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DaemonError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_REFUSED)
        except Unreachable as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_UNREACHABLE)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lxflex")
def main() -> None:
    """Manage PowerFlex storage pools and volumes through lxflexd.

    The daemon is the one in $LXFLEX_DIR (or $LXD_DIR), else /var/lib/lxflex; a REMOTE:
    prefix names a remote added with `lxc remote add`. Shell completion: add
    `eval "$(_LXFLEX_COMPLETE=bash_source lxflex)"` to ~/.bashrc (zsh_source, fish_source
    for the others).
    """


main.add_command(storage)
