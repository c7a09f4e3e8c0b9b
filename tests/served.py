"""A real `vkharp serve` in a subprocess on a free loopback port, for the server's tests."""
from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
START_S = 600          # model load and pipeline compiles on a busy lavapipe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="vkharp-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(self.port), *args],
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.health_seen: list[int] = []       # statuses /health answered before it was ready

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                r = httpx.get(self.url + "/health", timeout=5)
            except httpx.TransportError:     # not listening yet
                time.sleep(0.1)
                continue
            self.health_seen.append(r.status_code)
            if r.status_code == 200:
                return
            assert r.status_code == 503 and r.json() == \
                {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error", "param": None}}
            time.sleep(0.05)
        raise AssertionError(f"the server was not ready within {START_S} s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def metrics(self, headers=None) -> dict:
        text = httpx.get(self.url + "/metrics", headers=headers, timeout=30).text
        return {line.split()[0].split(":", 1)[1]: float(line.split()[1]) for line in text.splitlines()
                if line.startswith("vkharp:")}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        Path(self.log.name).unlink(missing_ok=True)
        return self.proc.returncode
