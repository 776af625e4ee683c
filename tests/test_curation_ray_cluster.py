"""`soul data annotate --engine ray --ray-address` against a real two-node Ray cluster, one node killed.

`ray start --head` and a second `ray start --address` (its own raylet, object store and worker
processes: a second node, on this machine) form the cluster; the CLI joins it as a driver. Once
the run is under way, every process of the second node is SIGKILLed (the raylet and the workers
running clips): Ray Data re-runs the lost tasks on the head node. The manifest must equal the
local engine's, with no clip lost or written twice and no half-written file left.

The cluster has its own temp dir and ports, so it never meets another Ray on the machine; its
processes are found by that temp dir and killed by pid in `finally` (never `ray stop`, which would
stop every Ray of the user).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from soul.curation.config import CurationConfig
from soul.curation.runner import annotate

FAST = {"audio_quality": {"dnsmos": False}, "output": {"video_preset": "ultrafast"}}
CLIPS = ("talking_face_1", "talking_face_2", "talking_face_3", "two_people_left_speaks", "talking_upper_body_host")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, env: dict) -> None:
    ray = Path(sys.executable).with_name("ray")
    done = subprocess.run([str(ray), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _cluster_processes(temp_dir: str, marker: str | None = None) -> list:  # noqa: ANN401 - psutil.Process
    """Processes of this test's cluster (their command lines name its temp dir), optionally one node's."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if temp_dir in cmd and (marker is None or marker in cmd):
            found.append(proc)
    return found


def _kill_tree(procs: list) -> None:
    import psutil

    everything = []
    for p in procs:
        try:
            everything += [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    for p in everything:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def ray_available() -> None:
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ray is not installed: CI installs the `ray` extra (make test)")
        pytest.skip("ray not installed (pip install 'soul-avatar[ray]')")


def test_two_node_cluster_with_a_node_killed_mid_run_equals_local(ray_available: None, media: Path, tmp_path: Path) -> None:
    inputs = [media / "clips" / f"{name}.mp4" for name in CLIPS]
    config = tmp_path / "fast.yaml"
    config.write_text("audio_quality:\n  dnsmos: false\noutput:\n  video_preset: ultrafast\n")
    reference = tmp_path / "local"
    annotate(inputs, reference, cfg=CurationConfig.model_validate(FAST))

    temp_dir = tempfile.mkdtemp(prefix="soulray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port, worker_node_port = _free_port(), _free_port()
    # Token authentication, as on a real cluster: every node and the driver get the same token.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONPATH": os.pathsep.join(sys.path)}
    common = ["--num-cpus=1", "--object-store-memory=80000000", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    out = tmp_path / "cluster"
    driver = None
    try:
        _ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common, env=env)
        _ray("start", f"--address=127.0.0.1:{port}", f"--node-manager-port={worker_node_port}", *common, env=env)
        args = [
            "-c", "import sys; from soul.cli import main; main(sys.argv[1:])",
            "data", "annotate", *map(str, inputs), "--out", str(out), "--config", str(config),
            "--engine", "ray", "--ray-address", f"127.0.0.1:{port}",
        ]  # fmt: skip
        driver = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Kill the second node once clips are being annotated on the cluster (first record written).
        deadline = time.time() + 150
        while time.time() < deadline and driver.poll() is None and not list((out / "records").glob("*.json")):
            time.sleep(0.1)
        assert driver.poll() is None, "the run finished before a node could be killed:\n" + driver.stderr.read()
        node = _cluster_processes(temp_dir, f"--node_manager_port={worker_node_port}")
        assert node, "the second node's raylet was not found"
        _kill_tree(node)
        killed_at = len(list((out / "records").glob("*.json")))
        stdout, stderr = driver.communicate(timeout=240)
        assert driver.returncode == 0, stderr[-3000:]
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        _kill_tree(_cluster_processes(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)

    assert killed_at < len(CLIPS), "every clip was already finished when the node died"
    assert "5 clips" in stdout and "(0 already done)" in stdout
    local = pq.read_table(reference / "manifest.parquet")
    cluster = pq.read_table(out / "manifest.parquet")
    assert cluster.equals(local)  # nothing lost, nothing duplicated, same annotations
    ids = cluster.column("clip_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(CLIPS)
    assert sorted(p.stem for p in (out / "records").glob("*.json")) == sorted(ids)
    assert not [p for p in out.rglob(".*") if ".partial-" in p.name or ".tmp-" in p.name]
    run = json.loads((out / "run.json").read_text())
    assert run["engine"] == "ray" and run["processed_sources"] == len(CLIPS)
