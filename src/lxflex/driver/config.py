"""The configuration keys of a PowerFlex pool and of its volumes, with their rules.

Each key is a :class:`Key`: default, validator, whether it may change on a live pool (and
why not, when not), and a description that the README's key table repeats. Validation is
pure: it checks the form of each value, and the cross-key rules that need no gateway
(``powerflex.domain`` turns ``powerflex.pool`` into a name; ``clone_copy`` and
``snapshot_copy`` must not contradict). The driver checks the rest against the gateway.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..host.nvme import split_address
from ..powerflex.policy import parse_gateway
from ..powerflex.transport import DEFAULT_CONNECTIONS
from ..secret import Secret
from .units import GIB, format_size, parse_size

__all__ = [
    "PASSWORD_KEY",
    "POOL_KEYS",
    "SCHEDULE_ALIASES",
    "VOLUME_KEYS",
    "ConfigError",
    "Key",
    "bool_value",
    "copy_volume_config",
    "fill_volume_config",
    "imported_volume_config",
    "schedule_parts",
    "updated_volume_config",
    "validate_pool_config",
    "validate_volume_config",
]

MODE_NVME = "nvme/tcp"
MODE_SDC = "sdc"
MODES = (MODE_NVME, "nvme", MODE_SDC)
FILESYSTEMS = ("ext4", "xfs", "btrfs")


class ConfigError(ValueError):
    """A configuration value is invalid; ``key`` names it."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f'Invalid value for "{key}": {reason}')


def _bool(value: str) -> None:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError("must be true or false")


