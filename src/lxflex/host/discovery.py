"""Which PowerFlex mode this host can use, read from a (fakeable) root directory.

NVMe/TCP needs the ``nvme_tcp`` and ``nvme_fabrics`` kernel modules (present under
``<root>/sys/module``); SDC needs ``drv_cfg`` (in ``/opt/emc/scaleio/sdc/bin`` or the older
``/bin/emc/scaleio``) and the ``scini`` module. NVMe/TCP wins when both are there, as the
spec orders it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DRV_CFG_PATHS", "ModeUnavailable", "discover_mode", "find_drv_cfg", "nvme_missing"]

MODE_NVME = "nvme/tcp"
MODE_SDC = "sdc"
DRV_CFG_PATHS = ("opt/emc/scaleio/sdc/bin/drv_cfg", "bin/emc/scaleio/drv_cfg")


class ModeUnavailable(Exception):
    """No mode (or not the requested one) can work on this host; the text says why."""


def _module(root: Path, name: str) -> bool:
    return (root / "sys" / "module" / name).is_dir()


def nvme_missing(root: Path) -> list[str]:
    return [m for m in ("nvme_tcp", "nvme_fabrics") if not _module(root, m)]


def find_drv_cfg(root: Path) -> Path | None:
    for rel in DRV_CFG_PATHS:
        candidate = root / rel
        if candidate.is_file():
            return candidate
    return None


def sdc_missing(root: Path) -> list[str]:
    missing = []
    if find_drv_cfg(root) is None:
        missing.append("drv_cfg (looked in " + ", ".join("/" + p for p in DRV_CFG_PATHS) + ")")
    if not _module(root, "scini"):
        missing.append("the scini kernel module")
    return missing


def discover_mode(root: Path = Path("/")) -> str:
    """``nvme/tcp`` or ``sdc``; ModeUnavailable listing what each mode lacks."""
    no_nvme = nvme_missing(root)
    if not no_nvme:
        return MODE_NVME
    no_sdc = sdc_missing(root)
    if not no_sdc:
        return MODE_SDC
    raise ModeUnavailable(
        "no PowerFlex mode is available on this host: NVMe/TCP needs the kernel modules "
        f"{' and '.join(no_nvme)} (install nvme-cli and run modprobe nvme_tcp); SDC needs "
        f"{' and '.join(no_sdc)}"
    )


def check_mode(mode: str, root: Path = Path("/")) -> None:
    """Raise ModeUnavailable when the configured ``mode`` cannot work here."""
    missing = nvme_missing(root) if mode in (MODE_NVME, "nvme") else sdc_missing(root)
    if missing:
        raise ModeUnavailable(
            f"powerflex.mode {mode} is not usable on this host: missing " + " and ".join(missing)
        )
