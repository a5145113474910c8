"""Which devices of an instance that arrived on this host are another host's uses of a
volume (the instance moved or was copied here by migration)."""

from __future__ import annotations

import datetime

from lxflex.service.instance_uses import _came_with
from lxflex.state.attachments import Attachment

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def _use(volume_id: int, device: str, path: str, project: str = "default") -> Attachment:
    return Attachment(volume_id, volume_id, "server-a", path, "c1", project, device, "/a", NOW)


def test_only_a_device_with_the_name_and_source_of_a_use_elsewhere_is_one() -> None:
    data = _use(1, "data", "/var/lib/lxflex/storage-pools/pf/custom/default_data")
    raw = _use(2, "raw", "/dev/nvme0n2")
    doc = {
        "name": "c2",  # renamed on the way: the device tells, not the name
        "project": "default",
        "devices": {
            "data": {"type": "disk", "source": data.path, "path": "/data"},
            "raw": {"type": "unix-block", "source": "/dev/nvme0n9", "path": "/raw"},
            "other": {"type": "disk", "source": raw.path, "path": "/other"},
            "root": {"type": "disk", "path": "/", "pool": "default"},
        },
    }
    assert [(d, u.volume_id) for d, _, u in _came_with(doc, [data, raw])] == [("data", 1)]


def test_a_use_in_another_project_is_not_the_instances() -> None:
    data = _use(1, "data", "/srv/x", project="p1")
    doc = {"project": "p2", "devices": {"data": {"type": "disk", "source": "/srv/x"}}}
    assert _came_with(doc, [data]) == []
    assert [d for d, _, _ in _came_with(doc, [data], "p1")] == ["data"]
