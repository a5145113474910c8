"""``lxflexd``: the storage daemon serving the LXD storage REST API."""

from __future__ import annotations

import click

from . import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lxflexd")
def main() -> None:
    """Serve the storage part of the LXD REST API on PowerFlex (not yet available).

    The daemon is built on the gateway client (lxflex.powerflex) and tested against the
    simulator (lxflex-sim); until it lands, this command only prints this help.
    """
    click.echo(click.get_current_context().get_help())
