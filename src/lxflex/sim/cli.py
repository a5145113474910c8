"""``lxflex-sim``: run the PowerFlex gateway simulator in the foreground."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import click

from .server import API_VERSIONS, DEFAULT_ADMIN_PASSWORD, SimConfig, Simulator

PASSWORD_ENV = "LXFLEX_SIM_ADMIN_PASSWORD"  # noqa: S105 - a variable name


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter("use HOST:PORT, for example 127.0.0.1:8443")
    return host.strip("[]") or "127.0.0.1", int(port)


def _password(path: Path | None) -> str:
    if path is not None:
        return path.read_text().strip()
    return os.environ.get(PASSWORD_ENV) or DEFAULT_ADMIN_PASSWORD


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--listen",
    default="127.0.0.1:0",
    show_default=True,
    help="HOST:PORT to serve on; port 0 picks a free port.",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory for the array's state and volume data; reused on restart.",
)
@click.option(
    "--api-version",
    type=click.Choice(API_VERSIONS),
    default="4.5",
    show_default=True,
    help="Gateway generation to emulate (login scheme, error codes, granularity).",
)
@click.option(
    "--tls", is_flag=True, help="Serve HTTPS with a self-signed certificate in STATE_DIR/tls."
)
@click.option(
    "--tls-cert", type=click.Path(path_type=Path, exists=True), help="PEM certificate to serve."
)
@click.option(
    "--tls-key", type=click.Path(path_type=Path, exists=True), help="PEM key of --tls-cert."
)
@click.option(
    "--topology",
    type=click.Path(path_type=Path, exists=True),
    help="JSON topology replacing the default (first start only).",
)
@click.option(
    "--admin-password-file",
    type=click.Path(path_type=Path, exists=True),
    help=f"File holding the admin password; else ${PASSWORD_ENV}; "
    f"else the default {DEFAULT_ADMIN_PASSWORD!r}.",
)
@click.option("--token-lifetime", type=float, help="Token lifetime in seconds.")
@click.option("--token-idle", type=float, help="Idle expiry of tokens in seconds.")
@click.option("--no-fabric", is_flag=True, help="Do not emulate the host fabric (no loop devices).")
@click.option(
    "--fabric-devices",
    type=click.Choice(["loop", "file"]),
    default="loop",
    show_default=True,
    help="What a host's by-id links lead to: loop devices (root), or the backing files "
    "themselves (no root; no partitions).",
)
@click.option(
    "--by-id-dir",
    type=click.Path(path_type=Path),
    help="by-id directory of the emulated local host.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(
    listen: str,
    state_dir: Path,
    api_version: str,
    tls: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    topology: Path | None,
    admin_password_file: Path | None,
    token_lifetime: float | None,
    token_idle: float | None,
    no_fabric: bool,
    fabric_devices: str,
    by_id_dir: Path | None,
    verbose: bool,
) -> None:
    """Serve a stateful PowerFlex gateway simulator until interrupted.

    The admin password is read from a file or the environment, never from the command
    line. Control endpoints live under /_sim/ (see the README). On exit every loop device
    the fabric emulation attached is detached.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    host, port = _listen(listen)
    config = SimConfig(
        state_dir=state_dir,
        api_version=api_version,
        admin_password=_password(admin_password_file),
        host=host,
        port=port,
        tls=tls or tls_cert is not None,
        tls_cert=tls_cert,
        tls_key=tls_key,
        topology=topology,
        token_lifetime=token_lifetime,
        token_idle=token_idle,
        fabric=not no_fabric,
        fabric_devices=fabric_devices,
        by_id_dir=by_id_dir,
    )
    asyncio.run(_serve(config))


async def _serve(config: SimConfig) -> None:
    sim = Simulator(config)
    url = await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps(sim.info()), flush=True)
    print(f"lxflex-sim serving {url}; Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
