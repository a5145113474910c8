"""Running host commands through one seam.

Every external tool (nvme, mkfs.*, mount, resize2fs, fsfreeze, ...) runs through a
:class:`Runner`. :class:`SubprocessRunner` executes with an argv list (never a shell), a
timeout and a clean locale; tests give a recording runner instead. A failure is a
:class:`CommandError` carrying argv, exit code and stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["CommandError", "Completed", "Runner", "SubprocessRunner"]

log = logging.getLogger("lxflex.host")


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


class CommandError(Exception):
    """A command exited non-zero, timed out, or could not start."""

    def __init__(self, argv: Sequence[str], rc: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.rc = rc
        self.stderr = stderr.strip()
        detail = self.stderr.splitlines()[-1] if self.stderr else f"exit code {rc}"
        super().__init__(f"{os.path.basename(self.argv[0])} failed: {detail}")


class Runner(Protocol):
    async def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 300.0
    ) -> Completed: ...


class SubprocessRunner:
    """Run commands as child processes of this one."""

    async def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 300.0
    ) -> Completed:
        args = [str(a) for a in argv]
        env = {**os.environ, "LC_ALL": "C"}
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise CommandError(args, 127, f"cannot run {args[0]}: {exc.strerror}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise CommandError(args, -9, f"timed out after {timeout:g} s") from None
        except asyncio.CancelledError:  # the work was cancelled: so is its command
            proc.kill()
            await asyncio.shield(proc.wait())
            raise
        done = Completed(
            tuple(args),
            proc.returncode or 0,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )
        log.debug("ran %s -> %d", " ".join(args), done.rc)
        if check and done.rc != 0:
            raise CommandError(args, done.rc, done.stderr or done.stdout)
        return done
