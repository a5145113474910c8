"""Reading backup/index.yaml as LXD writes it: Go times, snapshots, bad input."""

from __future__ import annotations

import datetime

import pytest

from lxflex.driver.errors import InvalidRequest
from lxflex.service.backups import _read_index, _snapshots

LXD_INDEX = b"""
name: vol1
backend: powerflex
pool: default
snapshots:
- snap0
optimized: false
optimized_header: false
type: custom
config:
  volume:
    name: vol1
    content_type: block
    config: {size: 8GiB, volatile.uuid: 1b2e3c4d-0000-4000-8000-000000000000, user.a: b}
  volume_snapshots:
  - name: snap0
    description: before
    config: {user.kept: "1", size: 8GiB}
    expires_at: "2030-01-02T03:04:05.123456789Z"
"""


def test_an_lxd_index() -> None:
    index = _read_index(LXD_INDEX)
    (snap,) = _snapshots(index)
    assert snap["name"] == "snap0"
    assert snap["description"] == "before"
    assert snap["config"] == {"user.kept": "1"}  # only user keys travel with a snapshot
    assert snap["expires_at"] == datetime.datetime(2030, 1, 2, 3, 4, 5, 123456, datetime.UTC)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"- a list", "not a mapping"),
        (b"{type: container, name: c1}", "not of a custom volume"),
        (b"name: [unclosed", "not valid YAML"),
        (b"{name: v, backend: btrfs, optimized: true}", "optimized backup of a btrfs pool"),
    ],
)
def test_bad_indexes(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        _read_index(raw)


def test_bad_snapshot_names_and_times() -> None:
    with pytest.raises(InvalidRequest, match="invalid name"):
        _snapshots({"snapshots": ["../x"]})
    index = {
        "snapshots": ["s"],
        "config": {"volume_snapshots": [{"name": "s", "expires_at": "soon"}]},
    }
    with pytest.raises(InvalidRequest, match="not RFC 3339"):
        _snapshots(index)
