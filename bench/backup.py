"""Backup size and restore allocation: an 8 GiB block volume holding 100 MiB of random data.

lxflexd --simulator runs in a child process; the data is written into the volume (through
the simulator's backing file, at scattered offsets), then ``lxflex storage volume export``
makes the default backup (gzip) and ``import`` restores it into a new volume. The
baseline, in the same run, is ``tar --gzip`` of a file holding just the 100 MiB of data:
what the data costs in any tarball. Goals: the backup at most 120 MiB, the restored
volume allocating within 10 % of 100 MiB.

    python -m bench.backup [--data-mib 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.compat.daemon import Daemon, backing_file

from bench.daemon import daemon

MIB = 1 << 20
GIB = 1 << 30
LXFLEX = str(Path(sys.executable).parent / "lxflex")


def lxflex(state: Path, *args: str) -> None:
    env = {**os.environ, "LXFLEX_DIR": str(state)}
    subprocess.run([LXFLEX, *args], check=True, env=env, capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-mib", type=int, default=100)
    args = parser.parse_args()
    data_bytes = args.data_mib * MIB
    with tempfile.TemporaryDirectory(prefix="lxflex-bench-") as tmp:
        work = Path(tmp)
        with daemon(work / "state") as d:
            lxflex(d.state, "storage", "volume", "create", "powerflex", "src", "--type", "block")
            handle = Daemon(d.state, work / "conf", work / "log")
            raw = work / "data.bin"
            with open(backing_file(handle, "src"), "r+b") as vol, open(raw, "wb") as plain:
                pieces = 100
                piece = data_bytes // pieces
                for i in range(pieces):
                    block = os.urandom(piece)
                    vol.seek(i * (8 * GIB // pieces))
                    vol.write(block)
                    plain.write(block)
            tarball = work / "src.tar.gz"
            started = time.perf_counter()
            lxflex(d.state, "storage", "volume", "export", "powerflex", "src", str(tarball))
            export_s = time.perf_counter() - started
            started = time.perf_counter()
            lxflex(d.state, "storage", "volume", "import", "powerflex", str(tarball), "dst")
            import_s = time.perf_counter() - started
            restored = backing_file(handle, "dst").stat().st_blocks * 512
            baseline = work / "baseline.tar.gz"
            started = time.perf_counter()
            subprocess.run(
                ["tar", "--gzip", "-cf", str(baseline), "-C", tmp, "data.bin"], check=True
            )
            baseline_s = time.perf_counter() - started
            size, base = tarball.stat().st_size, baseline.stat().st_size
    ratio = restored / data_bytes
    print(f"8 GiB block volume holding {args.data_mib} MiB of random data")
    print(f"backup tarball (gzip):         {size / MIB:8.1f} MiB  export {export_s:5.1f} s")
    print(f"baseline: tar --gzip of data:  {base / MIB:8.1f} MiB         {baseline_s:5.1f} s")
    print(f"restored volume allocates:     {restored / MIB:8.1f} MiB  import {import_s:5.1f} s")
    print(f"tarball / baseline: {size / base:.3f}; export time / baseline: ", end="")
    print(f"{export_s / baseline_s:.2f}")
    met = "met" if size <= 120 * MIB else "MISSED"
    print(f"tarball / data: {size / data_bytes:.3f} (goal: at most 120 MiB: {met})")
    met = "met" if abs(ratio - 1) <= 0.1 else "MISSED"
    print(f"restored allocation / data: {ratio:.3f} (goal: within 10 %: {met})")


if __name__ == "__main__":
    main()
