"""A real `mlflow server` on 127.0.0.1 for the tests that need one (outage, REST read-back)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlflowServer:
    """`mlflow server` over a SQLite store, in a process group of its own: `kill()` takes its workers too."""

    def __init__(self, db: Path, port: int, workdir: Path) -> None:
        self.db, self.port, self.workdir = db, port, workdir
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / f"mlflow_server_{port}.log"

    def start(self) -> MlflowServer:
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        command = [str(mlflow_cli)] if mlflow_cli.exists() else [sys.executable, "-m", "mlflow"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                *command,
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.db}",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> MlflowServer:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2).close()
                return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"mlflow server not up after {timeout_s} s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL to the server and its workers: a crash, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
