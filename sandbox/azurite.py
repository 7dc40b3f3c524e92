"""Start and stop Azurite (the npm Azure Storage emulator) for tests, the demo and `serve`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Azurite's well-known development account: public, documented, not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free a moment ago (held open together so the kernel cannot repeat one)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class _PortTaken(Exception):
    """Azurite could not bind a port chosen a moment earlier."""


class Azurite:
    """An Azurite process on free ports, in memory. Use as a context manager."""

    def __init__(self) -> None:
        self.ports = self._fresh_ports()
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: str | None = None

    @staticmethod
    def _fresh_ports() -> dict[str, int]:
        return dict(zip(("blob", "queue", "table"), free_ports(3), strict=True))

    @property
    def connection_string(self) -> str:
        endpoints = ";".join(f"{kind.capitalize()}Endpoint=http://127.0.0.1:{port}/{ACCOUNT}"
                             for kind, port in self.ports.items())
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};{endpoints};"

    def start(self, timeout: float = 30.0, attempts: int = 3) -> Azurite:
        """Start Azurite; retry on fresh ports if one was taken between choosing it and binding it.

        `free_port` releases the port before Azurite binds it, so a parallel test worker (or any
        process) can take it first; Azurite then exits with status 1 (EADDRINUSE)."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(timeout)
            except _PortTaken as taken:
                if attempt == attempts:
                    raise RuntimeError(f"Azurite exited with status 1 {attempts} times: {taken}") from None
                self.ports = self._fresh_ports()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> Azurite:
        executable = ROOT / "node_modules" / ".bin" / "azurite"
        if not executable.exists():
            raise RuntimeError("Azurite is not installed: run `make setup` (npm ci) first")
        # Run in a scratch folder: Azurite writes a debug/lock file where it starts, even in memory.
        self._workdir = tempfile.mkdtemp(prefix="azurite-")
        args = [str(executable), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
                "--silent"]
        for kind, port in self.ports.items():
            args += [f"--{kind}Host", "127.0.0.1", f"--{kind}Port", str(port)]
        errors_path = Path(self._workdir) / "stderr.txt"
        with open(errors_path, "wb") as errors:
            self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors,
                                             cwd=self._workdir, env={**os.environ, "NODE_NO_WARNINGS": "1"})
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending:
            if self._process.poll() is not None:
                status = self._process.returncode
                said = errors_path.read_text(errors="replace").strip()[-500:]
                self.stop()
                if "EADDRINUSE" in said or status == 1:
                    raise _PortTaken(said or f"status {status}")
                raise RuntimeError(f"Azurite exited with status {status}: {said}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Azurite did not start listening in time")
            for port in list(pending):
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
