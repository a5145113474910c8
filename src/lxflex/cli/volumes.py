"""``lxflex storage volume ...``: custom volumes, their snapshots, backups and ISOs, in
lxc's syntax. A snapshot is ``VOLUME/SNAPSHOT``; a copy or move names
``[REMOTE:]POOL/VOLUME[/SNAPSHOT]`` on both sides.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import click

from .common import (
    POOL,
    VOLUME,
    edit_yaml,
    format_option,
    get_with_etag,
    iec,
    pairs,
    pool_of,
    put,
    quote_name,
    split_remote,
    target_option,
    volume_path,
    when,
)
from .connection import connect
from .output import Column, Progress, dump_yaml, print_list

__all__ = ["volume"]

# --- volumes -------------------------------------------------------------------------


@click.group("volume")
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
@format_option
def volume_list(pool: str, fmt: str) -> None:
    """List the custom volumes of a pool."""
    conn, name = pool_of(pool)
    vols = conn.get(f"/1.0/storage-pools/{quote_name(name)}/volumes/custom", recursion="1")
    print_list(vols, _volume_columns(), fmt)


@volume.command("show")
@POOL
@VOLUME
def volume_show(pool: str, volume: str) -> None:
    """Show a volume (or VOLUME/SNAPSHOT)."""
    conn, name = pool_of(pool)
    click.echo(dump_yaml(conn.get(volume_path(name, volume))), nl=False)


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
@target_option
def volume_create(
    pool: str,
    volume: str,
    config: tuple[str, ...],
    content_type: str,
    description: str,
) -> None:
    """Create a custom volume with key=value config."""
    conn, name = pool_of(pool)
    body = {
        "name": volume,
        "type": "custom",
        "content_type": content_type,
        "description": description,
        "config": pairs(config),
    }
    conn.request("POST", f"/1.0/storage-pools/{quote_name(name)}/volumes/custom", body)
    click.echo(f"Storage volume {volume} created")


@volume.command("get")
@POOL
@VOLUME
@click.argument("key")
def volume_get(pool: str, volume: str, key: str) -> None:
    """Print the value of a volume key."""
    conn, name = pool_of(pool)
    click.echo(conn.get(volume_path(name, volume)).get("config", {}).get(key, ""))


@volume.command("set")
@POOL
@VOLUME
@click.argument("config", nargs=-1, required=True)
def volume_set(pool: str, volume: str, config: tuple[str, ...]) -> None:
    """Set volume keys (key=value ...)."""
    conn, name = pool_of(pool)
    conn.request("PATCH", volume_path(name, volume), {"config": pairs(config)})


@volume.command("unset")
@POOL
@VOLUME
@click.argument("key")
def volume_unset(pool: str, volume: str, key: str) -> None:
    """Unset a volume key."""
    conn, name = pool_of(pool)
    conn.request("PATCH", volume_path(name, volume), {"config": {key: ""}})


@volume.command("edit")
@POOL
@VOLUME
def volume_edit(pool: str, volume: str) -> None:
    """Edit a volume (or VOLUME/SNAPSHOT) as YAML in $EDITOR (or from stdin)."""
    conn, name = pool_of(pool)
    path = volume_path(name, volume)
    current, etag = get_with_etag(conn, path)
    snapshot = "/" in volume
    doc = edit_yaml(
        current, ("description", "expires_at") if snapshot else ("description", "config")
    )
    body: dict[str, Any] = {"description": doc.get("description") or ""}
    if snapshot:
        body["expires_at"] = doc.get("expires_at")
    else:
        body["config"] = doc.get("config") or {}
    put(conn, path, body, etag)


@volume.command("delete")
@POOL
@VOLUME
def volume_delete(pool: str, volume: str) -> None:
    """Delete a volume (or VOLUME/SNAPSHOT)."""
    conn, name = pool_of(pool)
    metadata, _ = conn.request("DELETE", volume_path(name, volume))
    conn.finish(metadata)
    click.echo(f"Storage volume {volume} deleted")


@volume.command("rename")
@POOL
@VOLUME
@click.argument("new")
def volume_rename(pool: str, volume: str, new: str) -> None:
    """Rename a volume, or a snapshot (VOLUME/OLD VOLUME/NEW, or VOLUME/OLD NEW)."""
    conn, name = pool_of(pool)
    if "/" in volume:
        new = new.rpartition("/")[2]
    metadata, _ = conn.request("POST", volume_path(name, volume), {"name": new})
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
        path = volume_path(src_pool, src_vol)
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
            "POST", f"/1.0/storage-pools/{quote_name(dst_pool)}/volumes/custom", body
        )
    try:
        conn.finish(metadata, progress)
    finally:
        progress.done()


@volume.command("copy")
@click.argument("source")
@click.argument("target")
@click.option("--volume-only", is_flag=True, help="Copy the volume without its snapshots.")
@target_option
def volume_copy(source: str, target: str, volume_only: bool) -> None:
    """Copy [REMOTE:]POOL/VOLUME[/SNAPSHOT] to [REMOTE:]POOL/VOLUME."""
    _copy(source, target, volume_only=volume_only, move=False)
    click.echo("Storage volume copied successfully!")


@volume.command("move")
@click.argument("source")
@click.argument("target")
@target_option
def volume_move(source: str, target: str) -> None:
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
    conn, name = pool_of(pool)
    body: dict[str, Any] = {}
    if snapshot:
        body["name"] = snapshot
    if no_expiry:
        body["expires_at"] = None
    elif expiry:
        body["expires_at"] = _expiry(expiry)
    metadata, _ = conn.request("POST", volume_path(name, volume) + "/snapshots", body)
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
    conn, name = pool_of(pool)
    put(conn, volume_path(name, volume), {"restore": snapshot}, None)


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
    conn, name = pool_of(pool)
    target = file or Path(f"{volume}.tar.gz")
    path = volume_path(name, volume) + "/backups"
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
            conn.download(f"{path}/{quote_name(backup)}/export", out, progress.transfer)
        partial.rename(target)
    finally:
        progress.done()
        partial.unlink(missing_ok=True)
        conn.wait(conn.request("DELETE", f"{path}/{quote_name(backup)}")[0])
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
    conn, pool_name = pool_of(pool)
    if kind == "iso" and not name:
        raise click.UsageError("an ISO import needs a NAME for the new volume")
    headers = {"X-LXD-name": name} if name else {}
    if kind == "iso":
        headers["X-LXD-type"] = "iso"
    progress = Progress("Importing the backup")
    try:
        with open(file, "rb") as source:
            op = conn.upload(
                f"/1.0/storage-pools/{quote_name(pool_name)}/volumes/custom",
                source,
                file.stat().st_size,
                headers,
                progress.transfer,
            )
        conn.wait(op, progress)
    finally:
        progress.done()
    click.echo("Storage volume imported")


@volume.command("attach")
@POOL
@VOLUME
@click.argument("path", required=False)
@click.option("--instance", help="Give the volume to this instance of the host's LXD or Incus.")
@click.option("--device", help="The instance's device name (default: the volume's name).")
@click.option("--instance-project", default="default", show_default=True, help="Its project.")
@click.option(
    "--socket",
    "lxd_socket",
    type=click.Path(path_type=Path),
    help="The LXD or Incus API socket (default: $LXD_DIR/unix.socket or the usual places).",
)
@target_option
def volume_attach(
    pool: str,
    volume: str,
    path: str | None,
    instance: str | None,
    device: str | None,
    instance_project: str,
    lxd_socket: Path | None,
) -> None:
    """Attach a volume until it is detached, across restarts, and print where it is.

    For the host's own use: a filesystem volume is mounted (also at PATH, an absolute
    directory, when given), a block volume's device is made ready. With --instance: the
    volume becomes a disk device of that instance, at PATH inside it (a filesystem
    volume shared as a directory; a block volume as its device).
    """
    conn, name = pool_of(pool)
    body: dict[str, str] = {"path": path} if path else {}
    if instance:
        body |= {"instance": instance, "instance_project": instance_project}
        body |= {"device": device} if device else {}
        body |= {"socket": str(lxd_socket.absolute())} if lxd_socket else {}
    elif device or lxd_socket:
        raise click.UsageError("--device and --socket go with --instance")
    metadata, _ = conn.request("POST", volume_path(name, volume) + "/attachments", body)
    done = conn.wait(metadata)
    click.echo((done.get("metadata") or {}).get("path", ""))


@volume.command("detach")
@POOL
@VOLUME
@click.option("--instance", help="Take the volume from this instance.")
@click.option("--instance-project", default="default", show_default=True, help="Its project.")
@target_option
def volume_detach(pool: str, volume: str, instance: str | None, instance_project: str) -> None:
    """Undo a use of a volume: the host's own (unmounted, unmapped once unused), or an
    instance's (its device removed)."""
    conn, name = pool_of(pool)
    path = volume_path(name, volume) + "/attachments/host"
    query = None
    if instance:
        path = volume_path(name, volume) + f"/attachments/instances/{quote_name(instance)}"
        query = {"instance_project": instance_project} if instance_project != "default" else None
    metadata, _ = conn.request("DELETE", path, query=query)
    conn.wait(metadata)
    click.echo(f"Storage volume {volume} detached")


