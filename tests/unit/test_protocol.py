import pytest

from lxflex.powerflex import protocol as p
from lxflex.powerflex.models import RemoveMode, SnapshotDef, Volume, VolumeType, decode

GIB = 1024**3


def test_create_volume_sends_strings_in_kib() -> None:
    call = p.create_volume("sp1id", 10 * GIB + 1, "vol", thin=False)
    assert (call.method, call.path, call.idempotent) == (
        "POST",
        "/api/types/Volume/instances",
        False,
    )
    assert call.body == {
        "storagePoolId": "sp1id",
        "volumeSizeInKb": str(10 * 1024 * 1024 + 1),
        "volumeType": "ThickProvisioned",
        "name": "vol",
    }
    assert call.parse({"id": "abc"}) == "abc"
    assert "name" not in (p.create_volume("sp", GIB).body or {})
    with pytest.raises(ValueError, match="positive"):
        p.create_volume("sp", 0)


def test_set_volume_size_needs_whole_gib() -> None:
    assert p.set_volume_size("v", 16 * GIB).body == {"sizeInGB": "16"}
    with pytest.raises(ValueError, match="GiB"):
        p.set_volume_size("v", GIB + 1)


def test_paths_quote_ids_and_reads_are_idempotent() -> None:
    call = p.volume("../../x")
    assert call.path == "/api/instances/Volume::..%2F..%2Fx"
    assert call.idempotent
    assert p.volume_id("n").idempotent
    assert not p.create_volume("sp", 8 * GIB).idempotent
    assert not p.snapshot_volumes([SnapshotDef("a", "s")]).idempotent
    assert not p.add_mapped_host("v", "h").idempotent
    assert not p.rename_volume("v", "n").idempotent


def test_safe_actions_are_idempotent_with_their_done_codes() -> None:
    assert p.remove_volume("v").idempotent
    assert p.remove_volume("v").settled == {79}
    assert p.remove_mapped_host("v").settled == {84, 4039}
    assert p.remove_mapped_sdc("v", sdc_id="s").settled == {84, 4039}
    assert p.set_volume_size("v", 8 * GIB).settled == {133}
    assert p.overwrite_volume_content("v", "s").idempotent
    assert p.refresh_volume("v", "s").idempotent
    assert p.remove_volume("v", RemoveMode.WHOLE_VTREE).body == {"removeMode": "WHOLE_VTREE"}


def test_snapshot_volumes_body() -> None:
    call = p.snapshot_volumes([SnapshotDef("a", "sa"), SnapshotDef("b", "sb")], read_only=True)
    assert call.path == "/api/instances/System/action/snapshotVolumes"
    assert call.body == {
        "snapshotDefs": [
            {"volumeId": "a", "snapshotName": "sa"},
            {"volumeId": "b", "snapshotName": "sb"},
        ],
        "accessModeLimit": "ReadOnly",
    }
    result = call.parse({"volumeIdList": ["x", "y"], "snapshotGroupId": "g"})
    assert result.volume_id_list == ["x", "y"]
    with pytest.raises(ValueError, match="at least one"):
        p.snapshot_volumes([])


def test_mapping_bodies() -> None:
    assert p.add_mapped_host("v", "h", allow_multiple=True).body == {
        "hostId": "h",
        "allowMultipleMappings": "TRUE",
        "accessMode": "ReadWrite",
    }
    assert p.remove_mapped_host("v").body == {"allHosts": ""}
    assert p.remove_mapped_host("v", "h").body == {"hostId": "h"}
    assert p.add_mapped_sdc("v", guid="G").body == {
        "guid": "G",
        "allowMultipleMappings": "FALSE",
        "accessMode": "ReadWrite",
    }
    assert p.remove_mapped_sdc("v").body == {"allSdcs": ""}
    assert p.remove_mapped_sdc("v", sdc_id="s").body == {"sdcId": "s"}
    with pytest.raises(ValueError, match="exactly one"):
        p.add_mapped_sdc("v")
    with pytest.raises(ValueError, match="at most one"):
        p.remove_mapped_sdc("v", sdc_id="a", guid="b")
    assert p.overwrite_volume_content("t", "s").body == {"srcVolumeId": "s"}
    assert p.remove_host("h").body == {}


def test_volume_decoding_accepts_strings_and_null_mappings() -> None:
    raw = {
        "id": "0a",
        "name": "n",
        "sizeInKb": "8388608",
        "storagePoolId": "sp",
        "vtreeId": "vt",
        "ancestorVolumeId": None,
        "volumeType": "ThinProvisioned",
        "creationTime": "1700000000",
        "mappedSdcInfo": None,
        "nsid": "3",
        "unknownField": {"x": 1},
    }
    vol = decode(raw, Volume)
    assert vol.size_bytes == 8 * GIB
    assert vol.volume_type is VolumeType.THIN
    assert vol.mapped_host_ids == frozenset()
    assert vol.nsid == 3
    raw["mappedSdcInfo"] = [{"sdcId": "h1", "hostType": "NVMeHost", "nqn": "nqn.x"}]
    raw["volumeType"] = "Snapshot"
    vol = decode(raw, Volume)
    assert vol.mapped_host_ids == {"h1"}
    assert vol.is_snapshot


def test_parse_errors_surface_as_type_errors() -> None:
    with pytest.raises(TypeError):
        p.volume_id("x").parse({"not": "a string"})
    with pytest.raises(TypeError):
        p.create_volume("sp", GIB).parse(["no id"])
