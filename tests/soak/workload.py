"""Random operations through the REST API against a model of what must result.

Each operation holds the names it works on (:class:`~.harness.Busy`), runs through the
API, and on success updates the model. An operation cut short by a kill -9 is in doubt:
after the restart, :meth:`Op.resolve` finds which outcome the daemon chose and checks
that it is one of the two (done, or not done at all)."""

from __future__ import annotations

import itertools
import os
import random
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .harness import GIB, VOLUMES, Answer, Busy, Daemon, Vol, array_names, read_mark, write_mark

Model = dict[str, Vol]
KINDS = ("create", "delete", "snapshot", "restore", "copy", "rename", "grow", "set", "backup")
MAX_GIB = 24


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


@dataclass
class Op:
    kind: str
    names: tuple[str, ...]  # held while it runs
    run: Callable[[Daemon], Answer]
    done: Callable[[Model], None]  # the model after success
    observe: Callable[[Daemon, Model], bool] = field(default=lambda d, m: False)
    """After a kill: whether the daemon shows it done (else it must show it not done)."""

    def resolve(self, d: Daemon, model: Model) -> None:
        if self.observe(d, model):
            self.done(model)


def _exists(d: Daemon, name: str) -> bool:
    return d.call("GET", f"{VOLUMES}/{_q(name)}").status == 200


