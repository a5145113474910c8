"""``lxflex storage ...`` and ``lxflex storage volume ...``, in lxc's syntax.

Pools are named ``[REMOTE:]POOL``; volumes ``POOL VOLUME``, snapshots ``VOLUME/SNAPSHOT``
(as lxc names them). Answers are printed as lxc prints them: lists in ``--format``
(table, json, yaml, csv, compact), objects as YAML.
"""

from __future__ import annotations

import datetime
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import yaml
from click.shell_completion import CompletionItem

from .connection import Connection, DaemonError, Unreachable, connect
from .output import FORMATS, Column, Progress, dump_yaml, print_list

__all__ = ["storage"]


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def split_remote(arg: str) -> tuple[str | None, str]:
    """``remote:name`` to ``(remote, name)``; a plain ``name`` has no remote."""
    remote, sep, rest = arg.partition(":")
    return (remote or None, rest) if sep else (None, arg)


def _pool(arg: str) -> tuple[Connection, str]:
    remote, pool = split_remote(arg)
    if not pool:
        raise click.UsageError("a pool name is required")
    return connect(remote), pool


def _volume_path(pool: str, volume: str) -> str:
    name, _, snap = volume.partition("/")
    path = f"/1.0/storage-pools/{_q(pool)}/volumes/custom/{_q(name)}"
    return f"{path}/snapshots/{_q(snap)}" if snap else path


