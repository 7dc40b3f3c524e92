"""Key Vault by vault name: a loopback HTTPS proxy that stands in for DNS under the sandbox's Key Vault suffix.

Clients address a vault by name: az builds `https://{name}{keyVaultDns}` from `--vault-name` and the cloud's
`suffixes.keyVaultDns` (azure-cli's keyvault `_validators.get_vault_base_url_type`). The sandbox has one vault server
on 127.0.0.1 and no DNS, so:

- Its cloud's suffix is `.vault.sandbox.invalid` (`VAULT_DNS_SUFFIX`, served by the metadata document,
  sandbox/deployment.py): `.invalid` never resolves (RFC 6761, section 6.4), so a client that is not pointed at the
  sandbox fails at DNS and never carries a sandbox token to a real host. az takes any suffix from the metadata
  document (azure-cli's core/cloud.py, `get_suffix('keyVaultDns', add_dot=True)`) and its Key Vault clients skip
  the challenge's resource check (`verify_challenge_resource=False`, keyvault `_client_factory`), so the vault's
  `resource="https://vault.azure.net"` challenge still works under it.
- `VaultHosts` is a plain HTTP CONNECT proxy (RFC 9110, section 9.3.6) on 127.0.0.1, which the CLI reaches through
  its documented proxy variables (`HTTPS_PROXY`, with `NO_PROXY` for the sandbox's own 127.0.0.1 endpoints:
  learn.microsoft.com/cli/azure/use-azure-cli-successfully, "Work behind a proxy"); az-setup exports them
  (sandbox/azcli.py). It does not look inside the tunnel: TLS runs end to end between the client and the vault
  server, whose certificate (from the sandbox's CA) names `*.vault.sandbox.invalid` besides localhost, and the vault
  server tells the vault from the Host header (sandbox/vault.py).
- `CONNECT {vault name}.vault.sandbox.invalid:443` for a vault the sandbox has: `200 Connection established`, then
  bytes both ways to the vault server. For another name under the suffix: in Azure DNS has no such name, and behind
  a proxy a client learns it from the proxy: `502 Bad Gateway` (assumed wording: proxies differ), which az prints
  as a connection error (`ProxyError ... Tunnel connection failed: 502`). Anything else (another host or port,
  another method): `403 Forbidden`: the sandbox never reaches out to the internet.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Any

from sandbox.state import SandboxState

log = logging.getLogger("sandbox")
VAULT_DNS_SUFFIX = ".vault.sandbox.invalid"  # the sandbox cloud's keyVaultDns, with az's leading dot
MAX_HEAD = 8192


def vault_name_of(host: str) -> str | None:
    """The vault a host name addresses (`kv-x.vault.sandbox.invalid` -> `kv-x`), or None outside the suffix."""
    host = host.lower().rstrip(".")
    if host.endswith(VAULT_DNS_SUFFIX) and len(host) > len(VAULT_DNS_SUFFIX):
        name = host[:-len(VAULT_DNS_SUFFIX)]
        return name if "." not in name else None
    return None


class _Tunnels(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hosts: VaultHosts) -> None:
        self.hosts = hosts
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(address, _Connect)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("vault proxy connection from %s ended with an error", client_address, exc_info=True)


class _Connect(socketserver.BaseRequestHandler):
    server: _Tunnels

    def handle(self) -> None:
        client: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > MAX_HEAD:
                return
            head += chunk
        verdict, upstream = self.server.hosts.open_tunnel(head.split(b"\r\n", 1)[0].decode("latin-1"))
        client.sendall(verdict.encode())
        if upstream is None:
            return
        with self.server.open_lock:
            self.server.open.update((client, upstream))
        try:
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
            other = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            other.start()
            _pump(client, upstream)
            other.join()
        finally:
            with self.server.open_lock:
                self.server.open.difference_update((client, upstream))
            upstream.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Bytes from one end to the other until either closes; then both directions end."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _status(code: int, reason: str) -> str:
    return f"HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class VaultHosts:
    """The CONNECT proxy on 127.0.0.1 (`port` 0: any free one) in front of the vault server on `vault_port`."""

    def __init__(self, state: SandboxState, vault_port: int, port: int = 0) -> None:
        self.state, self.vault_port = state, vault_port
        self._server = _Tunnels(("127.0.0.1", port), self)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="sandbox-vaulthosts",
                                        daemon=True)

    def open_tunnel(self, request_line: str) -> tuple[str, socket.socket | None]:
        """The proxy's answer to one request line, and the connection to the vault server when it is a tunnel."""
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[0] != "CONNECT":
            return _status(403, "Forbidden"), None
        host, _, port = parts[1].rpartition(":")
        name = vault_name_of(host)
        if name is None or port != "443":
            return _status(403, "Forbidden"), None
        if not self.state.has_vault(name):
            return _status(502, "Bad Gateway"), None  # the name does not resolve
        return "HTTP/1.1 200 Connection established\r\n\r\n", socket.create_connection(("127.0.0.1", self.vault_port))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._server.open_lock:
            open_now = list(self._server.open)
        for end in open_now:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
