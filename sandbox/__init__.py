"""A local stand-in for the Azure APIs the remediator calls: ARM (AKS, Activity Log),
Microsoft Graph, Entra ID and Key Vault, over HTTPS on 127.0.0.1 with a CA made at start.

A development tool: never deployed (see .funcignore) and never imported by `remediation/`.
The real SDK clients talk to it unchanged except for their endpoint and CA settings.

    with Sandbox(scenario="expired-secret") as sandbox:
        sandbox.endpoints["arm"], sandbox.ca_path, sandbox.remediator.client_id, sandbox.api_client_id, ...
"""

from __future__ import annotations

import logging
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
from sandbox.graph import GraphApi
from sandbox.login import LoginApi
from sandbox.server import ApiServer
from sandbox.state import SCENARIOS, Identity, SandboxState, build_scenario
from sandbox.vault import VaultApi

__all__ = ["SCENARIOS", "Identity", "Sandbox", "configure_logging"]


def configure_logging(level: int) -> None:
    """Logging for the sandbox's command lines: to stderr, the Azure SDKs' own chatter at WARNING."""
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)


class Sandbox:
    """The sandbox's five HTTPS servers over one shared state. Use as a context manager, or start()/stop()."""

    def __init__(self, scenario: str = "expired-secret", *, tenant_id: str | None = None,
                 subscription_id: str | None = None) -> None:
        self.scenario = scenario
        self.state: SandboxState
        self.state, identities = build_scenario(scenario, tenant_id=tenant_id, subscription_id=subscription_id)
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

    def start(self) -> Sandbox:
        self._workdir = tempfile.mkdtemp(prefix="aks-sandbox-")
        authority = trustme.CA()
        ca_file = Path(self._workdir) / "sandbox-ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        self.ca_path = str(ca_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)

        login = LoginApi(self.state)
        login_server = ApiServer(login, context)
        arm = ArmApi(self.state)
        self._topic = EventGridTopic(self.state)
        apis = {"arm": arm, "graph": GraphApi(self.state), "login": login,
                "vault": VaultApi(self.state, login_server.url),
                "admin": AdminApi(self.state, arm, self._topic, self.operator.client_id, self.api_client_id)}
        for name, api in apis.items():
            server = login_server if api is login else ApiServer(api, context)
            self._servers.append(server)
            self.endpoints[name] = server.url
            if name in self.state.audiences:
                self.state.audiences[name].add(server.url)  # in every cloud an API's endpoint is its audience
        self.state.login_url = login_server.url
        for server in self._servers:
            server.start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()
        if self._topic:
            self._topic.close()
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

    def snapshot(self) -> dict[str, Any]:
        """What GET /_sandbox/state returns: everything observable, no secret text."""
        return self.state.snapshot()