def _pairs(args: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments (lxc also takes ``key value`` for a single pair)."""
    if len(args) == 2 and "=" not in args[0]:
        return {args[0]: args[1]}
    found: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise click.UsageError(f"{arg!r} is not key=value")
        found[key] = value
    return found


# --- completion ----------------------------------------------------------------------


def _complete(fetch: Callable[[Connection, str], list[str]]) -> Callable[..., list[CompletionItem]]:
    def complete(
        ctx: click.Context, _param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        remote, partial = split_remote(incomplete)
        try:
            names = fetch(connect(remote), partial)
        except (DaemonError, Unreachable, OSError):
            return []
        prefix = f"{remote}:" if remote else ""
        return [CompletionItem(prefix + n) for n in names if n.startswith(partial)]

    return complete


def _pool_names(conn: Connection, _partial: str) -> list[str]:
    return [u.rsplit("/", 1)[-1] for u in conn.get("/1.0/storage-pools")]


def _volume_names(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    pool_arg = ctx.params.get("pool") or ""
    try:
        conn, pool = _pool(pool_arg)
        vols = conn.get(f"/1.0/storage-pools/{_q(pool)}/volumes/custom")
    except (DaemonError, Unreachable, click.UsageError, OSError):
        return []
    names = [urllib.parse.unquote(u.rsplit("/", 1)[-1]) for u in vols]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def _format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(f)


def _target_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--target", "member", help="Cluster member (accepted for lxc's syntax; one server)."
    )(f)


POOL = click.argument("pool", shell_complete=_complete(_pool_names))
VOLUME = click.argument("volume", shell_complete=_volume_names)


def _edit(current: dict[str, Any], editable: Sequence[str]) -> dict[str, Any]:
    """The new version of ``current``: from stdin when it is not a terminal, else from
    $EDITOR (again after an error, until the user gives up)."""
    shown = {k: current.get(k) for k in editable}
    if not sys.stdin.isatty():
        return dict(yaml.safe_load(sys.stdin.read()) or {})
    text = dump_yaml(shown)
    while True:
        edited = click.edit(text, extension=".yaml")
        if edited is None:
            raise click.ClickException("no change (the editor was left without saving)")
        try:
            doc = yaml.safe_load(edited) or {}
            if not isinstance(doc, dict):
                raise ValueError("the document must be a mapping")
            return dict(doc)
        except (ValueError, yaml.YAMLError) as exc:
            click.echo(f"Error: {exc}", err=True)
            if not click.confirm("Edit again?", default=True, err=True):
                raise click.Abort() from None
            text = edited


def _put(conn: Connection, path: str, doc: dict[str, Any], etag: str | None) -> None:
    headers = {"If-Match": etag} if etag else None
    conn.finish(conn.request("PUT", path, doc, headers=headers)[0])


def _get_with_etag(conn: Connection, path: str) -> tuple[dict[str, Any], str | None]:
    doc, headers = conn.request("GET", path)
    return doc, headers.get("etag")


# --- pools ---------------------------------------------------------------------------


@click.group()
def storage() -> None:
    """Manage storage pools and volumes."""


@storage.command("list")
@click.argument("remote", required=False, default="")
@_format_option
def pool_list(remote: str, fmt: str) -> None:
    """List the storage pools of [REMOTE:]."""
    conn = connect(remote.rstrip(":") or None)
    columns: list[Column] = [
        ("NAME", lambda p: p["name"]),
        ("DRIVER", lambda p: p["driver"]),
        ("DESCRIPTION", lambda p: p.get("description", "")),
        ("USED BY", lambda p: str(len(p.get("used_by") or []))),
        ("STATE", lambda p: str(p.get("status", "")).upper()),
    ]
    print_list(conn.get("/1.0/storage-pools", recursion="1"), columns, fmt)


@storage.command("show")
@POOL
@_target_option
def pool_show(pool: str, member: str | None) -> None:
    """Show a pool's configuration."""
    conn, name = _pool(pool)
    click.echo(dump_yaml(conn.get(f"/1.0/storage-pools/{_q(name)}")), nl=False)


@storage.command("create")
@click.argument("pool")
@click.argument("driver")
@click.argument("config", nargs=-1)
@click.option("--description", default="", help="Pool description.")
@_target_option
def pool_create(
    pool: str, driver: str, config: tuple[str, ...], description: str, member: str | None
) -> None:
    """Create POOL with DRIVER (powerflex) and key=value config."""
    conn, name = _pool(pool)
    body = {"name": name, "driver": driver, "description": description, "config": _pairs(config)}
    conn.request("POST", "/1.0/storage-pools", body)
    click.echo(f"Storage pool {name} created")


@storage.command("get")
@POOL
@click.argument("key")
def pool_get(pool: str, key: str) -> None:
    """Print the value of a pool key."""
    conn, name = _pool(pool)
    click.echo(conn.get(f"/1.0/storage-pools/{_q(name)}").get("config", {}).get(key, ""))


@storage.command("set")
@POOL
@click.argument("config", nargs=-1, required=True)
def pool_set(pool: str, config: tuple[str, ...]) -> None:
    """Set pool keys (key=value ...)."""
    conn, name = _pool(pool)
    conn.request("PATCH", f"/1.0/storage-pools/{_q(name)}", {"config": _pairs(config)})


@storage.command("unset")
@POOL
@click.argument("key")
def pool_unset(pool: str, key: str) -> None:
    """Unset a pool key."""
    conn, name = _pool(pool)
    conn.request("PATCH", f"/1.0/storage-pools/{_q(name)}", {"config": {key: ""}})


@storage.command("edit")
@POOL
def pool_edit(pool: str) -> None:
    """Edit a pool as YAML in $EDITOR (or from stdin)."""
    conn, name = _pool(pool)
    path = f"/1.0/storage-pools/{_q(name)}"
    current, etag = _get_with_etag(conn, path)
    doc = _edit(current, ("description", "config"))
    _put(
        conn,
        path,
        {"description": doc.get("description") or "", "config": doc.get("config") or {}},
        etag,
    )


@storage.command("delete")
@POOL
def pool_delete(pool: str) -> None:
    """Delete a pool (it must hold no volumes)."""
    conn, name = _pool(pool)
    conn.request("DELETE", f"/1.0/storage-pools/{_q(name)}")
    click.echo(f"Storage pool {name} deleted")


def _when(value: Any) -> str:
    """A time as lxc shows it; nothing for none (LXD's zero time)."""
    if not value or str(value).startswith("0001-01-01"):
        return ""
    when = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when.strftime("%Y/%m/%d %H:%M %Z")


def _iec(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.2f}{unit}"
        value /= 1024
    return f"{value:.2f}PiB"


@storage.command("info")
@POOL
@click.option("--bytes", "raw", is_flag=True, help="Sizes in bytes.")
def pool_info(pool: str, raw: bool) -> None:
    """Show a pool's space and users."""
    conn, name = _pool(pool)
    doc = conn.get(f"/1.0/storage-pools/{_q(name)}")
    space = conn.get(f"/1.0/storage-pools/{_q(name)}/resources").get("space", {})
    size = str if raw else _iec
    info = {
        "info": {
            "description": doc.get("description", ""),
            "driver": doc["driver"],
            "name": doc["name"],
            "space used": size(int(space.get("used", 0))),
            "total space": size(int(space.get("total", 0))),
        },
        "used by": {"volumes": [u.rsplit("/", 1)[-1] for u in doc.get("used_by") or []]},
    }
    click.echo(dump_yaml(info), nl=False)


# --- volumes -------------------------------------------------------------------------


@storage.group("volume")
def volume() -> None:
    """Manage custom storage volumes and their snapshots."""


def _volume_columns() -> list[Column]:
    return [
        ("TYPE", lambda v: v.get("type", "custom") + (" (snapshot)" if "/" in v["name"] else "")),
        ("NAME", lambda v: v["name"]),
        ("DESCRIPTION", lambda v: v.get("description", "")),
        ("CONTENT-TYPE", lambda v: v.get("content_type", "")),
        ("USED BY", lambda v: str(len(v.get("used_by") or []))),
    ]


@volume.command("list")
@POOL
@_format_option
def volume_list(pool: str, fmt: str) -> None:
    """List the custom volumes of a pool."""
    conn, name = _pool(pool)
    vols = conn.get(f"/1.0/storage-pools/{_q(name)}/volumes/custom", recursion="1")
    print_list(vols, _volume_columns(), fmt)


@volume.command("show")
@POOL
@VOLUME
def volume_show(pool: str, volume: str) -> None:
    """Show a volume (or VOLUME/SNAPSHOT)."""
    conn, name = _pool(pool)
    click.echo(dump_yaml(conn.get(_volume_path(name, volume))), nl=False)


@volume.command("create")
@POOL
@click.argument("volume")
@click.argument("config", nargs=-1)
@click.option(
    "--type",
    "content_type",
    type=click.Choice(["filesystem", "block"]),
    default="filesystem",
    show_default=True,
    help="Content type.",
)
@click.option("--description", default="", help="Volume description.")
@_target_option
def volume_create(
    pool: str,
    volume: str,
    config: tuple[str, ...],
    content_type: str,
    description: str,
    member: str | None,
) -> None:
    """Create a custom volume with key=value config."""
    conn, name = _pool(pool)
    body = {
        "name": volume,
        "type": "custom",
        "content_type": content_type,
        "description": description,
        "config": _pairs(config),
    }
    conn.request("POST", f"/1.0/storage-pools/{_q(name)}/volumes/custom", body)
    click.echo(f"Storage volume {volume} created")


@volume.command("get")
@POOL
@VOLUME
@click.argument("key")
def volume_get(pool: str, volume: str, key: str) -> None:
    """Print the value of a volume key."""
    conn, name = _pool(pool)
    click.echo(conn.get(_volume_path(name, volume)).get("config", {}).get(key, ""))


@volume.command("set")
@POOL
@VOLUME
@click.argument("config", nargs=-1, required=True)
def volume_set(pool: str, volume: str, config: tuple[str, ...]) -> None:
    """Set volume keys (key=value ...)."""
    conn, name = _pool(pool)
    conn.request("PATCH", _volume_path(name, volume), {"config": _pairs(config)})


@volume.command("unset")
@POOL
@VOLUME
@click.argument("key")
def volume_unset(pool: str, volume: str, key: str) -> None:
    """Unset a volume key."""
    conn, name = _pool(pool)
    conn.request("PATCH", _volume_path(name, volume), {"config": {key: ""}})


@volume.command("edit")
@POOL
@VOLUME
def volume_edit(pool: str, volume: str) -> None:
    """Edit a volume (or VOLUME/SNAPSHOT) as YAML in $EDITOR (or from stdin)."""
    conn, name = _pool(pool)
    path = _volume_path(name, volume)
    current, etag = _get_with_etag(conn, path)
    snapshot = "/" in volume
    doc = _edit(current, ("description", "expires_at") if snapshot else ("description", "config"))
    body: dict[str, Any] = {"description": doc.get("description") or ""}
    if snapshot:
        body["expires_at"] = doc.get("expires_at")
    else:
        body["config"] = doc.get("config") or {}
    _put(conn, path, body, etag)


@volume.command("delete")
@POOL
@VOLUME
def volume_delete(pool: str, volume: str) -> None:
    """Delete a volume (or VOLUME/SNAPSHOT)."""
    conn, name = _pool(pool)
    metadata, _ = conn.request("DELETE", _volume_path(name, volume))
    conn.finish(metadata)
    click.echo(f"Storage volume {volume} deleted")


@volume.command("rename")
@POOL
@VOLUME
@click.argument("new")
def volume_rename(pool: str, volume: str, new: str) -> None:
    """Rename a volume, or a snapshot (VOLUME/OLD VOLUME/NEW, or VOLUME/OLD NEW)."""
    conn, name = _pool(pool)
    if "/" in volume:
        new = new.rpartition("/")[2]
    metadata, _ = conn.request("POST", _volume_path(name, volume), {"name": new})
    conn.finish(metadata)
    click.echo(f"Renamed storage volume from {volume!r} to {new!r}")


def _pool_volume(arg: str) -> tuple[str | None, str, str]:
    """``[remote:]pool/volume[/snapshot]`` to (remote, pool, volume[/snapshot])."""
    remote, rest = split_remote(arg)
    pool, sep, vol = rest.partition("/")
    if not sep or not pool or not vol:
        raise click.UsageError(f"{arg!r} is not [REMOTE:]POOL/VOLUME")
    return remote, pool, vol


def _copy(source: str, target: str, *, volume_only: bool, move: bool) -> None:
    src_remote, src_pool, src_vol = _pool_volume(source)
    dst_remote, dst_pool, dst_vol = _pool_volume(target)
    if src_remote != dst_remote:
        raise click.UsageError("copies between servers are not supported yet")
    conn = connect(src_remote)
    progress = Progress("Moving the storage volume" if move else "Copying the storage volume")
    if move and "/" not in src_vol:
        path = _volume_path(src_pool, src_vol)
        body: dict[str, Any] = {"name": dst_vol}
        if dst_pool != src_pool:
            body["pool"] = dst_pool
        metadata, _ = conn.request("POST", path, body)
    else:
        body = {
            "name": dst_vol,
            "type": "custom",
            "source": {
                "type": "copy",
                "pool": src_pool,
                "name": src_vol,
                "volume_only": volume_only,
            },
        }
        metadata, _ = conn.request(
            "POST", f"/1.0/storage-pools/{_q(dst_pool)}/volumes/custom", body
        )
    try:
        conn.finish(metadata, progress)
    finally:
        progress.done()


@volume.command("copy")
@click.argument("source")
@click.argument("target")
@click.option("--volume-only", is_flag=True, help="Copy the volume without its snapshots.")
@_target_option
def volume_copy(source: str, target: str, volume_only: bool, member: str | None = None) -> None:
    """Copy [REMOTE:]POOL/VOLUME[/SNAPSHOT] to [REMOTE:]POOL/VOLUME."""
    _copy(source, target, volume_only=volume_only, move=False)
    click.echo("Storage volume copied successfully!")


@volume.command("move")
@click.argument("source")
@click.argument("target")
@_target_option
def volume_move(source: str, target: str, member: str | None = None) -> None:
    """Move or rename [REMOTE:]POOL/VOLUME to [REMOTE:]POOL/VOLUME."""
    _copy(source, target, volume_only=False, move=True)
    click.echo("Storage volume moved successfully!")


@volume.command("snapshot")
@POOL
@VOLUME
@click.argument("snapshot", required=False)
@click.option("--expiry", help="Expiry (an RFC 3339 time, or a delay like 2d or 4h).")
@click.option("--no-expiry", is_flag=True, help="Ignore snapshots.expiry.")
def volume_snapshot(
    pool: str, volume: str, snapshot: str | None, expiry: str | None, no_expiry: bool
) -> None:
    """Snapshot a volume (named after snapshots.pattern when no name is given)."""
    conn, name = _pool(pool)
    body: dict[str, Any] = {}
    if snapshot:
        body["name"] = snapshot
    if no_expiry:
        body["expires_at"] = None
    elif expiry:
        body["expires_at"] = _expiry(expiry)
    metadata, _ = conn.request("POST", _volume_path(name, volume) + "/snapshots", body)
    conn.wait(metadata)


def _expiry(value: str) -> str:
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2629800, "y": 31557600}
    if value[-1:] in units and value[:-1].isdigit():
        when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=int(value[:-1]) * units[value[-1]]
        )
        return when.isoformat().replace("+00:00", "Z")
    return value  # an RFC 3339 time: the daemon checks it


