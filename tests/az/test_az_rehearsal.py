"""The rehearsal the README walks through: two clusters whose service principal's secret expired; one repaired by
hand with the commands of Microsoft's articles ("Reset credentials for an AKS cluster": find the cluster's service
principal, reset its credential, `az aks update-credentials --reset-service-principal`), the other by the
remediator running in its worker, woken by the failure event of the same failed `az aks update`. Both end working;
what differs is what each leaves behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from benchmarks.scenarios import Live, live_world
from tests.support.az import Az, pointed_at

pytestmark = pytest.mark.slow  # a worker process, Azurite and some twenty az commands

GROUP = "rg-payments"
BY_HAND = "aks-by-hand"
BY_REMEDIATOR = "aks-payments"  # the scenario's own broken cluster


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, Az]]:
    with live_world() as live:
        application = live.admin("POST", "applications", {"displayName": "aks-by-hand-sp",
                                                           "passwords": [{"endInDays": -3}]})
        live.admin("POST", "clusters", {"resourceGroup": GROUP, "name": BY_HAND,
                                        "applicationAppId": application["appId"]})
        webhook = (f"{live.url}/runtime/webhooks/eventgrid?functionName=on_resource_failure"
                   f"&code={live.pool.function_key}")
        live.admin("POST", "eventgrid/subscriptions", {"endpointUrl": webhook, "schema": "EventGridSchema"})
        yield live, pointed_at(live.sandbox, tmp_path_factory.mktemp("rehearsal"))


def _tsv(az: Az, *args: str) -> str:
    done = az.run(*args, "--output", "tsv")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def _ended(az: Az, app_id: str) -> list[bool]:
    ends = az("ad", "app", "credential", "list", "--id", app_id, "--query", "[].endDateTime")
    return [datetime.fromisoformat(end.replace("Z", "+00:00")) < datetime.now(UTC) for end in ends]


def test_a_cluster_repaired_by_hand_with_the_articles_commands_works_again(rehearsal: tuple[Live, Az]) -> None:
    live, az = rehearsal
    # First, keep the remediator off this one: the opt-out tag, set with az. The write fails (the secret expired),
    # but AKS keeps the tags it was given, and the remediator reads the tag from the cluster as it is now.
    broken = az.fails("aks", "update", "-g", GROUP, "-n", BY_HAND, "--tags", "aks-sp-remediator=off")
    assert "ServicePrincipal" in broken.stderr or "AADSTS7000222" in broken.stderr, broken.stderr[-1000:]
    assert az("aks", "show", "-g", GROUP, "-n", BY_HAND, "--query", "tags") == {"aks-sp-remediator": "off"}
    app_id = _tsv(az, "aks", "show", "-g", GROUP, "-n", BY_HAND, "--query", "servicePrincipalProfile.clientId")
    assert _ended(az, app_id) == [True]  # the troubleshooting article's check: the secret has expired

    secret = _tsv(az, "ad", "app", "credential", "reset", "--id", app_id, "--query", "password")
    reset = az.run("aks", "update-credentials", "-g", GROUP, "-n", BY_HAND, "--reset-service-principal",
                   "--service-principal", app_id, f"--client-secret={secret}", "--output", "none")
    assert reset.returncode == 0, reset.stderr[-2000:]
    assert secret not in reset.stdout + reset.stderr

    updated = az("aks", "update", "-g", GROUP, "-n", BY_HAND, "--tags", "aks-sp-remediator=off", "touched=after")
    assert updated["tags"] == {"aks-sp-remediator": "off", "touched": "after"}
    assert updated["provisioningState"] == "Succeeded"
    # `az ad app credential reset` without --append replaced every password: one, valid, held only by the cluster.
    assert _ended(az, app_id) == [False]
    # The remediator saw the failure event and left the opted-out cluster alone.
    cluster_id = live.cluster_id.replace(BY_REMEDIATOR, BY_HAND)

    def decisions() -> list[dict]:
        return live.api("GET", f"decisions?clusterResourceId={cluster_id}")[1]["value"]

    live.wait(lambda: bool(decisions()), 60, "the decision on the opted-out cluster's failure")
    assert {d["code"] for d in decisions()} == {"OptedOut"}, decisions()
    assert live.api("GET", f"remediations?clusterResourceId={cluster_id}")[1]["value"] == []


def test_the_same_failure_on_an_identical_cluster_is_repaired_by_the_remediator(rehearsal: tuple[Live, Az]) -> None:
    live, az = rehearsal
    app_id = _tsv(az, "aks", "show", "-g", GROUP, "-n", BY_REMEDIATOR, "--query", "servicePrincipalProfile.clientId")
    az.fails("aks", "update", "-g", GROUP, "-n", BY_REMEDIATOR, "--tags", "touched=before")  # the failure event
    live.wait(live.settled, 120, "the remediator's repair")

    updated = az("aks", "update", "-g", GROUP, "-n", BY_REMEDIATOR, "--tags", "touched=after")
    assert updated["tags"] == {"touched": "after"} and updated["provisioningState"] == "Succeeded"
    # The remediator added a password and kept the expired one (retired after REMEDIATOR_RETIRE_AFTER_HOURS) ...
    assert sorted(_ended(az, app_id)) == [False, True]
    # ... and its secret is in Key Vault, tagged with the password it belongs to, never in a shell or a log.
    [new_key] = az("ad", "app", "credential", "list", "--id", app_id, "--query",
                   "[?endDateTime > '" + datetime.now(UTC).isoformat() + "'].keyId")
    stored = az("keyvault", "secret", "show", "--vault-name", live.sandbox.state.vault_name,
                "--name", f"aks-sp-app-{app_id}", "--query", "{tags: tags, enabled: attributes.enabled}")
    assert stored["enabled"] is True and stored["tags"]["keyId"] == new_key and stored["tags"]["appId"] == app_id
    [remediation] = live.api("GET", "remediations")[1]["value"]
    assert remediation["status"] == "Succeeded"
