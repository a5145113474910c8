"""The simulator's backing files appear only when a volume's data is needed, and a volume
without one behaves as all zeros in clones and overwrites."""

from __future__ import annotations

from pathlib import Path

from lxflex.sim.data import DataStore

MIB = 1 << 20


def _read(store: DataStore, vol: str, offset: int, length: int) -> bytes:
    with open(store.path(vol), "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_materialize_once(tmp_path: Path) -> None:
    store = DataStore(tmp_path)
    path = store.materialize("a1", 64 * MIB)
    assert path.stat().st_size == 64 * MIB
    assert store.allocated("a1") == 0
    path.write_bytes(b"kept")
    assert store.materialize("a1", 64 * MIB).read_bytes()[:4] == b"kept"
    store.grow("nofile", 128 * MIB)  # a volume without a file has nothing to grow
    assert not store.path("nofile").exists()


def test_clone_of_a_volume_without_data(tmp_path: Path) -> None:
    store = DataStore(tmp_path)
    store.clone("src1", "dst1")
    assert not store.path("dst1").exists()
    assert store.allocated("dst1") == 0


def test_overwrite_from_a_volume_without_data_zeroes_in_place(tmp_path: Path) -> None:
    store = DataStore(tmp_path)
    target = store.materialize("tgt1", 16 * MIB)
    with open(target, "r+b") as f:
        f.seek(MIB)
        f.write(b"old data" * 512)
    inode = target.stat().st_ino
    store.overwrite("empty1", "tgt1", 16 * MIB)
    assert target.stat().st_ino == inode
    assert _read(store, "tgt1", MIB, 4096) == bytes(4096)
    assert store.allocated("tgt1") == 0


def test_overwrite_onto_a_volume_without_data(tmp_path: Path) -> None:
    store = DataStore(tmp_path)
    with open(store.materialize("src2", 16 * MIB), "r+b") as f:
        f.seek(2 * MIB)
        f.write(b"snapshot")
    store.overwrite("src2", "tgt2", 16 * MIB)
    assert store.path("tgt2").stat().st_size == 16 * MIB
    assert _read(store, "tgt2", 2 * MIB, 8) == b"snapshot"
