"""``lxflex-sim-nvme`` and ``lxflex-sim-drvcfg``: stand-ins for nvme-cli and drv_cfg.

They forward their arguments to the simulator that emulates this host's fabric and print
its answer, exiting with the same code the real tool would. The simulator is found through
``LXFLEX_SIM_URL`` (its address), ``LXFLEX_SIM_HOST`` (the emulated host, default
``local``) and optionally ``LXFLEX_SIM_CA`` (its certificate when it serves TLS); the
wrappers the simulator writes to ``<state>/hosts/<host>/bin/`` set all three. Only the
standard library is imported, so a shim starts fast.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from urllib.parse import quote


def _call(tool: str, argv: list[str]) -> int:
    url = os.environ.get("LXFLEX_SIM_URL")
    if not url:
        print(
            f"{tool}: LXFLEX_SIM_URL is not set; run the wrapper in <state>/hosts/<host>/bin",
            file=sys.stderr,
        )
        return 2
    host = os.environ.get("LXFLEX_SIM_HOST", "local")
    body = json.dumps({"argv": argv}).encode()
    request = urllib.request.Request(  # noqa: S310 - the simulator's own http(s) URL
        f"{url.rstrip('/')}/_sim/fabric/hosts/{quote(host, safe='')}/{tool}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=os.environ.get("LXFLEX_SIM_CA"))
    try:
        with urllib.request.urlopen(request, timeout=120, context=context) as response:  # noqa: S310
            result = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(
            f"{tool}: simulator answered HTTP {exc.code}: {exc.read().decode(errors='replace')}",
            file=sys.stderr,
        )
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{tool}: cannot reach the simulator at {url}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(result.get("stdout", ""))
    sys.stderr.write(result.get("stderr", ""))
    return int(result.get("rc", 1))


def nvme_main() -> None:
    sys.exit(_call("nvme", sys.argv[1:]))


def drvcfg_main() -> None:
    sys.exit(_call("drv_cfg", sys.argv[1:]))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("nvme", "drv_cfg"):
        print("usage: python -m lxflex.sim.shims nvme|drv_cfg ARGS...", file=sys.stderr)
        sys.exit(2)
    sys.exit(_call(sys.argv[1], sys.argv[2:]))
