"""Run `whyslow serve` as a subprocess for tests (reusable by the panel's browser test).

    with ServeProcess(tmp_path / "data", min_traces=60) as srv:
        srv.http_url            # http://127.0.0.1:<port>
        srv.get("/api/v1/status")
    # stopped with SIGTERM; srv.returncode and srv.log (stderr) are kept for assertions
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ServeProcess:
    """`python -m plugin.cli serve` on free loopback ports with a given data dir and settings."""

    def __init__(self, data_dir: Path | str, env: dict[str, str] | None = None, background: bool = False,
                 **settings: Any):
        self.data_dir = Path(data_dir)
        self.background = background  # started like a shell's background job: Ctrl-C ignored on entry
        self.ports = {name: free_port() for name in ("otlp_grpc", "otlp_http", "http", "grpc")}
        self.settings = settings
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"serve-{self.ports['http']}.log"
        self.returncode: int | None = None
        self.token = settings.get("auth_token")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.ports['otlp_grpc']}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp_http']}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "plugin.cli", "serve", "--data-dir", str(self.data_dir)]
        for name, port in self.ports.items():
            cmd += ["--" + name.replace("_", "-"), f"127.0.0.1:{port}"]
        for name, value in self.settings.items():
            if name == "auth_token":
                continue  # passed through the environment, never on a command line
            cmd += ["--" + name.replace("_", "-"), str(value)]
        return cmd

    def start(self, timeout: float = 60.0) -> ServeProcess:
        env = dict(os.environ, **self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.token:
            env["WHYSLOW_AUTH_TOKEN"] = self.token
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._logfile = logfile
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT,
                                     preexec_fn=_ignore_ctrl_c if self.background else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"whyslow serve exited with {self.proc.returncode}:\n{self.log}")
            try:
                status, _ = self.request("GET", "/readyz", auth=False)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"whyslow serve not ready within {timeout}s:\n{self.log}")

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None:
            return self.returncode or 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        self.proc = None
        self._logfile.close()
        return self.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- HTTP helpers ----------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, auth: bool = True,
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, Any]:
        """(status, parsed JSON body or text) of one request; never raises on HTTP errors."""
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        if auth and self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        hdrs.update(headers or {})
        req = urllib.request.Request(self.http_url + path, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        if "json" in ctype:
            return status, json.loads(raw)
        return status, raw.decode(errors="replace")

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        return self.request("POST", path, body, **kw)

    def stored_traces(self, entry: str) -> int:
        """How many traces of ``entry`` the server has stored (0 before its call graph exists)."""
        status, body = self.get("/api/v1/graph?" + urllib.parse.urlencode({"entry": entry}))
        return int(body["traces"]) if status == 200 else 0

    def wait_for(self, predicate: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
        """Poll `predicate()` until it returns something truthy; return it (AssertionError, with the server log)."""
        return wait_until(predicate, timeout, interval, context=lambda: f"server log:\n{self.log[-4000:]}")


def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.2, context: Any = None) -> Any:
    """Poll `predicate()` until it returns something truthy and return it; AssertionError on timeout
    (with `context()` appended when given)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    extra = f"\n{context()}" if context else ""
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r}){extra}")
