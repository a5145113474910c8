import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lxflex.driver.naming import Content, VolumeType, parse_name, volume_name
from lxflex.driver.units import GIB, format_size, granularity, parse_size, round_up


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("", 0),
        ("0", 0),
        ("512", 512),
        ("512B", 512),
        ("10 bytes", 10),
        ("1kB", 1000),
        ("1MB", 10**6),
        ("10GB", 10 * 10**9),
        ("2TB", 2 * 10**12),
        ("1KiB", 1024),
        ("8GiB", 8 * GIB),
        ("1TiB", 1024 * GIB),
        ("1EiB", 1024**6),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["GiB", "1.5GiB", "-1GiB", "10gib", "10 GiB", "10G", "ten", "1ZiB", "9999999EiB"]
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_format_and_round() -> None:
    assert format_size(8 * GIB) == "8GiB"
    assert format_size(1536 * 1024**2) == "1536MiB"
    assert format_size(1000) == "1000B"
    assert granularity("4.5") == 8 * GIB
    assert granularity("3.6") == 8 * GIB
    assert granularity("5.0") == GIB
    assert round_up(1, 8 * GIB) == 8 * GIB
    assert round_up(0, 8 * GIB) == 8 * GIB
    assert round_up(10 * GIB, 8 * GIB) == 16 * GIB
    assert round_up(16 * GIB, 8 * GIB) == 16 * GIB


def test_spec_example() -> None:
    u = uuid.UUID("5a2504b0-6a6c-4849-8ee7-ddb0b674fd14")
    assert volume_name(VolumeType.CONTAINER, Content.FILESYSTEM, u) == "c_WiUEsGpsSEmO592wtnT9FA=="
    assert (
        volume_name(VolumeType.VIRTUAL_MACHINE, Content.BLOCK, u) == "v_WiUEsGpsSEmO592wtnT9FA==.b"
    )
    assert volume_name(VolumeType.CUSTOM, Content.ISO, u) == "u_WiUEsGpsSEmO592wtnT9FA==.i"
    assert volume_name(VolumeType.IMAGE, Content.FILESYSTEM, u) == "i_WiUEsGpsSEmO592wtnT9FA=="
    assert volume_name(VolumeType.CUSTOM, Content.FILESYSTEM, u, snapshot=True) == (
        "su_WiUEsGpsSEmO592wtnT9FA=="
    )


@given(st.uuids(), st.sampled_from(list(VolumeType)), st.sampled_from(list(Content)), st.booleans())
def test_names_fit_and_decode(
    u: uuid.UUID, vtype: VolumeType, content: Content, snap: bool
) -> None:
    name = volume_name(vtype, content, u, snapshot=snap)
    assert len(name) <= 31
    parsed = parse_name(name)
    assert parsed is not None
    assert (parsed.volume_type, parsed.content, parsed.uuid, parsed.snapshot) == (
        vtype,
        content,
        u,
        snap,
    )


@pytest.mark.parametrize(
    "name", ["vol1", "x_WiUEsGpsSEmO592wtnT9FA==", "u_short", "u_WiUEsGpsSEmO592wtnT9FA", ""]
)
def test_foreign_names_do_not_decode(name: str) -> None:
    assert parse_name(name) is None
