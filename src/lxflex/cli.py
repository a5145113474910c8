"""``lxflex``: the command-line client of lxflexd (storage commands in lxc's syntax)."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lxflex")
def main() -> None:
    """Manage PowerFlex storage pools and volumes through lxflexd.

    The storage commands (lxflex storage ..., lxflex storage volume ...) arrive with the
    daemon. Today the package provides the gateway simulator (lxflex-sim) and a short
    end-to-end demonstration (lxflex-demo).
    """
