"""The function app in its own process, as the Functions host runs it: `python -m sandbox.worker`.

    python -m sandbox.worker --port 7071 --function-key KEY [--visibility-timeout 600]

Reads the app settings from its environment (as the host does), serves `function_app.py` through
`sandbox.functions_host.FunctionRunner` (HTTP triggers, the Event Grid webhook, queue polling, timers on
`POST /admin/functions/{name}`), logs as the Python worker does (root logger at INFO, to stderr),
and prints one JSON line when it is ready:

    {"url": "http://127.0.0.1:7071", "pid": 12345}

SIGTERM (or Ctrl-C) stops it gracefully: no new work is taken and invocations in flight finish.
SIGKILL is a crash: a queue message whose invocation was cut off stays invisible until its visibility
timeout ends, then is delivered again (with a higher dequeue count) to whichever worker polls the queue,
as with the real host. Exit status 1, with the reason on stderr, when the app cannot be served (a
missing setting, for instance).

`WorkerProcess` starts, kills and restarts it on the same port, for tests and `python -m sandbox serve`. `WorkerPool`
runs several on one storage behind a round-robin front end, as Flex Consumption scales an app out, and kills the one
that sent a request (a sandbox kill_worker fault).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sandbox.azurite import free_port
from sandbox.functions_host import HOST_VISIBILITY_TIMEOUT, ROOT, FunctionRunner, StartupError, configure_worker_logging

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


class WorkerPool:
    """`count` workers of one function app, as Flex Consumption scales it out: each a `WorkerProcess` on its own
    port, with the same settings and function key, so they compete for the same queues' messages.

        pool = WorkerPool(4).start(app_settings)
        pool.url, pool.function_key          # the front end: each connection goes to the next running worker
        pool.workers[0]                      # each worker, as a WorkerProcess
        pool.kill_sender(("127.0.0.1", port))  # SIGKILL the worker whose socket has that client address

    `url` is a round-robin TCP front end (Flex's load balancer spreads requests over its instances; this one
    spreads connections, one request each for a client that does not keep them alive), skipping a worker that
    refuses (killed, restarting). With one worker, `url` is that worker's own: nothing stands in between.
    """

    def __init__(self, count: int = 1, *, function_key: str | None = None,
                 visibility_timeout: int = HOST_VISIBILITY_TIMEOUT, startup_timeout: float = 60.0) -> None:
        if count < 1:
            raise ValueError("a pool needs at least one worker")
        self.function_key = function_key or secrets.token_urlsafe(24)
        self.workers = [WorkerProcess(function_key=self.function_key, visibility_timeout=visibility_timeout,
                                      startup_timeout=startup_timeout) for _ in range(count)]
        self.kills: list[dict[str, Any]] = []  # one per kill_sender: {"worker": index, "pid", "attributed"}
        self._front: _FrontEnd | None = None
        self._random = random.Random(17)

    @property
    def url(self) -> str:
        return self._front.url if self._front else self.workers[0].url

    @property
    def connections(self) -> list[int]:
        """How many front-end connections each worker was given (`[0]` with one worker: there is no front end)."""
        return list(self._front.given) if self._front else [0]

    def start(self, env: Mapping[str, str]) -> WorkerPool:
        """Start every worker (side by side: each imports the app) and, with more than one, the front end.
        RuntimeError if one does not start (the others are stopped)."""
        with ThreadPoolExecutor(max_workers=len(self.workers)) as starting:
            started = [starting.submit(w.start, env) for w in self.workers]
        failed = next((f.exception() for f in started if f.exception() is not None), None)
        if failed is not None:
            self.stop()
            raise failed
        if len(self.workers) > 1:
            self._front = _FrontEnd([w.port for w in self.workers])
        return self

    def kill_sender(self, peer: tuple[str, int] | None) -> None:
        """SIGKILL the worker whose TCP socket has the client address `peer` (as a server saw it): the worker that
        sent the request. Found through /proc (Linux); where it cannot be found, one running worker at random,
        recorded as not attributed in `kills`."""
        pids = {w.pid: index for index, w in enumerate(self.workers) if w.running}
        owner = owner_of_connection(peer[1], pids) if peer and len(pids) > 1 else None
        if owner is not None:
            index, attributed = pids[owner], True
        elif len(pids) == 1:
            index, attributed = next(iter(pids.values())), True
        elif pids:
            index, attributed = self._random.choice(sorted(pids.values())), False
            log.warning("the worker that sent %s is not found: killing worker %s at random", peer, index)
        else:
            return
        worker = self.workers[index]
        self.kills.append({"worker": index, "pid": worker.pid, "attributed": attributed})
        worker.kill()

    def kill_all(self) -> None:
        for worker in self.workers:
            worker.kill()

    def keep_alive(self, stop: threading.Event, *, delay: float = 1.0) -> None:
        for worker in self.workers:
            worker.keep_alive(stop, delay=delay)

    def stop(self) -> None:
        """Stop the front end, then every worker (gracefully, side by side)."""
        if self._front:
            self._front.stop()
        with ThreadPoolExecutor(max_workers=len(self.workers)) as stopping:
            list(stopping.map(lambda w: w.stop(), self.workers))

    def log_text(self, tail: int = 3000) -> str:
        """The end of each worker's log."""
        if len(self.workers) == 1:
            return self.workers[0].log_text()[-tail:]
        return "\n".join(f"--- worker {i} (pid {w.pid}):\n{w.log_text()[-tail // len(self.workers):]}"
                         for i, w in enumerate(self.workers))


def owner_of_connection(client_port: int, pids: Iterable[int]) -> int | None:
    """Which of `pids` holds the TCP socket whose local port is `client_port`: Linux's /proc/net/tcp gives the
    socket's inode, each process's /proc/<pid>/fd its sockets' inodes. None if none does (or not on Linux)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == client_port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in pids if inodes else ():
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in inodes:
                        return pid
    return None


class _FrontEnd:
    """A TCP round-robin load balancer on 127.0.0.1: each accepted connection is piped, both ways, to the next of
    `ports` that accepts one. With none accepting, the connection is closed (the client sees a reset)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.given = [0] * len(ports)
        self._next = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, name="front-end", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), name="front-end-pipe", daemon=True).start()

    def _upstream(self) -> socket.socket | None:
        with self._lock:
            first = self._next
            self._next = (self._next + 1) % len(self.ports)
        for step in range(len(self.ports)):
            index = (first + step) % len(self.ports)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.ports[index]), timeout=5)
            except OSError:
                continue  # down (killed, restarting): the balancer tries the next instance
            with self._lock:
                self.given[index] += 1
            upstream.settimeout(None)
            return upstream
        return None

    def _pipe(self, client: socket.socket) -> None:
        upstream = self._upstream()
        if upstream is None:
            client.close()
            return
        with self._lock:
            self._open.update((client, upstream))
        peers = {client: upstream, upstream: client}
        try:
            with selectors.DefaultSelector() as selector:
                for sock in peers:
                    selector.register(sock, selectors.EVENT_READ)
                while selector.get_map():
                    for key, _ in selector.select():
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = source.recv(65536)
                        if data:
                            peers[source].sendall(data)
                        else:  # one side is done sending: pass the half-close on
                            selector.unregister(source)
                            with contextlib.suppress(OSError):
                                peers[source].shutdown(socket.SHUT_WR)
        except OSError:
            pass  # either side reset the connection (a killed worker's do): the other one is closed below
        finally:
            with self._lock:
                self._open.difference_update((client, upstream))
            client.close()
            upstream.close()

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


if __name__ == "__main__":
    sys.exit(main())