def bool_value(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.lower() in ("true", "1", "yes", "on")


def _nonempty(value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


def _gateway(value: str) -> None:
    parse_gateway(value)


_MAX_CONNECTIONS = 1024


def _connections(value: str) -> None:
    if not value.isdigit() or not 1 <= int(value) <= _MAX_CONNECTIONS:
        raise ValueError(f"must be a whole number from 1 to {_MAX_CONNECTIONS}")


def _idmap(value: str) -> None:
    try:
        doc = json.loads(value)
    except ValueError:
        raise ValueError("is not an ID map (LXD's JSON list of ranges)") from None
    if not isinstance(doc, list):
        raise ValueError("is not an ID map (LXD's JSON list of ranges)")


def _one_of(*choices: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")

    return check


_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def _address(value: str) -> None:
    host, port = split_address(value)
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{value!r} has an invalid port")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST.match(host):
            raise ValueError(f"{value!r} is not an IP address or host name") from None


def _addresses(value: str) -> None:
    parts = [p.strip() for p in value.split(",")]
    if not all(parts):
        raise ValueError("must be a comma-separated list of addresses")
    for part in parts:
        _address(part)


def _size(value: str) -> None:
    if parse_size(value) <= 0:
        raise ValueError("must be larger than zero")


def _pool_volume_size(value: str) -> None:
    size = parse_size(value)
    if size <= 0 or size % GIB:
        raise ValueError("must be a positive whole number of GiB (8GiB steps on PowerFlex 4)")


def _read_only(_: str) -> None:
    raise ValueError("is read-only")


_EXPIRY = re.compile(r"^(\d+[MHdwmy])( \d+[MHdwmy])*$")


def _expiry(value: str) -> None:
    """LXD's expiry: space-separated amounts with units M (minutes), H, d, w, m, y."""
    if not _EXPIRY.match(value):
        raise ValueError("must be like 3d, 2w, 1m or 6H (several joined by spaces)")


def _pattern(value: str) -> None:
    if "/" in value or not value.strip():
        raise ValueError("must be a snapshot name pattern without slashes, like snap%d")
    if "{{" in value or "{%" in value:
        raise ValueError("templates are not supported: use %d for a counter, like snap%d")


SCHEDULE_ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@annually", "@yearly")


def schedule_parts(value: str) -> list[str]:
    """The triggers of a ``snapshots.schedule``: one cron expression, or aliases joined
    by ", " (a bare comma belongs to cron, as in LXD)."""
    return [part.strip().lower() for part in value.split(", ") if part.strip()]


def _schedule(value: str) -> None:
    from croniter import croniter  # loaded only by configs that schedule

    for part in schedule_parts(value):
        if part in SCHEDULE_ALIASES:
            continue
        if len(part.split()) != 5 or not croniter.is_valid(part):
            raise ValueError(
                f"{part!r} is not a schedule: a cron expression (minute hour day month "
                f"weekday) or aliases joined by ', ' ({', '.join(SCHEDULE_ALIASES)})"
            )


ALL_CONTENTS = ("filesystem", "block", "iso")


@dataclass(frozen=True)
class Key:
    """A key's rules. For volume keys also: the pool key that gives new volumes their
    default (``pool_key``), the contents it applies to, whether every volume carries it
    (``always``: filled at creation, and its default again when unset), whether a copy
    may set it (``copied``: else it must keep the source's value) and whether a backup
    import takes it (``imported``)."""

    default: str | None
    check: Callable[[str], None]
    description: str
    live: bool = True
    why_not_live: str = ""
    pool_key: str | None = None
    contents: tuple[str, ...] = ALL_CONTENTS
    always: bool = False
    copied: bool = True
    imported: bool = True
    secret: bool = False  # given apart from the config, as a Secret; never shown back


PASSWORD_KEY = "powerflex.user.password"  # noqa: S105 - the key, not a value

POOL_KEYS: dict[str, Key] = {
    "powerflex.gateway": Key(
        None,
        _gateway,
        "Address of the PowerFlex gateway: host, host:port or https:// URL.",
        live=True,
    ),
    "powerflex.gateway.verify": Key(
        "true", _bool, "Whether to verify the gateway's TLS certificate."
    ),
    "powerflex.gateway.connections": Key(
        str(DEFAULT_CONNECTIONS),
        _connections,
        "Most requests this host has in flight to the gateway at once; more wait their turn.",
    ),
    "powerflex.user.name": Key("admin", _nonempty, "Gateway user; needs the SystemAdmin role."),
    PASSWORD_KEY: Key(None, _nonempty, "Gateway password; never shown back.", secret=True),
    "powerflex.pool": Key(
        None,
        _nonempty,
        "Storage pool ID, or its name when powerflex.domain is set.",
        live=False,
        why_not_live="the pool's volumes live in this PowerFlex storage pool",
    ),
    "powerflex.domain": Key(
        "",
        lambda v: None,
        "Protection domain name, needed only for a pool given by name.",
        live=False,
        why_not_live="it selects the PowerFlex storage pool, which cannot change",
    ),
    "powerflex.mode": Key(
        None,
        _one_of(*MODES),
        "How volumes reach this host: nvme/tcp (LXD's spelling nvme is accepted) or sdc; "
        "discovered when unset.",
        live=False,
        why_not_live="attached volumes depend on the mode; recreate the pool",
    ),
    "powerflex.sdt": Key(
        None,
        _addresses,
        "NVMe/TCP target address(es), comma-separated; discovered from the protection "
        "domain's SDTs when unset.",
    ),
    "powerflex.clone_copy": Key(
        "true",
        _bool,
        "true: volume copies are full host-side copies in a new VTree; false: a copy without "
        "snapshots is an array snapshot (counts against the VTree's snapshot limit).",
    ),
    "powerflex.snapshot_copy": Key(
        "false",
        _bool,
        "LXD's newer, inverse name of powerflex.clone_copy.",
    ),
    "volume.size": Key(
        "",
        _pool_volume_size,
        "Default size of new volumes: 8GiB on PowerFlex 4, 1GiB on PowerFlex 5 when unset.",
    ),
    "volume.block.type": Key(
        "thin", _one_of("thin", "thick"), "Default provisioning of new volumes."
    ),
    "volume.block.filesystem": Key(
        "ext4", _one_of(*FILESYSTEMS), "Default filesystem of new filesystem volumes."
    ),
    "volume.block.mount_options": Key(
        "discard", lambda v: None, "Default mount options of new filesystem volumes."
    ),
    "volume.snapshots.expiry": Key("", _expiry, "Default snapshots.expiry of new volumes."),
    "volume.snapshots.pattern": Key(
        "snap%d", _pattern, "Default snapshots.pattern of new volumes."
    ),
    "volume.snapshots.schedule": Key("", _schedule, "Default snapshots.schedule of new volumes."),
    "volume.security.shifted": Key("", _bool, "Default security.shifted of new volumes."),
    "volume.security.unmapped": Key("", _bool, "Default security.unmapped of new volumes."),
    "volatile.powerflex.version": Key(
        None,
        _read_only,
        "PowerFlex API version, discovered.",
        live=False,
        why_not_live="it is discovered from the gateway",
    ),
}

VOLUME_KEYS: dict[str, Key] = {
    "size": Key(
        None,
        _size,
        "Size; rounded up to the array's granularity.",
        pool_key="volume.size",
        always=True,
    ),
    "block.type": Key(
        "thin",
        _one_of("thin", "thick"),
        "thin or thick provisioning.",
        live=False,
        why_not_live="PowerFlex cannot change a volume's provisioning",
        pool_key="volume.block.type",
        always=True,
    ),
    "block.filesystem": Key(
        "ext4",
        _one_of(*FILESYSTEMS),
        "Filesystem of a filesystem volume.",
        live=False,
        why_not_live="the filesystem is made at creation",
        pool_key="volume.block.filesystem",
        contents=("filesystem",),
        always=True,
        copied=False,
    ),
    "block.mount_options": Key(
        "discard",
        lambda v: None,
        "Mount options of a filesystem volume.",
        pool_key="volume.block.mount_options",
        contents=("filesystem",),
        always=True,
    ),
    "snapshots.expiry": Key(
        None,
        _expiry,
        "How long a new snapshot lives (3d, 2w, 1m, 6H; joined by spaces).",
        pool_key="volume.snapshots.expiry",
    ),
    "snapshots.pattern": Key(
        None,
        _pattern,
        "Name of snapshots taken without a name; %d counts up from 0.",
        pool_key="volume.snapshots.pattern",
    ),
    "snapshots.schedule": Key(
        None,
        _schedule,
        "When lxflexd snapshots the volume by itself: a cron expression or @hourly, @daily, "
        "... joined by ', '.",
        pool_key="volume.snapshots.schedule",
    ),
    "security.shifted": Key(
        None,
        _bool,
        "Given to an unprivileged container, the volume is shifted by the instance's "
        "daemon (its disk device has shift=true: an idmapped mount) rather than on disk.",
        pool_key="volume.security.shifted",
    ),
    "security.unmapped": Key(
        None,
        _bool,
        "Given to an unprivileged container, the volume's ownership is left as it is "
        "(the container sees host IDs outside its map as nobody).",
        pool_key="volume.security.unmapped",
    ),
    "security.shared": Key(
        None,
        _bool,
        "A block volume that several hosts (or instances) may use at once; the software "
        "writing it must coordinate (a cluster filesystem). Without it, a second host is "
        "refused.",
        contents=("block",),
    ),
    "volatile.idmap.last": Key(
        None,
        _idmap,
        "The ID map (LXD's JSON) the volume's files are shifted to on disk, for the "
        "unprivileged container it was given to; set by lxflex.",
        live=False,
        why_not_live="lxflex sets it when it shifts the volume's files",
        contents=("filesystem",),
    ),
    "volatile.uuid": Key(
        None,
        lambda v: None,
        "The UUID the PowerFlex name derives from.",
        live=False,
        why_not_live="the array name derives from it",
        copied=False,
        imported=False,
    ),
}


def _check(keys: Mapping[str, Key], config: Mapping[str, str], what: str) -> None:
    for key, value in config.items():
        if key.startswith("user."):
            if not isinstance(value, str):
                raise ConfigError(key, "must be a string")
            continue  # free-form keys for the user, as in LXD
        spec = keys.get(key)
        if spec is None:
            raise ConfigError(key, f"unknown {what} configuration key")
        if spec.secret:
            raise ConfigError(key, "is a secret: it is given apart from the config")
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        if value == "" and spec.default is not None:
            continue  # empty means "unset": the default applies
        try:
            spec.check(value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None


def validate_pool_config(
    config: Mapping[str, str], password: Secret | None, *, creating: bool
) -> None:
    """Check every key of a pool's config, and that it has a password; raise ConfigError
    naming the first bad key."""
    user = {k: v for k, v in config.items() if k != "volatile.powerflex.version"}
    _check(POOL_KEYS, user, "pool")
    for key in ("powerflex.gateway", "powerflex.pool"):
        if not config.get(key):
            raise ConfigError(key, "is required")
    if not password:
        raise ConfigError(PASSWORD_KEY, "is required")
    pool = config["powerflex.pool"]
    if not config.get("powerflex.domain") and not re.fullmatch(r"[0-9a-f]{16}", pool):
        raise ConfigError(
            "powerflex.pool",
            f"{pool!r} is not a pool ID (16 hex digits); to give a pool by name, set "
            "powerflex.domain too",
        )
    clone, snap = config.get("powerflex.clone_copy"), config.get("powerflex.snapshot_copy")
    if clone and snap and bool_value(clone, True) == bool_value(snap, False):
        raise ConfigError(
            "powerflex.snapshot_copy",
            "contradicts powerflex.clone_copy (snapshot_copy=true means clone_copy=false)",
        )
    mode = config.get("powerflex.mode")
    if mode == MODE_SDC and config.get("powerflex.sdt"):
        raise ConfigError("powerflex.sdt", "applies to the nvme/tcp mode only")
    if creating and "volatile.powerflex.version" in config:
        raise ConfigError("volatile.powerflex.version", "is read-only")


def validate_volume_config(config: Mapping[str, str]) -> None:
    _check(VOLUME_KEYS, config, "volume")


# --- one authority for volume configs -----------------------------------------------------


def _given(config: Mapping[str, str]) -> dict[str, str]:
    """A request's keys: empty ones are "unset", and a zero size is LXD's "no limit",
    which is the default size here."""
    given = {k: v for k, v in config.items() if v != ""}
    size = given.get("size")
    if size is not None:
        try:
            if parse_size(size) == 0:
                del given["size"]
        except ValueError:
            pass  # the validation names it
    return given


def _applies(key: str, spec: Key, content: str) -> None:
    if content not in spec.contents:
        raise ConfigError(key, f"applies to {' and '.join(spec.contents)} volumes, not {content}")


def fill_volume_config(
    pool: Mapping[str, str], content: str, config: Mapping[str, str], *, step: int
) -> dict[str, str]:
    """A new volume's config (without its ``volatile.uuid``): the given keys, validated;
    the pool's ``volume.*`` defaults (else the key's own) for the rest; the size rounded
    up to the array's ``step`` (which is also the size when nothing gives one)."""
    filled = _given(config)
    validate_volume_config(filled)
    for key in ("volatile.uuid", "volatile.idmap.last"):
        if key in filled:
            raise ConfigError(key, "is set by lxflex")
    for key, spec in VOLUME_KEYS.items():
        if content not in spec.contents:
            if key in filled:
                _applies(key, spec, content)
            continue
        default = (pool.get(spec.pool_key) if spec.pool_key else None) or spec.default
        if key not in filled and default:
            filled[key] = default
    size = parse_size(filled.get("size") or str(step))
    filled["size"] = format_size(-(-size // step) * step)
    return filled


def copy_volume_config(source: Mapping[str, str], config: Mapping[str, str]) -> dict[str, str]:
    """A copy's config (without its new ``volatile.uuid``): the source's, with the keys a
    copy may set taken from ``config`` (validated). A key it may not set must keep the
    source's value (lxc sends the source's whole config with a copy)."""
    given = _given(config)
    validate_volume_config(given)
    result = dict(source)
    for key, value in given.items():
        spec = VOLUME_KEYS.get(key)
        if spec is None or spec.copied:
            result[key] = value
        elif key != "volatile.uuid" and value != source.get(key):
            raise ConfigError(key, "cannot differ from the source's in a copy")
    if parse_size(result["size"]) < parse_size(source["size"]):
        raise ConfigError("size", "a copy cannot be smaller than its source")
    return result


def imported_volume_config(config: Mapping[str, object]) -> dict[str, str]:
    """What a backup's volume config brings to its import: the keys an import takes and
    user keys; the rest (another driver's keys) is dropped."""
    return {
        k: str(v)
        for k, v in config.items()
        if k.startswith("user.") or (k in VOLUME_KEYS and VOLUME_KEYS[k].imported)
    }


def updated_volume_config(
    current: Mapping[str, str], config: Mapping[str, str], content: str, pool: Mapping[str, str]
) -> dict[str, str]:
    """A volume's config after a PUT of ``config``: validated; a key that cannot change
    keeps its value (absent means kept); a key every volume carries goes back to its
    default when unset (the size is kept: volumes only grow)."""
    new = _given(config)
    validate_volume_config(new)
    for key, spec in VOLUME_KEYS.items():
        if content not in spec.contents:
            if key in new:
                _applies(key, spec, content)
            continue
        if not spec.live:
            if key in current and new.get(key, current[key]) != current[key]:
                raise ConfigError(
                    key, f"cannot be changed on an existing volume: {spec.why_not_live}"
                )
            if key in current:
                new[key] = current[key]
        elif key == "size":
            new.setdefault(key, current[key])
        elif spec.always and key not in new:
            default = (pool.get(spec.pool_key) if spec.pool_key else None) or spec.default
            if default:
                new[key] = default
    return new
