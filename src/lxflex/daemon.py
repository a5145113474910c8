"""``lxflexd``: the storage daemon serving the storage part of the LXD REST API."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import grp
import logging
import os
import secrets
import signal
import socket
import time
from contextlib import AsyncExitStack
from pathlib import Path

import click
from aiohttp import web

from . import __version__
from .api import servercert
from .api.join import DATABASE_FILE, JoinError, JoinToken, accept_token
from .api.server import build_app
from .api.trust import HTTPS
from .driver.errors import DriverError, InvalidRequest
from .embedded import embedded
from .host.lxd import LxdClient, LxdError, find_socket
from .host.nvme import NvmeConfig
from .service import DEFAULT_OFFLINE_THRESHOLD, ClusterSettings, HostSettings, Storage
from .state import DatabaseBusy

log = logging.getLogger("lxflex.daemon")

SIM_POOL = "powerflex"

# Young objects a collection waits for (CPython's default is 700), and the collections of
# one generation that trigger one of the next (10 by default).
GC_THRESHOLDS = (20_000, 50, 50)


def _socket_in_use(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _simulator_password(state_dir: Path) -> str:
    """The embedded simulator's admin password, kept (0600) so restarts reuse it."""
    path = state_dir / "sim" / "admin.password"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _simulator_port(state_dir: Path) -> int:
    """The port the embedded gateway used last time, if still free: pools store the
    gateway's address, so it must not change across restarts."""
    try:
        port = int((state_dir / "sim" / "port").read_text())
    except (OSError, ValueError):
        return 0
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            log.warning(
                "port %d of the embedded gateway is taken; pools on it need a new "
                "powerflex.gateway",
                port,
            )
            return 0
    return port


async def _open_storage(
    stack: AsyncExitStack,
    state_dir: Path,
    db_url: str | None,
    settings: HostSettings | None,
    cluster: ClusterSettings | None,
) -> Storage:
    """The service on this host (``settings``), or on the embedded simulator's emulated
    host when ``settings`` is None."""
    if settings is not None:
        storage = await Storage.open(settings, db_url, cluster=cluster)
        stack.push_async_callback(storage.close)
        return storage
    env = await stack.enter_async_context(
        embedded(
            state_dir,
            db_url=db_url,
            password=_simulator_password(state_dir),
            port=_simulator_port(state_dir),
        )
    )
    (state_dir / "sim" / "port").write_text(env.sim.url.rsplit(":", 1)[1] + "\n")
    existing = next((p for p in await env.storage.pools.all() if p.name == SIM_POOL), None)
    if existing is None:
        await env.storage.pools.create(
            SIM_POOL,
            "powerflex",
            env.pool_config(),
            "PowerFlex pool on the embedded simulator",
            password=env.secret,
        )
        log.info("created pool %r on the embedded simulator", SIM_POOL)
    elif existing.config.get("powerflex.gateway") != env.sim.url:
        await env.storage.pools.update(
            SIM_POOL, {**existing.config, "powerflex.gateway": env.sim.url}, existing.description
        )
    return env.storage


def tune_gc() -> None:
    """Keep the cyclic garbage collector out of request bursts; called once start-up is done.

    What start-up built (modules, the app, SQLAlchemy's metadata, caches) lives as long as
    the daemon, yet every full collection walked it: 80 ms of pause on a 2-vCPU test VM,
    inside a burst of 100 creates that takes 120. Freezing it takes it out of all later
    collections. Requests leave almost no cycles behind (collections found next to
    nothing to free), so collecting young objects every 20,000 instead of every 700 saves
    about a tenth of the daemon's CPU per request; the garbage a collection waits for
    stays a few MB at most.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def every_minute(storage: Storage) -> None:
    """Scheduled snapshots and snapshot expiry, just after the start of each minute."""
    while True:
        await asyncio.sleep(60.5 - time.time() % 60)
        try:
            taken, removed = await storage.scheduled(datetime.datetime.now(datetime.UTC))
        except Exception:
            log.exception("the scheduled snapshot pass failed")
            continue
        if taken or removed:
            log.info("scheduled: %d snapshot(s) taken, %d expired removed", taken, removed)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _claim_socket(state_dir: Path) -> Path:
    """The API socket's path in ``state_dir`` (made), which no other daemon serves."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o711)  # noqa: S103 - traversable so the socket group can reach it
    sock = state_dir / "unix.socket"
    if sock.exists():
        if _socket_in_use(sock):
            raise click.ClickException(f"another daemon serves {sock}")
        sock.unlink()
    return sock


