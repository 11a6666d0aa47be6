"""A server in a subprocess on a free loopback port, for the tests and benchmarks/serve_load.py: started
as a user starts it (`python -m mmlearn serve ...`), waited for until /health answers 200, stopped
with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(url: str, headers: dict | None = None) -> int | None:
    """/health's status code, or None while nothing listens."""
    request = urllib.request.Request(f"{url}/health", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


class LocalServer:
    """`overrides`: serve.py's command line (host and port are added); `log`: where its output goes."""

    def __init__(self, overrides: list[str], log: Path, env: dict | None = None, cwd: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        command = [
            sys.executable,
            "-m",
            "mmlearn",
            "serve",
            *overrides,
            "host=127.0.0.1",
            f"port={self.port}",
        ]
        self._out = self.log.open("w")
        self.process = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=self._out, stderr=subprocess.STDOUT
        )
        self.seen: list[int | None] = []  # /health's answers while waiting

    def wait_ready(self, timeout: float = 300, headers: dict | None = None) -> LocalServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            status = health(self.url, headers)
            self.seen.append(status)
            if status == 200:
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"no 200 from {self.url}/health in {timeout}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code (SIGKILL after `timeout`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        return self.process.returncode
