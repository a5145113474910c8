import pytest

from lxflex.driver.config import (
    PASSWORD_KEY,
    ConfigError,
    copy_volume_config,
    fill_volume_config,
    imported_volume_config,
    updated_volume_config,
    validate_pool_config,
    validate_volume_config,
)
from lxflex.secret import Secret

BASE = {"powerflex.gateway": "gw.example:443", "powerflex.pool": "0123456789abcdef"}
PW = Secret("pw")


def test_minimal_pool_config() -> None:
    validate_pool_config(BASE, PW, creating=True)
    validate_pool_config(
        {**BASE, "powerflex.pool": "sp1", "powerflex.domain": "pd1"}, PW, creating=True
    )


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        ({"powerflex.pool": "sp1"}, "powerflex.pool", "set powerflex.domain"),
        ({"powerflex.gateway": "ftp://x"}, "powerflex.gateway", "scheme"),
        ({"powerflex.gateway.verify": "maybe"}, "powerflex.gateway.verify", "true or false"),
        ({"powerflex.gateway.connections": "0"}, "powerflex.gateway.connections", "1 to 1024"),
        ({"powerflex.gateway.connections": "-5"}, "powerflex.gateway.connections", "whole"),
        ({"powerflex.gateway.connections": "5000"}, "powerflex.gateway.connections", "1 to"),
        ({"powerflex.mode": "iscsi"}, "powerflex.mode", "one of"),
        ({"powerflex.sdt": "10.0.0.1,,x"}, "powerflex.sdt", "comma-separated"),
        ({"powerflex.sdt": "bad host!"}, "powerflex.sdt", "not an IP"),
        ({"powerflex.sdt": "10.0.0.1:99999"}, "powerflex.sdt", "port"),
        ({"volume.size": "10GB"}, "volume.size", "whole number of GiB"),
        ({"volume.size": "8gib"}, "volume.size", "unknown unit"),
        ({"volume.block.type": "sparse"}, "volume.block.type", "thin, thick"),
        ({"volume.block.filesystem": "zfs"}, "volume.block.filesystem", "ext4"),
        ({"powerflex.foo": "1"}, "powerflex.foo", "unknown pool"),
        (
            {"powerflex.clone_copy": "true", "powerflex.snapshot_copy": "true"},
            "powerflex.snapshot_copy",
            "contradicts",
        ),
        ({"powerflex.mode": "sdc", "powerflex.sdt": "10.0.0.1"}, "powerflex.sdt", "nvme/tcp"),
        ({"volatile.powerflex.version": "4.5"}, "volatile.powerflex.version", "read-only"),
        ({PASSWORD_KEY: "pw"}, PASSWORD_KEY, "given apart from the config"),
    ],
)
def test_pool_config_errors_name_the_key(extra: dict[str, str], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_pool_config({**BASE, **extra}, PW, creating=True)
    assert info.value.key == key
    assert reason in str(info.value)
    assert str(info.value).startswith(f'Invalid value for "{key}"')


@pytest.mark.parametrize("password", [None, Secret("")])
def test_a_pool_needs_a_password(password: Secret | None) -> None:
    with pytest.raises(ConfigError, match="is required") as info:
        validate_pool_config(BASE, password, creating=True)
    assert info.value.key == PASSWORD_KEY


def test_consistent_copy_keys_and_lxd_mode_spelling() -> None:
    validate_pool_config(
        {**BASE, "powerflex.clone_copy": "false", "powerflex.snapshot_copy": "true"},
        PW,
        creating=True,
    )
    validate_pool_config(
        {**BASE, "powerflex.mode": "nvme", "powerflex.sdt": "[::1]:4420,host.example"},
        PW,
        creating=True,
    )


def test_volume_config() -> None:
    validate_volume_config({"size": "10GiB", "block.type": "thick", "block.filesystem": "xfs"})
    with pytest.raises(ConfigError, match="size"):
        validate_volume_config({"size": "0"})
    with pytest.raises(ConfigError, match="unknown volume"):
        validate_volume_config({"zfs.blocksize": "8k"})


# --- the volume config authority ---------------------------------------------------------

GIB = 1 << 30
SOURCE = {
    "size": "8GiB",
    "block.type": "thin",
    "block.filesystem": "ext4",
    "block.mount_options": "discard",
    "volatile.uuid": "6b0f7ad6-3a52-4b27-8a6f-9c1d2c3e4f50",
}


def test_fill_takes_the_pools_defaults_then_the_tables() -> None:
    pool = {"volume.block.filesystem": "xfs", "volume.snapshots.expiry": "1w"}
    filled = fill_volume_config(pool, "filesystem", {"size": "9GiB"}, step=8 * GIB)
    assert filled == {
        "size": "16GiB",
        "block.type": "thin",
        "block.filesystem": "xfs",
        "block.mount_options": "discard",
        "snapshots.expiry": "1w",
    }
    # No size anywhere: the array's step (8 GiB on PowerFlex 4, 1 GiB on 5); 0 is none.
    assert fill_volume_config({}, "block", {}, step=GIB)["size"] == "1GiB"
    assert fill_volume_config({}, "block", {"size": "0"}, step=8 * GIB)["size"] == "8GiB"
    assert "block.filesystem" not in fill_volume_config({}, "block", {}, step=GIB)
    with pytest.raises(ConfigError, match="applies to filesystem volumes, not block"):
        fill_volume_config({}, "block", {"block.filesystem": "xfs"}, step=GIB)


@pytest.mark.parametrize(
    ("config", "key", "words"),
    [
        ({"size": "banana"}, "size", "banana"),
        ({"block.type": "banana"}, "block.type", "thin, thick"),
        ({"block.filesystem": "xfs"}, "block.filesystem", "cannot differ"),
        ({"size": "4GiB"}, "size", "smaller than its source"),
        ({"nope": "1"}, "nope", "unknown volume"),
    ],
)
def test_a_copy_refuses(config: dict[str, str], key: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        copy_volume_config(SOURCE, config)
    assert info.value.key == key


def test_a_copy_takes_lxcs_echo_of_the_source_and_what_may_change() -> None:
    echoed = {**SOURCE, "size": "16GiB", "user.note": "x", "block.type": "thick"}
    copied = copy_volume_config(SOURCE, echoed)
    assert copied["size"] == "16GiB"
    assert copied["block.type"] == "thick"
    assert copied["user.note"] == "x"
    assert copied["volatile.uuid"] == SOURCE["volatile.uuid"]  # the caller replaces it


def test_an_import_keeps_known_and_user_keys_only() -> None:
    lxd = {"size": "10GiB", "zfs.blocksize": "16k", "user.a": "b", "volatile.uuid": "x"}
    assert imported_volume_config(lxd) == {"size": "10GiB", "user.a": "b"}


def test_an_update_keeps_fixed_keys_and_restores_defaults() -> None:
    current = {**SOURCE, "block.mount_options": "noatime", "user.a": "b"}
    pool = {"volume.block.mount_options": "discard,noatime"}
    new = updated_volume_config(current, {"user.a": "c"}, "filesystem", pool)
    assert new == {**SOURCE, "block.mount_options": "discard,noatime", "user.a": "c"}
    with pytest.raises(ConfigError, match="cannot be changed"):
        updated_volume_config(current, {"block.filesystem": "xfs"}, "filesystem", pool)
