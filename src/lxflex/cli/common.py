"""What the storage commands share: argument parsing, completion, options, editing."""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import click
import yaml
from click.shell_completion import CompletionItem

from ..times import parse_rfc3339
from .connection import Connection, DaemonError, Unreachable, connect
from .output import FORMATS, dump_yaml


def quote_name(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def split_remote(arg: str) -> tuple[str | None, str]:
    """``remote:name`` to ``(remote, name)``; a plain ``name`` has no remote."""
    remote, sep, rest = arg.partition(":")
    return (remote or None, rest) if sep else (None, arg)


def pool_of(arg: str) -> tuple[Connection, str]:
    remote, pool = split_remote(arg)
    if not pool:
        raise click.UsageError("a pool name is required")
    return connect(remote, current_target()), pool


def volume_path(pool: str, volume: str) -> str:
    name, _, snap = volume.partition("/")
    path = f"/1.0/storage-pools/{quote_name(pool)}/volumes/custom/{quote_name(name)}"
    return f"{path}/snapshots/{quote_name(snap)}" if snap else path


def pairs(args: Sequence[str]) -> dict[str, str]:
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


def complete_with(
    fetch: Callable[[Connection, str], list[str]],
) -> Callable[..., list[CompletionItem]]:
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


def pool_names(conn: Connection, _partial: str) -> list[str]:
    return [u.rsplit("/", 1)[-1] for u in conn.get("/1.0/storage-pools")]


def volume_names(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    pool_arg = ctx.params.get("pool") or ""
    try:
        conn, pool = pool_of(pool_arg)
        vols = conn.get(f"/1.0/storage-pools/{quote_name(pool)}/volumes/custom")
    except (DaemonError, Unreachable, click.UsageError, OSError):
        return []
    names = [urllib.parse.unquote(u.rsplit("/", 1)[-1]) for u in vols]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(f)


_TARGET = "lxflex.target"  # in the click context's meta: the --target member


def target_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--target MEMBER``: the command's requests go to that cluster member (its host
    does the host-side work), as lxc's do."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            ctx.meta[_TARGET] = value

    return click.option(
        "--target",
        metavar="MEMBER",
        expose_value=False,
        callback=remember,
        help="Cluster member to serve the request (its host does the host-side work).",
    )(f)


def current_target() -> str | None:
    """The --target of the command being run, if it has one."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_TARGET) if ctx is not None else None


POOL_COMPLETION = complete_with(pool_names)
POOL = click.argument("pool", shell_complete=POOL_COMPLETION)
VOLUME = click.argument("volume", shell_complete=volume_names)


def edit_yaml(current: dict[str, Any], editable: Sequence[str]) -> dict[str, Any]:
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


def put(conn: Connection, path: str, doc: dict[str, Any], etag: str | None) -> None:
    headers = {"If-Match": etag} if etag else None
    conn.finish(conn.request("PUT", path, doc, headers=headers)[0])


def get_with_etag(conn: Connection, path: str) -> tuple[dict[str, Any], str | None]:
    doc, headers = conn.request("GET", path)
    return doc, headers.get("etag")


def when(value: Any) -> str:
    """A time as lxc shows it; nothing for none (LXD's zero time)."""
    parsed = parse_rfc3339(str(value or ""))
    return parsed.strftime("%Y/%m/%d %H:%M %Z") if parsed else ""


def iec(size: int) -> str:
    """A size in the smallest binary unit (up to TiB) that keeps it under 1024."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.2f}{unit}"