@volume.command("info")
@POOL
@VOLUME
def volume_info(pool: str, volume: str) -> None:
    """Show a volume's usage and snapshots."""
    conn, name = pool_of(pool)
    path = volume_path(name, volume)
    vol = conn.get(path)
    usage = (conn.get(path + "/state") or {}).get("usage") or {}
    lines = [
        f"Name: {vol['name']}",
        f"Type: {vol.get('type', 'custom')}",
        f"Content type: {vol.get('content_type', '')}",
        f"Usage: {iec(int(usage.get('used', 0)))}",
    ]
    if usage.get("total"):
        lines.append(f"Total: {iec(int(usage['total']))}")
    if when(vol.get("created_at")):
        lines.append(f"Created: {when(vol.get('created_at'))}")
    click.echo("\n".join(lines))
    uses = conn.get(path + "/attachments")
    if uses:
        click.echo("\nAttached:")
        print_list(
            uses,
            [
                ("FOR", lambda a: f"instance {a['instance']}" if a["instance"] else "host"),
                ("LOCATION", lambda a: a.get("location", "")),
                ("PATH", lambda a: a.get("path", "")),
                ("SINCE", lambda a: when(a.get("created_at"))),
            ],
            "table",
        )
    snaps = conn.get(path + "/snapshots", recursion="1")
    if snaps:
        click.echo("\nSnapshots:")
        print_list(
            snaps,
            [
                ("NAME", lambda s: s["name"].rpartition("/")[2]),
                ("DESCRIPTION", lambda s: s.get("description", "")),
                ("TAKEN AT", lambda s: when(s.get("created_at"))),
                ("EXPIRES AT", lambda s: when(s.get("expires_at"))),
            ],
            "table",
        )
