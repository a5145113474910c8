"""The reverter: undo steps newest first, failures kept, the operation's error stands."""

from __future__ import annotations

import asyncio

import pytest

from lxflex.revert import Reverter


async def test_success_undoes_nothing() -> None:
    done: list[str] = []

    async def undo() -> None:
        done.append("undo")

    async with Reverter() as revert:
        revert.add(undo, "step")
        revert.success()
    assert done == []


async def test_failure_undoes_newest_first_and_keeps_the_error() -> None:
    done: list[str] = []

    def step(name: str):  # type: ignore[no-untyped-def]
        async def undo() -> None:
            done.append(name)

        return undo

    async def operation() -> None:
        async with Reverter() as revert:
            revert.add(step("a"), "a")
            revert.add(step("b"), "b")
            raise ValueError("the operation")

    with pytest.raises(ValueError, match="the operation"):
        await operation()
    assert done == ["b", "a"]


async def test_forgotten_success_reverts() -> None:
    done: list[str] = []

    async def undo() -> None:
        done.append("undo")

    async with Reverter() as revert:
        revert.add(undo, "step")
    assert done == ["undo"]


async def test_failed_undo_is_kept_and_the_rest_still_run() -> None:
    done: list[str] = []
    kept: list[tuple[str, str]] = []

    async def broken() -> None:
        raise OSError("gateway refused")

    async def fine() -> None:
        done.append("fine")

    async def keep(exc: BaseException) -> None:
        kept.append(("broken", str(exc)))

    async def operation() -> None:
        async with Reverter() as revert:
            revert.add(fine, "fine")
            revert.add(broken, "broken", kept=keep)
            raise RuntimeError("first")

    with pytest.raises(RuntimeError, match="first"):
        await operation()
    assert done == ["fine"]
    assert kept == [("broken", "gateway refused")]


async def test_a_failing_keeper_does_not_hide_the_error() -> None:
    async def broken() -> None:
        raise OSError("no")

    async def keep(exc: BaseException) -> None:
        raise OSError("database gone")

    async def operation() -> None:
        async with Reverter() as revert:
            revert.add(broken, "broken", kept=keep)
            raise KeyError("op")

    with pytest.raises(KeyError):
        await operation()


async def test_cancellation_reverts_everything_and_stays_a_cancellation() -> None:
    done: list[str] = []
    started = asyncio.Event()

    async def undo() -> None:
        done.append("undo")

    async def operation() -> None:
        async with Reverter() as revert:
            revert.add(undo, "step")
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(operation())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["undo"]


async def test_cancelled_undo_runs_the_others_then_reraises() -> None:
    done: list[str] = []

    async def cancelled() -> None:
        raise asyncio.CancelledError

    async def fine() -> None:
        done.append("fine")

    revert = Reverter()
    revert.add(fine, "fine")
    revert.add(cancelled, "cancelled")
    with pytest.raises(asyncio.CancelledError):
        await revert.revert()
    assert done == ["fine"]


async def test_revert_reports_what_failed() -> None:
    async def broken() -> None:
        raise OSError("no")

    async def fine() -> None:
        pass

    revert = Reverter()
    revert.add(fine, "fine")
    revert.add(broken, "remove volume 1")
    assert await revert.revert() == ["remove volume 1"]
    assert await revert.revert() == []  # steps run once
