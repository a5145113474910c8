import pytest

from lxflex.driver.config import ConfigError, validate_pool_config, validate_volume_config

BASE = {
    "powerflex.gateway": "gw.example:443",
    "powerflex.user.password": "pw",
    "powerflex.pool": "0123456789abcdef",
}


def test_minimal_pool_config() -> None:
    validate_pool_config(BASE, creating=True)
    validate_pool_config(
        {**BASE, "powerflex.pool": "sp1", "powerflex.domain": "pd1"}, creating=True
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
        ({"powerflex.user.password": ""}, "powerflex.user.password", "must not be empty"),
    ],
)
def test_pool_config_errors_name_the_key(extra: dict[str, str], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_pool_config({**BASE, **extra}, creating=True)
    assert info.value.key == key
    assert reason in str(info.value)
    assert str(info.value).startswith(f'Invalid value for "{key}"')


def test_consistent_copy_keys_and_lxd_mode_spelling() -> None:
    validate_pool_config(
        {**BASE, "powerflex.clone_copy": "false", "powerflex.snapshot_copy": "true"}, creating=True
    )
    validate_pool_config(
        {**BASE, "powerflex.mode": "nvme", "powerflex.sdt": "[::1]:4420,host.example"},
        creating=True,
    )


def test_volume_config() -> None:
    validate_volume_config({"size": "10GiB", "block.type": "thick", "block.filesystem": "xfs"})
    with pytest.raises(ConfigError, match="size"):
        validate_volume_config({"size": "0"})
    with pytest.raises(ConfigError, match="unknown volume"):
        validate_volume_config({"zfs.blocksize": "8k"})