def _volume(d: Daemon, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = d.call("GET", f"{VOLUMES}/{_q(name)}").doc["metadata"]
    return doc


def _snaps(d: Daemon, name: str) -> set[str]:
    listed = d.call("GET", f"{VOLUMES}/{_q(name)}/snapshots").doc["metadata"]
    return {s.rsplit("/", 1)[-1] for s in listed}


def _drop(model: Model, name: str) -> None:
    model.pop(name, None)


def mark_new(d: Daemon, model: Model, name: str, rng: random.Random) -> None:
    """Give a block volume known data, written on the array side."""
    vol = model[name]
    if vol.content != "block":
        return
    mark = rng.randbytes(16)
    write_mark(d, array_names(d, name)[0], vol.size * GIB, mark)
    vol.marker = mark


class Workload:
    def __init__(self, d: Daemon, rng: random.Random) -> None:
        self.d = d
        self.rng = rng
        self.model: Model = {}
        self.busy = Busy()
        self._ids = itertools.count()

    def _new(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}-{os.getpid() % 1000}"

    def pick(self) -> Op | None:
        """A random operation on free names (None if none is possible now)."""
        rng = self.rng
        names = sorted(self.model)
        kind = rng.choice(KINDS) if len(names) > 2 else "create"
        if len(names) > 12 and kind == "create":
            kind = "delete"
        if kind == "create":
            name = self._new("v")
            self.busy.claim(name)
            return self._create(name, rng.choice(["block", "filesystem"]))
        taken = self.busy.take(rng, names)
        if taken is None:
            return None
        name = taken
        vol = self.model[name]
        if kind == "restore" and not vol.snaps:
            kind = "snapshot"
        if kind == "grow" and vol.size + 8 > MAX_GIB:
            kind = "set"
        if kind in ("copy", "rename", "backup"):
            target = self._new("c" if kind == "copy" else "r" if kind == "rename" else "i")
            self.busy.claim(target)
            if kind == "copy":
                return self._copy(name, target, volume_only=rng.random() < 0.3)
            if kind == "rename":
                return self._rename(name, target)
            return self._backup(name, target)
        return {
            "delete": self._delete,
            "snapshot": self._snapshot,
            "restore": self._restore,
            "grow": self._grow,
            "set": self._set,
        }[kind](name)

    # --- the operations ---------------------------------------------------------------

    def _create(self, name: str, content: str) -> Op:
        body = {"name": name, "type": "custom", "content_type": content, "config": {}}

        def done(m: Model) -> None:
            m[name] = Vol(content, 8)

        return Op(
            "create",
            (name,),
            lambda d: d.call("POST", VOLUMES, body),
            done,
            lambda d, m: _exists(d, name),
        )

    def _delete(self, name: str) -> Op:
        return Op(
            "delete",
            (name,),
            lambda d: d.call("DELETE", f"{VOLUMES}/{_q(name)}"),
            lambda m: _drop(m, name),
            lambda d, m: not _exists(d, name),
        )

    def _snapshot(self, name: str) -> Op:
        snap = self._new("s")

        def done(m: Model) -> None:
            m[name].snaps[snap] = m[name].marker

        return Op(
            "snapshot",
            (name,),
            lambda d: d.finish(d.call("POST", f"{VOLUMES}/{_q(name)}/snapshots", {"name": snap})),
            done,
            lambda d, m: snap in _snaps(d, name),
        )

    def _restore(self, name: str) -> Op:
        snap = self.rng.choice(sorted(self.model[name].snaps))
        vol = self.model[name]

        def done(m: Model) -> None:
            m[name].marker = m[name].snaps[snap]

        def observe(d: Daemon, m: Model) -> bool:
            if vol.content != "block" or vol.snaps[snap] is None:
                return True  # either outcome reads the same here
            found = read_mark(d, array_names(d, name)[0])
            assert found in (vol.marker, vol.snaps[snap]), f"{name}: torn restore"
            return found == vol.snaps[snap]

        return Op(
            "restore",
            (name,),
            lambda d: d.finish(d.call("PUT", f"{VOLUMES}/{_q(name)}", {"restore": snap})),
            done,
            observe,
        )

    def _copy(self, name: str, target: str, *, volume_only: bool) -> Op:
        body = {
            "name": target,
            "type": "custom",
            "source": {"type": "copy", "name": name, "volume_only": volume_only},
        }

        def done(m: Model) -> None:
            m[target] = m[name].clone(with_snaps=not volume_only)

        return Op(
            "copy",
            (name, target),
            lambda d: d.finish(d.call("POST", VOLUMES, body)),
            done,
            lambda d, m: _exists(d, target),
        )

    def _rename(self, name: str, target: str) -> Op:
        def done(m: Model) -> None:
            m[target] = m.pop(name)

        return Op(
            "rename",
            (name, target),
            lambda d: d.finish(d.call("POST", f"{VOLUMES}/{_q(name)}", {"name": target})),
            done,
            lambda d, m: _exists(d, target),
        )

    def _grow(self, name: str) -> Op:
        size = self.model[name].size + 8

        def done(m: Model) -> None:
            m[name].size = size

        return Op(
            "grow",
            (name,),
            lambda d: d.call("PATCH", f"{VOLUMES}/{_q(name)}", {"config": {"size": f"{size}GiB"}}),
            done,
            lambda d, m: _volume(d, name)["config"]["size"] == f"{size}GiB",
        )

    def _set(self, name: str) -> Op:
        value = str(self.rng.randrange(10**6))

        def done(m: Model) -> None:
            m[name].keys["user.soak"] = value

        return Op(
            "set",
            (name,),
            lambda d: d.call("PATCH", f"{VOLUMES}/{_q(name)}", {"config": {"user.soak": value}}),
            done,
            lambda d, m: _volume(d, name)["config"].get("user.soak") == value,
        )

    def _backup(self, name: str, target: str) -> Op:
        """Export a backup, download it, delete it, and import it as ``target``."""
        backup = self._new("b")
        base = f"{VOLUMES}/{_q(name)}/backups"

        def run(d: Daemon) -> Answer:
            made = d.finish(d.call("POST", base, {"name": backup, "compression_algorithm": "gzip"}))
            if made.status != 200:
                return made
            tarball = d.call("GET", f"{base}/{backup}/export")
            if tarball.status != 200:
                return tarball
            dropped = d.finish(d.call("DELETE", f"{base}/{backup}"))
            if dropped.status != 200:
                return dropped
            return d.finish(
                d.call(
                    "POST",
                    VOLUMES,
                    raw=tarball.raw,
                    headers={"Content-Type": "application/octet-stream", "X-LXD-name": target},
                )
            )

        def done(m: Model) -> None:
            m[target] = m[name].clone()

        return Op("backup", (name, target), run, done, lambda d, m: _exists(d, target))
