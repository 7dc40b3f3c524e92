"""A local stand-in for the Azure APIs the remediator calls: ARM (AKS, Activity Log),
Microsoft Graph, Entra ID and Key Vault, over HTTPS on 127.0.0.1 with a CA made at start.

A development tool: never deployed (see .funcignore) and never imported by `remediation/`.
The real SDK clients talk to it unchanged except for their endpoint and CA settings.

    with Sandbox(scenario="expired-secret") as sandbox:
        sandbox.endpoints["arm"], sandbox.ca_path, sandbox.remediator.client_id, sandbox.api_client_id, ...

A fleet (many subscriptions, tagged resource groups, clusters sharing applications) comes from a named
scenario (`Sandbox(scenario="fleet-50")`), a scenario file (`Sandbox(scenario_file=PATH)`) or a generated
document (`Sandbox(fleet=fleets.fleet(clusters=200, seed=3))`); see sandbox/fleets.py. `subscription_ids` lists
every subscription, the default `subscription_id` first.

With `state_dir`, the state is written through to that directory after every request and a later
`Sandbox(state_dir=...)` starts from it: same ids, ports, CA and world (see sandbox/persist.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

import trustme
from azure.identity import ClientSecretCredential

from sandbox.admin import AdminApi
from sandbox.arm import ArmApi
from sandbox.eventgrid import EventGridTopic
from sandbox.fleets import FLEETS, build_fleet, load_scenario_file
from sandbox.graph import GraphApi
from sandbox.login import LoginApi
from sandbox.persist import StateStore, dump_identities, load_identities
from sandbox.server import Api, ApiServer
from sandbox.state import DEFAULT_WORLD_OPTIONS, Identities, Identity, SandboxState, WorldOptions, build_scenario
from sandbox.state import SCENARIOS as WORLD_SCENARIOS
from sandbox.topics import TopicApi
from sandbox.vault import VaultApi
from sandbox.vaulthosts import VAULT_DNS_SUFFIX, VaultHosts

__all__ = ["SCENARIOS", "Identity", "Sandbox", "WorldOptions", "configure_logging"]
SCENARIOS = WORLD_SCENARIOS + tuple(FLEETS)


def configure_logging(level: int) -> None:
    """Logging for the sandbox's command lines: to stderr, the Azure SDKs' own chatter at WARNING."""
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)


class Sandbox:
    """The sandbox's HTTPS servers (one per API) over one shared state. Use as a context manager, or start()/stop().

    The world: `fleet` (a scenario document, as sandbox/fleets.py's `fleet()` makes), else `scenario_file` (the
    same as JSON), else the named `scenario`. A fleet names its own subscriptions: `subscription_id` is for
    named scenarios only.

    `state_dir`: keep the state there, written through after every request. If the directory holds a state
    already, that world is served (scenario and ids given here are ignored), on the same ports with the same CA.
    Without it, the state lives in memory and the CA in a temporary directory, both gone at stop().

    `options`: what the remediator is granted beyond the deployed defaults (state.WorldOptions), e.g. the
    role-delegation assignment infra/ deploys when REMEDIATOR_REPLACE_DELETED is replace.
    """

    def __init__(self, scenario: str = "expired-secret", *, tenant_id: str | None = None,
                 subscription_id: str | None = None, state_dir: str | os.PathLike[str] | None = None,
                 scenario_file: str | os.PathLike[str] | None = None, fleet: dict[str, Any] | None = None,
                 options: WorldOptions = DEFAULT_WORLD_OPTIONS) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._store = StateStore(self.state_dir) if self.state_dir else None
        loaded = self._store.load() if self._store else None
        self.state: SandboxState
        self._ports: dict[str, int] = {}  # the ports to serve on; a restarted sandbox keeps its old ones
        if loaded:
            self.state, meta = loaded
            self.scenario, self._ports = meta["scenario"], meta["ports"]
            identities = load_identities(meta["identities"])
        else:
            try:
                self.scenario, self.state, identities = _world(scenario, scenario_file, fleet, tenant_id,
                                                               subscription_id, options)
            except ValueError:  # a world that cannot be built must not keep the state directory locked
                if self._store:
                    self._store.close()
                raise
        self._identities = identities
        self.remediator, self.operator, self.auditor = identities.remediator, identities.operator, identities.auditor
        # The remediator's API application: operators ask for tokens with `<api_app_id_uri>/.default`.
        self.api_client_id, self.api_app_id_uri = identities.api_client_id, identities.api_app_id_uri
        self.tenant_id = self.state.tenant_id
        self.subscription_id = self.state.subscription_id
        self.endpoints: dict[str, str] = {}
        self.ca_path = ""
        self._servers: list[ApiServer] = []
        self._workdir: str | None = None
        self._topic: EventGridTopic | None = None
        self._vault_hosts: VaultHosts | None = None

    def start(self) -> Sandbox:
        if self.state_dir is None:
            self._workdir = tempfile.mkdtemp(prefix="aks-sandbox-")
        context = self._tls_context(self.state_dir or Path(self._workdir or ""))

        login = LoginApi(self.state)
        login_server = ApiServer(login, context, self._ports.get("login", 0))
        arm = ArmApi(self.state)
        self._topic = EventGridTopic(self.state)
        apis: dict[str, Api] = {"arm": arm, "graph": GraphApi(self.state), "login": login,
                                "vault": VaultApi(self.state, login_server.url),
                                "topic": TopicApi(self.state, senders={self.remediator.client_id})}
        # What a fault's `route` may name: each API's route labels, writes first.
        routes = {name: sorted({r.label for r in api.routes}, key=lambda label: (label.startswith("GET "), label))
                  for name, api in apis.items()}
        apis["admin"] = AdminApi(self.state, arm, self._topic, self.operator.client_id, self.api_client_id, routes,
                                 remediator_app_id=self.remediator.client_id)
        for name, api in apis.items():
            server = login_server if api is login else ApiServer(api, context, self._ports.get(name, 0))
            self._servers.append(server)
            self.endpoints[name] = server.url
            self._ports[name] = server.port
            if name in self.state.audiences:
                self.state.audiences[name].add(server.url)  # in every cloud an API's endpoint is its audience
        self.state.login_url, self.state.graph_url = login_server.url, self.endpoints["graph"]
        # The vault by name (https://<vault name>.vault.sandbox.invalid): a CONNECT proxy, as az's HTTPS_PROXY.
        self._vault_hosts = VaultHosts(self.state, self._ports["vault"], self._ports.get("vaultProxy", 0))
        self.endpoints["vaultProxy"] = self._vault_hosts.url
        self._ports["vaultProxy"] = self._vault_hosts.port
        if self._store:
            self._store.attach(self.state, {"scenario": self.scenario, "identities": dump_identities(self._identities),
                                            "ports": dict(self._ports)})
        for server in self._servers:
            server.start()
        self._vault_hosts.start()
        return self

    def _tls_context(self, directory: Path) -> ssl.SSLContext:
        """The servers' TLS: a CA made by trustme, kept in `directory` (a restarted sandbox reuses it, so that
        clients' CA files stay valid). The CA's own key is not kept: nothing needs a second certificate."""
        ca_file, server_file = directory / "sandbox-ca.pem", directory / "server.pem"
        if not (ca_file.exists() and server_file.exists()):
            authority = trustme.CA()
            server = authority.issue_cert("127.0.0.1", "localhost", f"*{VAULT_DNS_SUFFIX}")  # vaults by name too
            _write_atomically(server_file, server.private_key_and_cert_chain_pem.bytes(), mode=0o600)
            _write_atomically(ca_file, authority.cert_pem.bytes(), mode=0o644)  # last: its presence means both are
        self.ca_path = str(ca_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(server_file))
        return context

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()
        if self._vault_hosts:
            self._vault_hosts.stop()
            self._vault_hosts = None
        if self._topic:
            self._topic.close()
        if self._store:
            self._store.close(self.state)  # a last save (of changes made outside requests), then the lock goes
            self._store = None
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def credential(self, identity: Identity) -> ClientSecretCredential:
        """azure-identity's own client-secret credential for one of the scenario's identities."""
        return ClientSecretCredential(self.tenant_id, identity.client_id, identity.client_secret,
                                      authority=self.endpoints["login"], disable_instance_discovery=True,
                                      connection_verify=self.ca_path)

    def api_token(self, identity: Identity | None = None) -> str:
        """An access token for the remediator's API (the operator's, by default), as `az account
        get-access-token --resource <app id uri>` gives one in Azure."""
        return self.credential(identity or self.operator).get_token(f"{self.api_app_id_uri}/.default").token

    @property
    def subscription_ids(self) -> tuple[str, ...]:
        """Every subscription of the world, the default one (`subscription_id`) first."""
        with self.state.lock:
            return tuple(self.state.subscriptions)

    def snapshot(self) -> dict[str, Any]:
        """What GET /_sandbox/state returns: everything observable, no secret text."""
        return self.state.snapshot()


def _world(scenario: str, scenario_file: str | os.PathLike[str] | None, fleet: dict[str, Any] | None,
           tenant_id: str | None, subscription_id: str | None,
           options: WorldOptions = DEFAULT_WORLD_OPTIONS) -> tuple[str, SandboxState, Identities]:
    """(what the world is called, the world, its identities), from the first of `fleet`, `scenario_file`,
    `scenario` that is given."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if fleet is None and scenario_file is None and scenario not in FLEETS:
        return (scenario, *build_scenario(scenario, tenant_id=tenant_id, subscription_id=subscription_id,
                                          options=options))
    if subscription_id is not None:
        raise ValueError("a fleet names its own subscriptions; subscription_id is for the named scenarios "
                         f"{', '.join(WORLD_SCENARIOS)}")
    if fleet is not None:
        return ("fleet", *build_fleet(fleet, tenant_id=tenant_id, options=options))
    if scenario_file is not None:
        return (f"file:{scenario_file}", *build_fleet(load_scenario_file(scenario_file), tenant_id=tenant_id,
                                                      options=options))
    return (scenario, *build_fleet(FLEETS[scenario](), tenant_id=tenant_id, options=options))


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(descriptor, data)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