@volume.command("restore")
@POOL
@VOLUME
@click.argument("snapshot")
def volume_restore(pool: str, volume: str, snapshot: str) -> None:
    """Restore a volume from one of its snapshots."""
    conn, name = _pool(pool)
    _put(conn, _volume_path(name, volume), {"restore": snapshot}, None)


@volume.command("export")
@POOL
@VOLUME
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--volume-only", is_flag=True, help="Leave the snapshots out.")
@click.option(
    "--compression",
    default="",
    help="gzip (the default), zstd, xz, bzip2 or none.",
)
def volume_export(
    pool: str, volume: str, file: Path | None, volume_only: bool, compression: str
) -> None:
    """Export a volume (with its snapshots) to a backup tarball (default VOLUME.tar.gz)."""
    conn, name = _pool(pool)
    target = file or Path(f"{volume}.tar.gz")
    path = _volume_path(name, volume) + "/backups"
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=24)
    body = {
        "name": "",
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
        "volume_only": volume_only,
        "optimized_storage": False,
        "compression_algorithm": compression,
    }
    progress = Progress("Backing up the storage volume")
    op, _ = conn.request("POST", path, body)
    try:
        op = conn.wait(op, progress)
    finally:
        progress.done()
    backup = op["resources"]["backups"][0].rsplit("/", 1)[-1]
    progress = Progress("Exporting the backup")
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "wb") as out:
            conn.download(f"{path}/{_q(backup)}/export", out, progress.transfer)
        partial.rename(target)
    finally:
        progress.done()
        partial.unlink(missing_ok=True)
        conn.wait(conn.request("DELETE", f"{path}/{_q(backup)}")[0])
    click.echo(f"Backup exported to {target}")