async def _take_part(
    stack: AsyncExitStack,
    storage: Storage,
    state_dir: Path,
    cluster: ClusterSettings | None,
    offline_threshold: float,
    stop: asyncio.Event,
) -> ClusterSettings | None:
    """Join as the member ``cluster`` names, or as the member this server is (a start
    without the flags), and beat until the stack closes, or until a heartbeat finds
    this server removed, which sets ``stop``: the settings served; None for a
    standalone server (refused on a cluster's database)."""
    try:
        cluster = cluster or await storage.cluster.resume(offline_threshold)
        if cluster is None:
            return None
        certificate, _ = await asyncio.to_thread(servercert.read, state_dir)
        await storage.cluster.join(certificate)
        await _install_cluster_certificate(storage, state_dir)
    except DriverError as exc:
        raise click.ClickException(str(exc)) from None
    beating = asyncio.create_task(storage.cluster.heartbeats())

    def ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled():  # removed from the cluster: stop serving
            stop.set()

    beating.add_done_callback(ended)
    stack.push_async_callback(_cancelled, beating)
    return cluster


async def _install_cluster_certificate(storage: Storage, state_dir: Path) -> None:
    """The cluster certificate in ``state_dir``, to serve: the shared one, or (the first
    member) this server's own offer."""
    cert, key = await asyncio.to_thread(servercert.ensure, state_dir, "cluster")
    held = await storage.cluster.certificate(cert.read_text(), key.read_text())
    await asyncio.to_thread(servercert.install, state_dir, "cluster", *held)


