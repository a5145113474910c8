"""``lxflex storage ...``: storage pools in lxc's syntax (volumes: :mod:`.volumes`).

Pools are named ``[REMOTE:]POOL``. Answers are printed as lxc prints them: lists in
``--format`` (table, json, yaml, csv, compact), objects as YAML.
"""

from __future__ import annotations

import click

from .common import (
    POOL,
    edit_yaml,
    format_option,
    get_with_etag,
    iec,
    pairs,
    pool_of,
    put,
    quote_name,
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
def pool_show(pool: str, member: str | None) -> None:
    """Show a pool's configuration."""
    conn, name = pool_of(pool)
    click.echo(dump_yaml(conn.get(f"/1.0/storage-pools/{quote_name(name)}")), nl=False)


@storage.command("create")
@click.argument("pool")
@click.argument("driver")
@click.argument("config", nargs=-1)
@click.option("--description", default="", help="Pool description.")
@target_option
def pool_create(
    pool: str, driver: str, config: tuple[str, ...], description: str, member: str | None
) -> None:
    """Create POOL with DRIVER (powerflex) and key=value config."""
    conn, name = pool_of(pool)
    body = {"name": name, "driver": driver, "description": description, "config": pairs(config)}
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


storage.add_command(volume)
