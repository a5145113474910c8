"""The emulated ``nvme`` and ``drv_cfg`` commands, run inside the simulator.

The shims (``lxflex-sim-nvme``, ``lxflex-sim-drvcfg``) send their argv here and print what
comes back. Supported, with nvme-cli's flags and exit codes:

* ``nvme connect-all -t tcp -a ADDR [-s PORT] [-q HOSTNQN]``: ask the discovery controller
  at ADDR (port 8009 by default) and connect every listed portal not yet connected;
* ``nvme connect -t tcp -n SUBNQN -a ADDR [-s PORT] [-q HOSTNQN]``;
* ``nvme disconnect -n SUBNQN`` or ``-d nvmeN``; ``nvme disconnect-all``;
* ``nvme discover -t tcp -a ADDR [-s PORT] [-q HOSTNQN] [-o json]``;
* ``nvme list [-o json]``;
* ``drv_cfg --query_guid | --rescan | --query_vols | --query_mdms``.

Without ``-q`` the host NQN is read from ``<host>/etc/nvme/hostnqn``, as nvme-cli reads
``/etc/nvme/hostnqn``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

from .fabric import Fabric, FabricError, FabricHost


@dataclass
class Result:
    rc: int = 0
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    # New controllers scan their namespaces after the command returns, as the kernel does:
    # the caller lets the fabric catch up in the background.
    settle: bool = False

    def as_dict(self) -> dict[str, object]:
        out = "".join(line + "\n" for line in self.stdout)
        err = "".join(line + "\n" for line in self.stderr)
        return {"rc": self.rc, "stdout": out, "stderr": err}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise FabricError(f"{self.prog}: {message}", rc=22)  # EINVAL, as nvme-cli


def _nvme_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nvme", add_help=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in ("connect-all", "discover", "connect"):
        p = sub.add_parser(name, add_help=False)
        p.add_argument("-t", "--transport", required=True)
        p.add_argument("-a", "--traddr", required=True)
        p.add_argument("-s", "--trsvcid", type=int)
        p.add_argument("-q", "--hostnqn")
        p.add_argument("-I", "--hostid")
        p.add_argument("-w", "--host-traddr")
        p.add_argument("-o", "--output-format", default="normal")
        p.add_argument("-n", "--nqn", required=name == "connect")
    p = sub.add_parser("disconnect", add_help=False)
    p.add_argument("-n", "--nqn")
    p.add_argument("-d", "--device")
    sub.add_parser("disconnect-all", add_help=False)
    p = sub.add_parser("list", add_help=False)
    p.add_argument("-o", "--output-format", default="normal")
    return parser


def _hostnqn(host: FabricHost, given: str | None) -> str:
    if given:
        return given
    try:
        return (host.root / "etc" / "nvme" / "hostnqn").read_text().strip()
    except OSError:
        raise FabricError("hostnqn is not set: pass -q or write etc/nvme/hostnqn", 22) from None


async def run_nvme(fabric: Fabric, host: FabricHost, argv: list[str]) -> Result:
    res = Result()
    try:
        args = _nvme_parser().parse_args(argv)
        cmd = args.command
        if cmd in ("connect-all", "discover", "connect") and args.transport != "tcp":
            raise FabricError(f"transport {args.transport} is not supported here", 22)
        if cmd in ("connect-all", "discover"):
            hostnqn = _hostnqn(host, args.hostnqn)
            port = args.trsvcid or 8009
            entries = fabric.discovery_log(args.traddr, port, hostnqn)
            subnqn = fabric.subsystem_nqn()
            if cmd == "discover":
                _print_discovery(res, entries, subnqn, args.output_format)
            elif not entries:
                res.stderr.append("No discovery log entries to fetch.")
            else:
                for traddr, nvme_port in entries:
                    fabric.connect(host, hostnqn, subnqn, traddr, nvme_port)
                res.settle = True
        elif cmd == "connect":
            name = fabric.connect(
                host, _hostnqn(host, args.hostnqn), args.nqn, args.traddr, args.trsvcid or 4420
            )
            if name is None:
                raise FabricError(
                    "Failed to write to /dev/nvme-fabrics: Operation already in progress", 114
                )
            res.stdout.append(f"device: {name}")
            res.settle = True
        elif cmd == "disconnect":
            if not args.nqn and not args.device:
                raise FabricError("disconnect: need -n NQN or -d DEVICE", 22)
            count = fabric.disconnect(host, subnqn=args.nqn, device=args.device)
            await fabric.reconcile()
            if args.nqn:
                res.stdout.append(f"NQN:{args.nqn} disconnected {count} controller(s)")
            elif count == 0:
                raise FabricError(f"Failed to disconnect by device name: {args.device}", 19)
        elif cmd == "disconnect-all":
            fabric.disconnect(host)
            await fabric.reconcile()
        elif cmd == "list":
            await fabric.reconcile()
            _print_list(fabric, host, res, args.output_format)
    except FabricError as exc:
        res.rc = exc.rc
        res.stderr.append(str(exc))
    return res


def _print_discovery(res: Result, entries: list[tuple[str, int]], subnqn: str, fmt: str) -> None:
    if fmt == "json":
        records = [
            {
                "trtype": "tcp",
                "adrfam": "ipv4",
                "subtype": "nvme subsystem",
                "portid": i,
                "trsvcid": str(port),
                "subnqn": subnqn,
                "traddr": addr,
            }
            for i, (addr, port) in enumerate(entries)
        ]
        res.stdout.append(json.dumps({"genctr": 1, "records": records}, indent=2))
        return
    res.stdout.append(f"\nDiscovery Log Number of Records {len(entries)}, Generation counter 1")
    for i, (addr, port) in enumerate(entries):
        res.stdout += [
            f"=====Discovery Log Entry {i}======",
            "trtype:  tcp",
            "adrfam:  ipv4",
            "subtype: nvme subsystem",
            "treq:    not specified",
            f"portid:  {i}",
            f"trsvcid: {port}",
            f"subnqn:  {subnqn}",
            f"traddr:  {addr}",
            "eflags:  none",
            "sectype: none",
        ]


def _print_list(fabric: Fabric, host: FabricHost, res: Result, fmt: str) -> None:
    devices = [d for d in host.devices.values() if d.kind == "nvme"]
    rows = []
    for dev in devices:
        vol = fabric.array.volumes.get(dev.volume_id)
        rows.append(
            {
                "NameSpace": vol.nsid if vol and vol.nsid else 1,
                "DevicePath": dev.loop,
                "Firmware": "4.5",
                "ModelNumber": "PowerFlex",
                "SerialNumber": dev.volume_id,
                "PhysicalSize": dev.size,
                "SectorSize": 512,
            }
        )
    if fmt == "json":
        res.stdout.append(json.dumps({"Devices": rows}, indent=2))
        return
    res.stdout.append(f"{'Node':<22}{'SN':<20}{'Model':<12}{'Namespace':<10}{'Size':>16}")
    res.stdout.append("-" * 80)
    for row in rows:
        res.stdout.append(
            f"{row['DevicePath']!s:<22}{row['SerialNumber']!s:<20}{'PowerFlex':<12}"
            f"{row['NameSpace']!s:<10}{row['PhysicalSize']!s:>16}"
        )


async def run_drvcfg(fabric: Fabric, host: FabricHost, argv: list[str]) -> Result:
    res = Result()
    array = fabric.array
    sdc = next(
        (
            h
            for h in array.hosts.values()
            if host.sdc_guid and (h.guid or "").upper() == host.sdc_guid.upper()
        ),
        None,
    )
    if not argv or argv[0] not in ("--query_guid", "--rescan", "--query_vols", "--query_mdms"):
        res.rc = 1
        res.stderr.append("Usage: drv_cfg --query_guid | --rescan | --query_vols | --query_mdms")
        return res
    if sdc is None:
        res.rc = 1
        res.stderr.append("Failed to open /dev/scini: no SDC is configured on this host")
        return res
    cmd = argv[0]
    if cmd == "--query_guid":
        res.stdout.append(str(sdc.guid))
    elif cmd == "--rescan":
        await fabric.reconcile(rescan_sdc=True)
    elif cmd == "--query_vols":
        vols = [d for d in host.devices.values() if d.kind == "sdc"]
        res.stdout.append(f"Retrieved {len(vols)} volume(s)")
        res.stdout += [f"VOL-ID {d.volume_id} MDM-ID {array.system_id}" for d in vols]
    else:
        res.stdout.append("Retrieved 1 mdm(s)")
        res.stdout.append(
            f"MDM-ID {array.system_id} SDC ID {sdc.id} INSTALLATION ID {array.install_id} "
            "IPs [0]-127.0.0.1"
        )
    return res
