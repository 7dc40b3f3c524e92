"""The demo scenario end to end through the function runner, the sandbox and Azurite.

Everything the run prints and logs is captured and searched for the new secret's text.
"""

from __future__ import annotations

import json
import logging

import pytest
from azure.data.tables import TableClient

from benchmarks.run import MINIMUM, PROPAGATION_SIGN_INS, TOKENS, VAULT_CHALLENGES, tokens_by_caller
from remediation.app.settings import TABLE_NAME
from sandbox import Sandbox
from sandbox.azurite import Azurite
from sandbox.demo import run

# Minutes of worker processes over HTTP: out of the inner loop (`pytest -m "not slow"`), in `make test`.
pytestmark = pytest.mark.slow

@pytest.mark.parametrize(("manual", "schema"), [(False, "EventGridSchema"), (False, "CloudEventSchemaV1_0"),
                                               (True, "EventGridSchema")],
                         ids=["event-grid-schema", "cloud-events", "http-trigger"])
def test_the_demo_repairs_the_cluster_and_never_shows_the_secret(
        manual: bool, schema: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    seen: dict = {}

    def inspect(sandbox: Sandbox, azurite: Azurite) -> None:
        seen["secret"] = sandbox.state.secret_text_of_cluster("aks-payments")
        cluster = next(c for c in sandbox.snapshot()["clusters"] if c["name"] == "aks-payments")
        seen["cluster"] = cluster
        seen["snapshot"] = sandbox.snapshot()
        secret_name = seen["summary_name"] = next(iter(sandbox.snapshot()["keyVault"]))
        seen["vault_value"] = sandbox.state.vault_current_value(secret_name)
        table = TableClient.from_connection_string(azurite.connection_string, TABLE_NAME)
        seen["records"] = json.dumps([dict(e) for e in table.list_entities()], default=str)
        seen["tokens"] = tokens_by_caller(sandbox)
        seen["application"] = sandbox.state.applications[cluster["clientId"]].display_name

    lines: list[str] = []
    summary = run(manual=manual, out=lines.append, before_teardown=inspect, schema=schema)

    assert summary["repaired"] is True
    assert summary["remediation"]["status"] == "Succeeded"
    assert summary["remediation"]["source"] == ("manual" if manual else "event")
    snapshot = seen["snapshot"]
    app = next(a for a in snapshot["applications"] if a["appId"] == seen["cluster"]["clientId"])
    new_passwords = [p for p in app["passwords"] if p["displayName"].startswith("aks-sp-remediator")]
    assert len(new_passwords) == 1
    assert seen["cluster"]["heldKeyId"] == new_passwords[0]["keyId"]
    assert seen["cluster"]["provisioningState"] == "Succeeded" and seen["cluster"]["secretValidNow"] is True
    assert seen["vault_value"] == seen["secret"]  # Key Vault's current version is what the cluster holds

    # One repair's calls, route by route, are the documented minimum (benchmarks/run.py's MINIMUM, each call with
    # its reason); an operator's request has no failure to look up in the Activity Log.
    minimum = {api: {route: count for route, (count, _why) in routes.items()
                     if count and not (manual and route == "GET eventtypes/management/values")}
               for api, routes in MINIMUM.items()}
    by_caller = summary["requestsByCaller"]
    assert by_caller["aks-sp-remediator"] == minimum
    assert by_caller["anonymous"] == {"vault": {"PUT /secrets/{name}": VAULT_CHALLENGES}}  # the SDK's challenge
    # A token per audience for the remediator's one credential; the new secret's sign-ins are the propagation test.
    assert seen["tokens"]["aks-sp-remediator"] == {api: 1 for api in ("arm", "graph", "vault", "topic")}
    assert seen["tokens"][seen["application"]] == {"arm": PROPAGATION_SIGN_INS}
    assert sum(n for n, _ in TOKENS.values()) == 4 + PROPAGATION_SIGN_INS

    captured = capfd.readouterr()
    everything = "\n".join([
        *lines, captured.out, captured.err, json.dumps(summary, default=str), json.dumps(snapshot),
        seen["records"], *(r.getMessage() for r in caplog.records),
        *(caplog.handler.format(r) for r in caplog.records)])
    assert seen["secret"] and len(seen["secret"]) >= 16
    assert seen["secret"] not in everything
    assert len(caplog.records) > 10  # the run did log: the check above looked at something
