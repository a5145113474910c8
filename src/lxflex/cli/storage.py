"""``lxflex storage ...``: storage pools in lxc's syntax (volumes: :mod:`.volumes`).

Pools are named ``[REMOTE:]POOL``. Answers are printed as lxc prints them: lists in
``--format`` (table, json, yaml, csv, compact), objects as YAML.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .common import (
    POOL,
    POOL_COMPLETION,
    edit_yaml,
    format_option,
    get_with_etag,
    iec,
    pairs,
    pool_names,
    pool_of,
    put,
    quote_name,
    split_remote,
    target_option,
)
from .connection import connect
from .output import Column, dump_yaml, print_list
from .volumes import volume

__all__ = ["storage"]


# --- pools ---------------------------------------------------------------------------


@click.group()
def storage() -> None:
    """Manage storage pools and volumes."""


@storage.command("list")
@click.argument("remote", required=False, default="")
@format_option
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
@target_option
def pool_show(pool: str) -> None:
    """Show a pool's configuration."""
    conn, name = pool_of(pool)
    click.echo(dump_yaml(conn.get(f"/1.0/storage-pools/{quote_name(name)}")), nl=False)


@storage.command("create")
@click.argument("pool")
@click.argument("driver")
@click.argument("config", nargs=-1)
@click.option("--description", default="", help="Pool description.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read powerflex.user.password from standard input (its first line), so that it "
    "is on no command line.",
)
@target_option
def pool_create(
    pool: str, driver: str, config: tuple[str, ...], description: str, password_stdin: bool
) -> None:
    """Create POOL with DRIVER (powerflex) and key=value config."""
    conn, name = pool_of(pool)
    keys = pairs(config)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: standard input holds no password")
        keys["powerflex.user.password"] = password
    body = {"name": name, "driver": driver, "description": description, "config": keys}
    conn.request("POST", "/1.0/storage-pools", body)
    click.echo(f"Storage pool {name} created")


@storage.command("get")
@POOL
@click.argument("key")
def pool_get(pool: str, key: str) -> None:
    """Print the value of a pool key."""
    conn, name = pool_of(pool)
    click.echo(conn.get(f"/1.0/storage-pools/{quote_name(name)}").get("config", {}).get(key, ""))


@storage.command("set")
@POOL
@click.argument("config", nargs=-1, required=True)
def pool_set(pool: str, config: tuple[str, ...]) -> None:
    """Set pool keys (key=value ...)."""
    conn, name = pool_of(pool)
    conn.request("PATCH", f"/1.0/storage-pools/{quote_name(name)}", {"config": pairs(config)})


@storage.command("unset")
@POOL
@click.argument("key")
def pool_unset(pool: str, key: str) -> None:
    """Unset a pool key."""
    conn, name = pool_of(pool)
    conn.request("PATCH", f"/1.0/storage-pools/{quote_name(name)}", {"config": {key: ""}})


@storage.command("edit")
@POOL
def pool_edit(pool: str) -> None:
    """Edit a pool as YAML in $EDITOR (or from stdin)."""
    conn, name = pool_of(pool)
    path = f"/1.0/storage-pools/{quote_name(name)}"
    current, etag = get_with_etag(conn, path)
    doc = edit_yaml(current, ("description", "config"))
    put(
        conn,
        path,
        {"description": doc.get("description") or "", "config": doc.get("config") or {}},
        etag,
    )


@storage.command("delete")
@POOL
def pool_delete(pool: str) -> None:
    """Delete a pool (it must hold no volumes)."""
    conn, name = pool_of(pool)
    conn.request("DELETE", f"/1.0/storage-pools/{quote_name(name)}")
    click.echo(f"Storage pool {name} deleted")


@storage.command("info")
@POOL
@click.option("--bytes", "raw", is_flag=True, help="Sizes in bytes.")
def pool_info(pool: str, raw: bool) -> None:
    """Show a pool's space and users."""
    conn, name = pool_of(pool)
    doc = conn.get(f"/1.0/storage-pools/{quote_name(name)}")
    space = conn.get(f"/1.0/storage-pools/{quote_name(name)}/resources").get("space", {})
    size = str if raw else iec
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


# --- check -----------------------------------------------------------------------------

_MARK = {True: "repaired", False: "found"}


@storage.command("check")
@click.argument("pool", required=False, default="", shell_complete=POOL_COMPLETION)
@click.option("--repair", is_flag=True, help="Repair what is safe to repair.")
@click.option(
    "--remove",
    "remove",
    multiple=True,
    metavar="NAME",
    help="Remove this unrecorded array volume (repeatable); only names the check reports.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "yaml"]), default="text")
def pool_check(pool: str, repair: bool, remove: tuple[str, ...], fmt: str) -> None:
    """Compare [REMOTE:]POOL (or every pool) on the array, the host and the state: in a
    cluster, each member's host in turn.

    Prints each finding with what it means and what repairs it. Exits 0 when nothing is
    left to repair or judge, 1 otherwise.
    """
    remote, name = split_remote(pool)
    conn = connect(remote)
    names = [name] if name else pool_names(conn, "")
    if remove and len(names) != 1:
        raise click.UsageError("--remove needs the pool named")
    env = conn.get("/1.0").get("environment") or {}
    members: list[str | None] = [None]
    unchecked = []
    if env.get("server_clustered") and not remove:  # a removal is the array's: once
        listed = conn.get("/1.0/cluster/members", recursion="1")
        members = [str(m["server_name"]) for m in listed if m["status"] == "Online"]
        unchecked = [str(m["server_name"]) for m in listed if m["status"] != "Online"]
    reports = []
    for each in names:
        path = f"/1.0/storage-pools/{quote_name(each)}/check"
        for member in members:
            query = {"target": member} if member else None
            if repair or remove:
                body = {"repair": repair, "remove": list(remove)}
                report = conn.request("POST", path, body, query=query)[0]
            else:
                report = conn.request("GET", path, query=query)[0]
            if member:
                report["member"] = member
            reports.append(report)
    if fmt == "json":
        click.echo(json.dumps(reports, indent=2))
    elif fmt == "yaml":
        click.echo(dump_yaml(reports), nl=False)
    else:
        for report in reports:
            click.echo(_check_text(report), nl=False)
    for member in unchecked:
        click.echo(f"member {member} is offline: its host was not checked", err=True)
    if unchecked or not all(r.get("clean") for r in reports):
        sys.exit(1)


def _check_text(report: dict[str, Any]) -> str:
    where = f" on member {report['member']}" if report.get("member") else ""
    lines = [
        f"pool {report['pool']}{where}: {report['volumes']} volume(s), {report['snapshots']} "
        f"snapshot(s), {report['array_volumes']} array volume(s) by lxflex's scheme, "
        f"{report['mapped']} mapped here, {report['journal']} journal entr(ies)"
    ]
    for f in report["findings"]:
        state = _MARK[bool(f["repaired"])]
        lines.append(f"  {f['kind']:<12} {f['subject']}  [{state}]")
        lines.append(f"      {f['meaning']}")
        lines.append(f"      -> {f['action']}")
        if f.get("error"):
            lines.append(f"      repair failed: {f['error']}")
    left = sum(1 for f in report["findings"] if not f["repaired"])
    repaired = len(report["findings"]) - left
    verdict = "clean" if not report["findings"] else f"{left} left, {repaired} repaired"
    lines.append(f"pool {report['pool']}{where}: {verdict}")
    return "\n".join(lines) + "\n"


storage.add_command(volume)
