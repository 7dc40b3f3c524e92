"""The vault by name on the wire: the CONNECT proxy (sandbox/vaulthosts.py) tunnels `<vault>.vault.sandbox.invalid`
to the vault server, which answers with ids under the URL the client used; the remediator's SDK client at the
server's own address keeps its ids; a path Key Vault has no route for gets IIS's HTML 404."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests
from azure.keyvault.secrets import SecretClient

from sandbox import Sandbox
from sandbox.vaulthosts import VAULT_DNS_SUFFIX
from tests.support.wire import Wire


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="healthy") as running:
        yield running


def by_name(sandbox: Sandbox, vault: str | None = None) -> tuple[requests.Session, str]:
    http = requests.Session()
    http.trust_env = False
    http.verify = sandbox.ca_path
    http.proxies = {"https": sandbox.endpoints["vaultProxy"]}
    return http, f"https://{vault or sandbox.state.vault_name}{VAULT_DNS_SUFFIX}"


def connect(sandbox: Sandbox, target: str) -> str:
    """The proxy's status line for one request line."""
    port = int(sandbox.endpoints["vaultProxy"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(f"{target}\r\nHost: x\r\n\r\n".encode())
        return raw.recv(4096).decode().split("\r\n", 1)[0]


def test_a_vault_reached_by_name_answers_with_ids_under_its_name(sandbox: Sandbox) -> None:
    http, url = by_name(sandbox)
    headers = Wire(sandbox).auth("https://vault.azure.net")
    stored = http.put(f"{url}/secrets/by-name", params={"api-version": "7.4"}, json={"value": "v"}, headers=headers)
    assert stored.status_code == 200 and stored.json()["id"].startswith(f"{url}/secrets/by-name/")
    listed = http.get(f"{url}/secrets", params={"api-version": "7.4"}, headers=headers)
    assert f"{url}/secrets/by-name" in [item["id"] for item in listed.json()["value"]]


def test_the_remediators_client_at_the_servers_address_is_unchanged(sandbox: Sandbox) -> None:
    client = SecretClient(sandbox.endpoints["vault"], sandbox.credential(sandbox.remediator),
                          verify_challenge_resource=False, connection_verify=sandbox.ca_path)
    written = client.set_secret("at-address", "v")
    assert written.id.startswith(f"{sandbox.endpoints['vault']}/secrets/at-address/")
    assert client.get_secret("at-address").value == "v"


def test_the_proxy_tunnels_only_to_vaults_the_world_has(sandbox: Sandbox) -> None:
    assert connect(sandbox, f"CONNECT {sandbox.state.vault_name}{VAULT_DNS_SUFFIX}:443 HTTP/1.1").startswith(
        "HTTP/1.1 200")
    assert connect(sandbox, f"CONNECT kv-nobody{VAULT_DNS_SUFFIX}:443 HTTP/1.1") == "HTTP/1.1 502 Bad Gateway"
    assert connect(sandbox, "CONNECT management.azure.com:443 HTTP/1.1") == "HTTP/1.1 403 Forbidden"
    assert connect(sandbox, "GET http://example.com/ HTTP/1.1") == "HTTP/1.1 403 Forbidden"
    http, url = by_name(sandbox, "kv-nobody")
    with pytest.raises(requests.exceptions.ProxyError):
        http.get(f"{url}/secrets", params={"api-version": "7.4"})


def test_a_path_key_vault_does_not_serve_gets_iis_html_404(sandbox: Sandbox) -> None:
    http, url = by_name(sandbox)
    answer = http.get(f"{url}/keys/k/not-a-version/encrypt", params={"api-version": "7.4"})
    assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("text/html")
    assert "<title>404 - File or directory not found.</title>" in answer.text


def test_a_restarted_sandbox_serves_the_vault_by_name_on_the_same_proxy(tmp_path) -> None:
    with Sandbox(state_dir=tmp_path / "state") as first:
        proxy = first.endpoints["vaultProxy"]
    with Sandbox(state_dir=tmp_path / "state") as again:
        assert again.endpoints["vaultProxy"] == proxy
        http, url = by_name(again)
        headers = Wire(again).auth("https://vault.azure.net")
        assert http.get(f"{url}/secrets", params={"api-version": "7.4"}, headers=headers).status_code == 200
