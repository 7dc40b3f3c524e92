"""The function app in its own process, as the Functions host runs it: `python -m sandbox.worker`.

    python -m sandbox.worker --port 7071 --function-key KEY [--visibility-timeout 600]

Reads the app settings from its environment (as the host does), serves `function_app.py` through
`sandbox.runner.FunctionRunner` (HTTP triggers, the Event Grid webhook, queue polling, timers on
`POST /admin/functions/{name}`), logs as the Python worker does (root logger at INFO, to stderr),
and prints one JSON line when it is ready:

    {"url": "http://127.0.0.1:7071", "pid": 12345}

SIGTERM (or Ctrl-C) stops it gracefully: no new work is taken and invocations in flight finish.
SIGKILL is a crash: a queue message whose invocation was cut off stays invisible until its visibility
timeout ends, then is delivered again (with a higher dequeue count) to whichever worker polls the queue,
as with the real host. Exit status 1, with the reason on stderr, when the app cannot be served (a
missing setting, for instance).

`WorkerProcess` starts, kills and restarts it on the same port, for tests and `python -m sandbox serve`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox.azurite import free_port
from sandbox.runner import HOST_VISIBILITY_TIMEOUT, ROOT, FunctionRunner, StartupError, configure_worker_logging

log = logging.getLogger("sandbox.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--function-key", required=True, help="the key callers present (function and system key)")
    parser.add_argument("--visibility-timeout", type=int, default=HOST_VISIBILITY_TIMEOUT,
                        help="seconds a received queue message stays invisible, renewed while its function runs "
                             "(the host's: 600)")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="seconds between polls of an empty queue")
    args = parser.parse_args(argv)
    configure_worker_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sys.path.insert(0, str(ROOT))
    try:
        import function_app

        runner = FunctionRunner(function_app.app, function_key=args.function_key, settings=os.environ,
                                port=args.port, poll_interval=args.poll_interval,
                                visibility_timeout=args.visibility_timeout)
    except (StartupError, OSError) as err:
        log.error("the function app cannot start: %s", err)
        return 1
    runner.start()
    print(json.dumps({"url": runner.url, "pid": os.getpid()}), flush=True)
    while not stop.wait(0.5):
        pass
    log.info("stopping: draining invocations in flight")
    runner.stop()
    log.info("stopped")
    return 0


class WorkerProcess:
    """`python -m sandbox.worker` as a child process, on one port for its whole life (restarts reuse it).

        worker = WorkerProcess().start(app_settings)
        worker.url, worker.pid, worker.function_key
        worker.kill(); worker.restart()      # SIGKILL, then the same port and settings again
        worker.stop()                        # SIGTERM: drains, exits 0

    `env` holds the app settings; they are added to this process's environment. The worker's log (stderr)
    is appended to `log_path` across restarts; `log_text()` reads it.
    """

    def __init__(self, *, function_key: str | None = None, port: int | None = None,
                 visibility_timeout: int = HOST_VISIBILITY_TIMEOUT, log_path: str | os.PathLike[str] | None = None,
                 startup_timeout: float = 60.0) -> None:
        self.function_key = function_key or secrets.token_urlsafe(24)
        self.port = port or free_port()
        self.visibility_timeout = visibility_timeout
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="worker-")) / "worker.log"
        self.startup_timeout = startup_timeout
        self._env: dict[str, str] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, env: Mapping[str, str] | None = None) -> WorkerProcess:
        """Start the worker and wait for its ready line. RuntimeError (with its log's tail) if it does not start."""
        if self.running:
            raise RuntimeError(f"the worker is already running (pid {self.pid})")
        if env is not None:
            self._env = dict(env)
        # `--name=value`: a random key may begin with "-", which argparse would read as an option.
        command = [sys.executable, "-m", "sandbox.worker", f"--port={self.port}", f"--function-key={self.function_key}",
                   f"--visibility-timeout={self.visibility_timeout}"]
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **self._env},
                                             stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL)
        ready = self._ready_line()
        self.url = ready["url"]
        return self

    def _ready_line(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        deadline = time.monotonic() + self.startup_timeout
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=0.2):
                    line = stdout.readline()
                    if line:
                        stdout.close()  # the worker prints nothing else
                        return json.loads(line)
                if self._process.poll() is not None:
                    break
        code = self._process.poll()
        self.kill()
        raise RuntimeError(f"the worker did not start (exit status {code}); its log ends:\n{self.log_text()[-2000:]}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then wait for the drain; SIGKILL if it takes longer than `timeout`. The exit status."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self._process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash. Nothing is drained; received queue messages come back after their visibility timeout."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def restart(self) -> WorkerProcess:
        """Stop it if it still runs (gracefully), then start it again on the same port with the same settings."""
        self.stop()
        return self.start()

    def keep_alive(self, stop: threading.Event, *, delay: float = 1.0) -> threading.Thread:
        """Start it again whenever it dies, as the Functions host restarts its language worker; until `stop`."""
        def watch() -> None:
            while not stop.wait(0.2):
                if self._process is not None and not self.running:
                    log.warning("the function worker (pid %s) died: restarting it", self.pid)
                    if stop.wait(delay):
                        return
                    try:
                        self.start()
                    except RuntimeError:
                        log.exception("the function worker did not restart")
        thread = threading.Thread(target=watch, name="worker-keep-alive", daemon=True)
        thread.start()
        return thread

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> WorkerProcess:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