@volume.command("import")
@POOL
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name", required=False)
@click.option(
    "--type",
    "kind",
    type=click.Choice(["backup", "iso"]),
    default="backup",
    show_default=True,
    help="A backup tarball, or an ISO image (a read-only iso volume).",
)
def volume_import(pool: str, file: Path, name: str | None, kind: str) -> None:
    """Import a backup tarball (named NAME, or as in the backup), or an ISO image."""
    conn, pool_name = _pool(pool)
    if kind == "iso" and not name:
        raise click.UsageError("an ISO import needs a NAME for the new volume")
    headers = {"X-LXD-name": name} if name else {}
    if kind == "iso":
        headers["X-LXD-type"] = "iso"
    progress = Progress("Importing the backup")
    try:
        with open(file, "rb") as source:
            op = conn.upload(
                f"/1.0/storage-pools/{_q(pool_name)}/volumes/custom",
                source,
                file.stat().st_size,
                headers,
                progress.transfer,
            )
        conn.wait(op, progress)
    finally:
        progress.done()
    click.echo("Storage volume imported")


@volume.command("info")
@POOL
@VOLUME
def volume_info(pool: str, volume: str) -> None:
    """Show a volume's usage and snapshots."""
    conn, name = _pool(pool)
    path = _volume_path(name, volume)
    vol = conn.get(path)
    usage = (conn.get(path + "/state") or {}).get("usage") or {}
    lines = [
        f"Name: {vol['name']}",
        f"Type: {vol.get('type', 'custom')}",
        f"Content type: {vol.get('content_type', '')}",
        f"Usage: {_iec(int(usage.get('used', 0)))}",
    ]
    if usage.get("total"):
        lines.append(f"Total: {_iec(int(usage['total']))}")
    if _when(vol.get("created_at")):
        lines.append(f"Created: {_when(vol.get('created_at'))}")
    click.echo("\n".join(lines))
    snaps = conn.get(path + "/snapshots", recursion="1")
    if snaps:
        click.echo("\nSnapshots:")
        print_list(
            snaps,
            [
                ("NAME", lambda s: s["name"].rpartition("/")[2]),
                ("DESCRIPTION", lambda s: s.get("description", "")),
                ("TAKEN AT", lambda s: _when(s.get("created_at"))),
                ("EXPIRES AT", lambda s: _when(s.get("expires_at"))),
            ],
            "table",
        )
