"""A real local Ray cluster for the farm tests and benchmark: a head node and worker nodes, each its own
``ray start`` process tree, on 127.0.0.1 only, 1 CPU each, no dashboard, no usage stats.

All of its processes carry the cluster's private temporary folder on their command line (Ray's workers are
children of their node's raylet), so ``stop`` ends exactly those, by process id, and never another Ray that
someone else runs on the same machine (``ray stop`` would end every Ray of the user).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "RAY_AUTH_MODE": "token"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


class LocalRayCluster:
    """``ray start --head`` plus ``workers`` worker nodes; ``address`` for ``handcap farm --address``."""

    def __init__(self, workers: int = 1, cpus: int = 1):
        # short folder: Ray's unix sockets live under it and their paths must stay under ~107 characters
        self.temp_dir = tempfile.mkdtemp(prefix="hcray", dir="/tmp")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # a token of its own: no other process on the machine can join or use this cluster
        self.env = {**os.environ, **RAY_ENV, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.ray = str(Path(sys.executable).with_name("ray"))
        common = [
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(cpus),
            "--num-gpus",
            "0",
            "--object-store-memory",
            str(100 * 1024 * 1024),
            "--disable-usage-stats",
        ]
        try:
            self._start(
                ["--head", "--port", str(self.port), "--include-dashboard=false", "--temp-dir", self.temp_dir, *common]
            )
            for _ in range(workers):
                self._start(["--address", self.address, *common])
        except BaseException:
            self.stop()
            raise

    def _start(self, args: list[str]) -> None:
        proc = subprocess.run([self.ray, "start", *args], env=self.env, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")

    def processes(self) -> list[int]:
        """Ids of this cluster's processes: those naming its folder, and their children (the workers)."""
        mine = {p for p in _pids() if self.temp_dir in _cmdline(p)}
        mine.discard(os.getpid())
        return sorted(mine | {p for p in _pids() if _ppid(p) in mine})

    def workers_running(self, task_name: str) -> list[int]:
        """Worker processes of this cluster executing the task ``task_name`` now (Ray titles them ray::NAME)."""
        return [p for p in self.processes() if _cmdline(p).startswith(f"ray::{task_name}")]

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.processes()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in _state(p)]
                time.sleep(0.2)
            if not pids:
                break


def _state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.lower()
    except OSError:
        return "gone"
    return ""
