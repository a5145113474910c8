"""The console scripts as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _run(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.mark.parametrize("tool", ["lxflex", "lxflexd", "lxflex-sim", "lxflex-demo"])
def test_help(tool: str) -> None:
    res = _run(str(BIN / tool), "--help")
    assert res.returncode == 0
    assert "Usage:" in res.stdout


def test_simulator_process_lifecycle(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-a-file\n")
    proc = subprocess.Popen(
        [
            str(BIN / "lxflex-sim"),
            "--state-dir",
            str(tmp_path / "st"),
            "--listen",
            "127.0.0.1:0",
            "--api-version",
            "5.0",
            "--admin-password-file",
            str(secret_file),
            "--no-fabric",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["api_version"] == "5.0"
        assert info["hosts"] == {}
        body = json.dumps({"username": "admin", "password": "from-a-file"}).encode()
        req = urllib.request.Request(
            f"{info['url']}/rest/auth/login",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert "access_token" in json.loads(r.read())
        assert "from-a-file" not in " ".join(proc.args)  # type: ignore[arg-type]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "from-a-file" not in err
    assert (tmp_path / "st" / "state.json").exists()


def test_shim_without_simulator_explains() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXFLEX_SIM")}
    res = _run(str(BIN / "lxflex-sim-nvme"), "list", env=env)
    assert res.returncode == 2
    assert "LXFLEX_SIM_URL" in res.stderr
    res = _run(
        str(BIN / "lxflex-sim-drvcfg"),
        "--query_guid",
        env={**env, "LXFLEX_SIM_URL": "http://127.0.0.1:1"},
    )
    assert res.returncode == 1
    assert "cannot reach the simulator" in res.stderr


@pytest.mark.root
def test_demo_runs_end_to_end(root_only: None, tmp_path: Path) -> None:
    res = _run(str(BIN / "lxflex-demo"), "--state-dir", str(tmp_path / "demo"))
    assert res.returncode == 0, res.stderr
    assert "hello.txt reads 'written before the snapshot'" in res.stdout
    assert "data-copy with snapshots ['snap0']" in res.stdout
    assert "nothing left" in res.stdout
    loops = _run("losetup", "-a").stdout
    assert str(tmp_path) not in loops


def test_simulator_serves_tls_with_its_own_certificate(tmp_path: Path) -> None:
    import ssl

    state = tmp_path / "tls-st"
    proc = subprocess.Popen(
        [str(BIN / "lxflex-sim"), "--state-dir", str(state), "--tls", "--no-fabric"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["url"].startswith("https://127.0.0.1:")
        assert (state / "tls" / "key.pem").stat().st_mode & 0o077 == 0
        ctx = ssl.create_default_context(cafile=str(state / "tls" / "cert.pem"))
        with urllib.request.urlopen(f"{info['url']}/_sim/info", timeout=10, context=ctx) as r:
            assert json.loads(r.read())["url"] == info["url"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    res = _run(
        str(BIN / "lxflex-sim"),
        "--state-dir",
        str(state),
        "--tls-cert",
        str(state / "tls" / "cert.pem"),
    )
    assert res.returncode == 2
    assert "go together" in res.stderr


@pytest.mark.root
def test_quickstart_script_shows_a_volume(root_only: None, tmp_path: Path) -> None:
    if shutil.which("lxc") is None:
        pytest.skip("lxc (Debian lxd-client) not installed")
    state = tmp_path / "qs"
    env = {**os.environ, "LXFLEX_STATE": str(state), "LXD_CONF": str(tmp_path / "conf")}
    script = Path(__file__).resolve().parents[2] / "scripts" / "quickstart"
    try:
        res = subprocess.run(
            [str(script)], capture_output=True, text=True, env=env, timeout=300, check=False
        )
        assert res.returncode == 0, res.stdout + res.stderr
        table = res.stdout[res.stdout.index("TYPE") :]
        assert "| custom | hello |" in table
    finally:
        pid_file = state / "lxflexd.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