async def serve(
    state_dir: Path,
    *,
    db_url: str | None,
    group: str | None,
    settings: HostSettings | None,
    https_address: str | None = None,
    cluster: ClusterSettings | None = None,
    join_token: JoinToken | None = None,
    offline_threshold: float = DEFAULT_OFFLINE_THRESHOLD,
    lxd_socket: str = "",
) -> None:
    sock = _claim_socket(state_dir)
    if join_token is not None:
        try:
            db_url = await accept_token(join_token, state_dir)
        except JoinError as exc:
            raise click.ClickException(f"cannot join the cluster: {exc}") from None
        log.info("joined with a token; the database URL is kept in %s", state_dir / DATABASE_FILE)
    async with AsyncExitStack() as stack:
        try:
            storage = await _open_storage(stack, state_dir, db_url, settings, cluster)
        except DatabaseBusy as exc:
            raise click.ClickException(str(exc)) from None
        await asyncio.to_thread(servercert.ensure, state_dir)  # /1.0 shows it from the start
        stop = asyncio.Event()
        cluster = await _take_part(stack, storage, state_dir, cluster, offline_threshold, stop)
        if not https_address and cluster is not None:
            https_address = cluster.address  # the members reach each other there
        await storage.recover()
        stack.push_async_callback(_cancelled, asyncio.create_task(every_minute(storage)))
        app = build_app(storage, state_dir=state_dir, https_address=https_address)
        if cluster is not None:
            await _follow_host_lxd(storage, lxd_socket, sock)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        configured = (await storage.trust.config()).get("core.https_address", "")
        assert runner.server is not None  # noqa: S101 - set up above
        try:
            await app[HTTPS].attach(runner.server, configured)
        except InvalidRequest as exc:
            if https_address is not None:
                raise click.ClickException(str(exc)) from None
            log.error("HTTPS is off: %s (fix core.https_address)", exc)
        site = web.UnixSite(runner, str(sock))
        await site.start()
        os.chmod(sock, 0o660)
        if group:
            os.chown(sock, -1, grp.getgrnam(group).gr_gid)
        log.info("lxflexd %s serving %s", __version__, sock)
        click.echo(f"lxflexd serving {sock}; LXD_DIR={state_dir} lxc storage list", err=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        tune_gc()
        await stop.wait()
        log.info("stopping")
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    if cluster is not None and not storage.cluster.member_still:
        raise click.ClickException(
            f"stopped: this server is no longer cluster member {cluster.name} (it was "
            "removed, and fenced); start it with --cluster-name and --cluster-address to "
            "join again"
        )


async def _follow_host_lxd(storage: Storage, given: str, own: Path) -> None:
    """In a cluster: follow this host's LXD or Incus, so that an instance moved or
    copied here from another member's host gets its volumes here."""
    if given == "none":
        return
    if given:
        found = Path(given)
    else:
        try:
            found = find_socket(besides=own)
        except LxdError:
            log.info("no LXD or Incus on this host: instances that arrive get no volumes")
            return
    client = LxdClient(found)
    try:
        environment = (await client.server()).get("environment") or {}
    except LxdError:
        environment = {}  # not up yet: followed once it is
    finally:
        await client.close()
    if environment.get("os_name") == "lxflex":  # $LXD_DIR naming an lxflexd's directory
        log.warning("%s is an lxflexd's socket, not LXD's: it is not followed", found)
        return
    log.info("following the LXD at %s for instances that arrive with volumes", found)
    storage.attachments.instances.watch(found)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lxflexd")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=Path("/var/lib/lxflex"),
    show_default=True,
    help="State directory; the API socket is STATE_DIR/unix.socket.",
)
@click.option(
    "--simulator",
    is_flag=True,
    help="Run an embedded PowerFlex simulator (state in STATE_DIR/sim) with a ready "
    f"pool named {SIM_POOL!r}.",
)
@click.option(
    "--db",
    "db_url",
    help="Database URL (default: SQLite in STATE_DIR; postgresql://...).",
    envvar="LXFLEX_DB",
)
@click.option("--group", help="Group allowed to use the socket (mode 0660).")
@click.option("--nvme", default="nvme", show_default=True, help="nvme-cli binary.")
@click.option(
    "--by-id-dir",
    type=click.Path(path_type=Path),
    default=Path("/dev/disk/by-id"),
    show_default=True,
    help="Where the kernel links block devices by ID.",
)
@click.option(
    "--sysfs",
    type=click.Path(path_type=Path),
    default=Path("/sys"),
    show_default=True,
    help="sysfs root (NVMe controllers).",
)
@click.option(
    "--host-root",
    type=click.Path(path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Root where mode discovery looks for kernel modules and drv_cfg.",
)
@click.option(
    "--https-address",
    help="Serve HTTPS on HOST:PORT ('' for none), whatever core.https_address says.",
)
@click.option(
    "--cluster-name",
    help="Serve as this member of a cluster (all members share --db postgresql://...).",
)
@click.option(
    "--cluster-address",
    help="HOST:PORT the other members reach this one at; HTTPS is served there.",
)
@click.option(
    "--join-token-file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Join a cluster with the token `lxc cluster add NAME` printed on a member, read "
    "from this file ('-': standard input); the database URL it gives is kept in "
    f"STATE_DIR/{DATABASE_FILE} for later starts.",
)
@click.option(
    "--offline-threshold",
    type=float,
    default=DEFAULT_OFFLINE_THRESHOLD,
    show_default=True,
    help="Seconds without a heartbeat before a member shows Offline (more than 10; give "
    "every member the same).",
)
@click.option(
    "--lxd-socket",
    default="",
    help="This host's LXD or Incus API socket, followed in a cluster so that an instance "
    "moved or copied here from another member's host gets its lxflex volumes here "
    "(default: found as `attach --instance` finds it; 'none': not followed).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(
    state_dir: Path,
    simulator: bool,
    db_url: str | None,
    group: str | None,
    https_address: str | None,
    cluster_name: str | None,
    cluster_address: str | None,
    join_token_file: Path | None,
    offline_threshold: float,
    nvme: str,
    by_id_dir: Path,
    sysfs: Path,
    host_root: Path,
    lxd_socket: str,
    verbose: bool,
) -> None:
    """Serve the storage part of the LXD REST API for Dell PowerFlex on a unix socket.

    Point lxc at it with LXD_DIR=STATE_DIR, or pylxd with Client(endpoint=STATE_DIR/unix.socket).
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # With --simulator the host is the simulator's emulated one: the host flags do not apply.
    settings = (
        None
        if simulator
        else HostSettings(
            state_dir=state_dir,
            nvme=NvmeConfig(nvme=nvme, by_id=by_id_dir, sys=sysfs),
            host_root=host_root,
        )
    )
    token = None
    if join_token_file is not None:
        token = _join_token(join_token_file, state_dir, db_url, cluster_name)
        cluster_name = token.server_name
    elif db_url is None and (state_dir / DATABASE_FILE).exists():
        db_url = (state_dir / DATABASE_FILE).read_text().strip()  # joined by token
    cluster = None
    if cluster_name or cluster_address:
        if not (cluster_name and cluster_address):
            raise click.UsageError(
                "a cluster member needs both --cluster-name and --cluster-address"
            )
        if simulator:
            raise click.UsageError(
                "cluster members share one array: run lxflex-sim once and point each member "
                "at one of its emulated hosts, not --simulator"
            )
        try:
            cluster = ClusterSettings(cluster_name, cluster_address, offline_threshold)
        except InvalidRequest as exc:
            raise click.UsageError(str(exc)) from None
    asyncio.run(
        serve(
            state_dir,
            db_url=db_url,
            group=group,
            settings=settings,
            https_address=https_address,
            cluster=cluster,
            join_token=token,
            offline_threshold=offline_threshold,
            lxd_socket=lxd_socket,
        )
    )


def _join_token(
    path: Path, state_dir: Path, db_url: str | None, cluster_name: str | None
) -> JoinToken:
    """The join token in ``path``, if joining with it makes sense here."""
    if db_url is not None:
        raise click.UsageError("a server joining with a token gets the database from it: no --db")
    if (state_dir / DATABASE_FILE).exists():
        raise click.UsageError(
            f"this server has joined a cluster already ({state_dir / DATABASE_FILE}): start "
            "it without --join-token-file"
        )
    text = click.open_file(str(path)).read() if str(path) == "-" else path.read_text()
    try:
        token = JoinToken.decode(text)
    except JoinError as exc:
        raise click.UsageError(str(exc)) from None
    if cluster_name not in (None, token.server_name):
        raise click.UsageError(
            f"the join token is for member {token.server_name!r}, not {cluster_name!r}"
        )
    return token
