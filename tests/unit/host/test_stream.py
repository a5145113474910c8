"""The device stream: a sparse round trip, old data cleared, damage and cuts detected."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from lxflex.host.stream import StreamError, StreamSink, stream_out

MIB = 1 << 20
SIZE = 64 * MIB
CHUNKS = {0: os.urandom(4096), 5 * MIB + 512: os.urandom(70_000), SIZE - 4096: os.urandom(4096)}


def _source(tmp_path: Path) -> Path:
    path = tmp_path / "src.img"
    with open(path, "wb") as f:
        f.truncate(SIZE)
        for offset, data in CHUNKS.items():
            f.seek(offset)
            f.write(data)
    return path


def _target(tmp_path: Path, fill: bytes | None = None) -> Path:
    path = tmp_path / "dst.img"
    with open(path, "wb") as f:
        f.truncate(SIZE)
        if fill is not None:
            for offset in range(0, SIZE, MIB):
                f.seek(offset)
                f.write(fill * (MIB // len(fill)))
    return path


def _stream(source: Path) -> bytes:
    return b"".join(stream_out(source))


def test_round_trip_stays_sparse(tmp_path: Path) -> None:
    source = _source(tmp_path)
    stream = _stream(source)
    assert len(stream) < 200_000  # the data and its frames, not 64 MiB
    target = _target(tmp_path)
    seen: list[tuple[int, int]] = []
    sink = StreamSink(target, target_zeroed=True, progress=lambda d, t: seen.append((d, t)))
    for i in range(0, len(stream), 7_777):  # any piece sizes
        sink.feed(stream[i : i + 7_777])
    result = sink.finish()
    assert target.read_bytes() == source.read_bytes()
    assert result.total == SIZE
    assert result.written < 100_000
    assert target.stat().st_blocks * 512 < 400_000
    assert seen[-1][1] == SIZE


def test_old_data_of_the_target_is_cleared(tmp_path: Path) -> None:
    source = _source(tmp_path)
    target = _target(tmp_path, fill=b"old!")
    sink = StreamSink(target, target_zeroed=False)
    sink.feed(_stream(source))
    result = sink.finish()
    assert target.read_bytes() == source.read_bytes()
    assert result.zeroed > SIZE - 200_000


def test_damage_is_detected(tmp_path: Path) -> None:
    stream = bytearray(_stream(_source(tmp_path)))
    stream[100] ^= 0xFF  # inside the first extent's data
    sink = StreamSink(_target(tmp_path), target_zeroed=True)
    with pytest.raises(StreamError, match="damaged"):
        sink.feed(bytes(stream))
    sink.close()


def test_a_cut_stream_fails(tmp_path: Path) -> None:
    stream = _stream(_source(tmp_path))
    sink = StreamSink(_target(tmp_path), target_zeroed=True)
    sink.feed(stream[:-33])  # without the end frame
    with pytest.raises(StreamError, match="cut short"):
        sink.finish()


def test_bad_frames_are_refused(tmp_path: Path) -> None:
    header = struct.pack(">8sQI", b"LXFLEXS1", SIZE, 4096)
    cases = {
        b"NOTASTRM" + header[8:]: "bad header",
        header + struct.pack(">cQI", b"D", SIZE, 1) + b"x": "out of order or bounds",
        header + b"Z": "unknown frame",
    }
    for stream, message in cases.items():
        sink = StreamSink(_target(tmp_path), target_zeroed=True)
        with pytest.raises(StreamError, match=message):
            sink.feed(stream)
        sink.close()
    small = tmp_path / "small.img"
    small.write_bytes(bytes(4096))
    sink = StreamSink(small, target_zeroed=True)
    with pytest.raises(StreamError, match="smaller than the stream"):
        sink.feed(header)
    sink.close()
