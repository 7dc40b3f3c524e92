"""Each Azure adapter with its real SDK client, over HTTPS, against the local sandbox."""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from kiota_http.middleware.options import RetryHandlerOption

from remediation.adapters.aks import AksManagedClusters
from remediation.adapters.clients import RetrySettings
from remediation.adapters.graph import GraphDirectory
from remediation.adapters.keyvault import KeyVaultSecrets
from remediation.adapters.monitor import MonitorActivityLog
from remediation.adapters.odata import literal
from remediation.adapters.signin import EntraSignIn
from remediation.errors import (
    AuthenticationUnavailableError,
    InvalidInputError,
    NotFoundError,
    OperationInProgressError,
    PermanentError,
    TransientError,
)
from remediation.ids import ClusterId
from remediation.model import Credential, SecretText
from sandbox import Sandbox

# The SDKs retry once and at once, so a fault test does not sleep through their back-off (production keeps the
# defaults). A Retry-After the sandbox sends is still waited for.
FAST_RETRY = RetrySettings(total=1, backoff_factor=0)
FAST_GRAPH_RETRY = RetryHandlerOption(delay=0, max_retries=1)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret") as running:
        yield running


def credential(sandbox: Sandbox, identity=None) -> ClientSecretCredential:
    identity = identity or sandbox.remediator
    return ClientSecretCredential(sandbox.tenant_id, identity.client_id, identity.client_secret,
                                  authority=sandbox.endpoints["login"], disable_instance_discovery=True,
                                  connection_verify=sandbox.ca_path)


def admin(sandbox: Sandbox, path: str, body: object) -> dict:
    request = urllib.request.Request(f"{sandbox.endpoints['admin']}{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=sandbox.ca_path)
    with urllib.request.urlopen(request, context=context) as response:
        return json.loads(response.read() or b"{}")


def faults_left(sandbox: Sandbox) -> list[int]:
    """What is left of each request fault (its `count`, less the requests it answered)."""
    context = ssl.create_default_context(cafile=sandbox.ca_path)
    with urllib.request.urlopen(f"{sandbox.endpoints['admin']}/_sandbox/faults", context=context) as response:
        return [f["remaining"] for f in json.loads(response.read())["value"] if "remaining" in f]


def cluster(sandbox: Sandbox, name: str = "aks-payments", group: str = "rg-payments") -> ClusterId:
    return ClusterId(sandbox.subscription_id, group, name)


def state_of(sandbox: Sandbox, name: str = "aks-payments") -> dict:
    return next(c for c in sandbox.snapshot()["clusters"] if c["name"] == name)


@pytest.fixture
def aks(sandbox: Sandbox) -> AksManagedClusters:
    return AksManagedClusters(credential(sandbox), endpoint=sandbox.endpoints["arm"],
                              connection_verify=sandbox.ca_path, polling_interval=0, retry=FAST_RETRY)


@pytest.fixture
def graph(sandbox: Sandbox) -> GraphDirectory:
    return GraphDirectory(credential(sandbox), endpoint=sandbox.endpoints["graph"], ca_bundle=sandbox.ca_path,
                          retry=FAST_GRAPH_RETRY)


@pytest.fixture
def vault(sandbox: Sandbox) -> KeyVaultSecrets:
    return KeyVaultSecrets(sandbox.endpoints["vault"], credential(sandbox), connection_verify=sandbox.ca_path,
                           verify_challenge_resource=False, retry=FAST_RETRY)


def test_aks_reads_clusters_and_refuses_unknown_ones(aks: AksManagedClusters, sandbox: Sandbox) -> None:
    found = aks.get_cluster(cluster(sandbox))
    assert found.name == "aks-payments" and found.provisioning_state == "Succeeded"
    assert found.client_id == state_of(sandbox)["clientId"] and not found.uses_managed_identity
    assert aks.get_cluster(cluster(sandbox, "aks-msi")).uses_managed_identity
    with pytest.raises(NotFoundError):
        aks.get_cluster(cluster(sandbox, "aks-missing"))


def wait_for_operation(aks: AksManagedClusters, url: str):
    for _ in range(100):
        status = aks.get_operation(url)
        if status.finished:
            return status
        time.sleep(0.1)
    raise AssertionError("the reset did not finish")


def test_a_reset_returns_its_status_url_at_once_and_the_url_reports_the_end(aks, graph, sandbox: Sandbox) -> None:
    app = graph.get_application_by_app_id(state_of(sandbox)["clientId"])
    password = graph.add_password(app.object_id, "adapter test", datetime.now(UTC) + timedelta(days=30))
    before = aks.get_cluster(cluster(sandbox)).last_modified_at  # systemData.lastModifiedAt
    assert before is not None
    started = aks.begin_reset_service_principal_profile(cluster(sandbox), app.app_id, password.secret_text)
    url = started.status_url
    assert started.retry_after == 1  # the 202's Retry-After: when the runner looks first
    assert url.startswith(f"{sandbox.endpoints['arm']}/subscriptions/{sandbox.subscription_id}/providers/"
                          "Microsoft.ContainerService/locations/")
    assert password.secret_text.reveal() not in url
    running = aks.get_operation(url)
    assert not running.finished and running.retry_after == 1  # not waited on; look again after Retry-After
    with pytest.raises(OperationInProgressError):  # AKS refuses a second write meanwhile: 409
        aks.begin_reset_service_principal_profile(cluster(sandbox), app.app_id, password.secret_text)
    assert wait_for_operation(aks, url).succeeded
    assert state_of(sandbox)["heldKeyId"] == password.key_id and state_of(sandbox)["secretValidNow"]
    assert sandbox.state.secret_text_of_cluster("aks-payments") == password.secret_text.reveal()
    after = aks.get_cluster(cluster(sandbox))
    assert after.provisioning_state == "Succeeded" and after.last_modified_at > before


def test_a_reset_with_a_wrong_secret_ends_failed(aks, sandbox: Sandbox) -> None:
    url = aks.begin_reset_service_principal_profile(cluster(sandbox), state_of(sandbox)["clientId"],
                                                    SecretText("not-the-secret")).status_url
    status = wait_for_operation(aks, url)
    assert not status.succeeded and "ServicePrincipalValidationClientError" in (status.error or "")
    assert "not-the-secret" not in (status.error or "")
    assert state_of(sandbox)["provisioningState"] == "Failed"


def test_resetting_a_managed_identity_cluster_is_refused(aks, sandbox: Sandbox) -> None:
    with pytest.raises(PermanentError):
        aks.begin_reset_service_principal_profile(cluster(sandbox, "aks-msi"), "msi", SecretText("x"))


def test_an_operation_url_off_the_arm_endpoint_is_refused_without_sending_the_token(aks) -> None:
    with pytest.raises(PermanentError) as refused:
        aks.get_operation("https://attacker.example/subscriptions/x/operations/1")
    assert refused.value.code == "InvalidOperationUrl"


def test_graph_finds_adds_and_removes_passwords(graph: GraphDirectory, sandbox: Sandbox) -> None:
    app_id = state_of(sandbox)["clientId"]
    app = graph.get_application_by_app_id(app_id)
    before = {p.key_id for p in app.passwords}
    password = graph.add_password(app.object_id, "adapter test", datetime.now(UTC) + timedelta(days=30))
    assert password.secret_text.reveal() not in repr(password)
    # The new secret really signs in as the application.
    token = ClientSecretCredential(sandbox.tenant_id, app_id, password.secret_text.reveal(),
                                   authority=sandbox.endpoints["login"], disable_instance_discovery=True,
                                   connection_verify=sandbox.ca_path).get_token("https://management.azure.com/.default")
    assert token.token
    assert {p.key_id for p in graph.get_application_by_app_id(app_id).passwords} == before | {password.key_id}
    graph.remove_password(app.object_id, password.key_id)
    graph.remove_password(app.object_id, password.key_id)  # already gone: still fine
    assert {p.key_id for p in graph.get_application_by_app_id(app_id).passwords} == before
    with pytest.raises(NotFoundError):
        graph.get_application_by_app_id(str(uuid.uuid4()))


def test_graph_throttling_is_retried_with_retry_after(graph: GraphDirectory, sandbox: Sandbox) -> None:
    admin(sandbox, "/_sandbox/faults", {"api": "graph", "kind": "throttle", "count": 1, "retryAfter": 1})
    assert graph.get_application_by_app_id(state_of(sandbox)["clientId"]).app_id


def test_graph_server_errors_become_transient_once_the_retries_are_spent(graph: GraphDirectory,
                                                                         sandbox: Sandbox) -> None:
    admin(sandbox, "/_sandbox/faults", {"api": "graph", "kind": "error", "status": 503, "count": 10})
    with pytest.raises(TransientError):
        graph.get_application_by_app_id(state_of(sandbox)["clientId"])
    assert faults_left(sandbox) == [10 - 2]  # the first try and the one retry FAST_GRAPH_RETRY allows


def test_key_vault_stores_reads_and_lists_versions(vault: KeyVaultSecrets, sandbox: Sandbox) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    first = vault.set_secret("aks-sp-test", SecretText("first-value"), tags={"keyId": "k1"}, content_type="t",
                             expires=expires)
    second = vault.set_secret("aks-sp-test", SecretText("second-value"), tags={"keyId": "k2"}, content_type="t",
                              expires=expires)
    assert vault.get_secret("aks-sp-test", first.version).reveal() == "first-value"
    assert sandbox.state.vault_current_value("aks-sp-test") == "second-value"
    versions = vault.list_versions("aks-sp-test")
    assert {v.version for v in versions} == {first.version, second.version}
    assert {v.tags["keyId"] for v in versions} == {"k1", "k2"} and second.expires == expires
    assert vault.list_versions("never-stored") == []
    with pytest.raises(NotFoundError):
        vault.get_secret("never-stored", "0" * 32)


def test_the_activity_log_explains_a_failed_upgrade(sandbox: Sandbox) -> None:
    attempt = admin(sandbox, "/_sandbox/clusters/aks-payments/operate", {"kubernetesVersion": "1.30.4"})
    assert attempt["succeeded"] is False
    log = MonitorActivityLog(credential(sandbox), endpoint=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path)
    now = datetime.now(UTC)
    [entry] = log.list_cluster_failures(sandbox.subscription_id, since=now - timedelta(hours=1),
                                        until=now + timedelta(minutes=5), correlation_id=attempt["correlationId"])
    assert entry.correlation_id == attempt["correlationId"] and entry.is_failed_end
    assert "AADSTS" in json.loads(entry.status_message)["error"]["details"][0]["message"]
    swept = log.list_cluster_failures(sandbox.subscription_id, since=now - timedelta(hours=1),
                                      until=now + timedelta(minutes=5))
    assert [e.correlation_id for e in swept] == [attempt["correlationId"]]


def test_a_quote_in_an_activity_log_filter_value_stays_inside_its_literal(sandbox: Sandbox) -> None:
    attempt = admin(sandbox, "/_sandbox/clusters/aks-payments/operate", {"kubernetesVersion": "1.30.4"})
    log = MonitorActivityLog(credential(sandbox), endpoint=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path)
    now = datetime.now(UTC)
    # Were the quote not doubled, the value would end its literal and the rest would be terms of the filter.
    forged = f"{attempt['correlationId']}' or correlationId ne 'x"
    assert log.list_cluster_failures(sandbox.subscription_id, since=now - timedelta(hours=1),
                                     until=now + timedelta(minutes=5), correlation_id=forged) == []
    assert literal("it's") == "'it''s'" and literal("") == "''"


def test_a_wrong_identity_secret_is_an_authentication_error(sandbox: Sandbox) -> None:
    wrong = ClientSecretCredential(sandbox.tenant_id, sandbox.remediator.client_id, "wrong",
                                   authority=sandbox.endpoints["login"], disable_instance_discovery=True,
                                   connection_verify=sandbox.ca_path)
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        wrong.get_token("https://management.azure.com/.default")
    # The remediator's own sign-in failing is an outage or a misconfiguration: transient, with a Retry-After.
    with pytest.raises(AuthenticationUnavailableError) as refused:
        AksManagedClusters(wrong, endpoint=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path).get_cluster(
            cluster(sandbox))
    assert refused.value.retry_after and refused.value.retry_after > 0
    with pytest.raises(AuthenticationUnavailableError):
        GraphDirectory(wrong, endpoint=sandbox.endpoints["graph"], ca_bundle=sandbox.ca_path) \
            .get_application_by_app_id(state_of(sandbox)["clientId"])


def test_signing_in_with_a_secret_gives_entra_ids_verdict(sandbox: Sandbox, graph: GraphDirectory) -> None:
    sign_in = EntraSignIn(tenant_id=sandbox.tenant_id, authority_host=sandbox.endpoints["login"],
                          scope=f"{sandbox.endpoints['arm']}/.default", disable_instance_discovery=True,
                          connection_verify=sandbox.ca_path, retry=FAST_RETRY)
    app_id = state_of(sandbox)["clientId"]
    expired = sign_in.sign_in(app_id, SecretText(sandbox.state.secret_text_of_cluster("aks-payments")))
    assert (expired.ok, expired.code) == (False, "AADSTS7000222")
    assert sign_in.sign_in(app_id, SecretText("wrong")).code == "AADSTS7000215"
    assert sign_in.sign_in(str(uuid.uuid4()), SecretText("x")).code == "AADSTS700016"
    app = graph.get_application_by_app_id(app_id)
    fresh = graph.add_password(app.object_id, "sign-in test", datetime.now(UTC) + timedelta(days=1))
    assert sign_in.sign_in(app_id, fresh.secret_text).ok
    admin(sandbox, "/_sandbox/faults", {"api": "login", "kind": "error", "status": 503, "count": 10})
    with pytest.raises(TransientError):
        sign_in.sign_in(app_id, fresh.secret_text)


# ---------------------------------------------------------------- fleet reads


def test_resource_graph_lists_every_cluster_across_pages_as_the_remediator_reads_them() -> None:
    from remediation.adapters.resourcegraph import ResourceGraphClusters
    from sandbox.fleets import fleet

    with Sandbox(fleet=fleet(clusters=1100, subscriptions=3, applications=40, managed_identity=7)) as sandbox:
        inventory = ResourceGraphClusters(credential(sandbox), endpoint=sandbox.endpoints["arm"],
                                          connection_verify=sandbox.ca_path)
        listed = list(inventory.list_clusters(sandbox.subscription_ids))  # lazy, as Azure's list methods are
        only_first = list(inventory.list_clusters(sandbox.subscription_ids[:1]))
        served = {c["id"].lower(): c for c in sandbox.snapshot()["clusters"]}
        # The fan-out's question: which clusters hold this application's secret, over every subscription at once.
        app_id = next(c["clientId"] for c in served.values() if c["clientId"] != "msi")
        calls = inventory.calls
        using = inventory.clusters_using(app_id.upper(), Credential.SERVICE_PRINCIPAL, sandbox.subscription_ids)
        assert inventory.calls == calls + 1
        # An application id is a GUID; anything else is refused before a query is built from it.
        with pytest.raises(InvalidInputError):
            inventory.clusters_using(f"{app_id}' or type =~ '", Credential.SERVICE_PRINCIPAL, sandbox.subscription_ids)
        assert inventory.calls == calls + 1
    assert sorted(c.id.lower() for c in using) == sorted(
        cid for cid, c in served.items() if c["clientId"].lower() == app_id.lower())
    assert len({ClusterId.parse(c.id).subscription_id for c in using}) > 1  # 40 applications spread over 3
    assert inventory.calls == 2 + 1 + 1  # 1,100 rows are two pages; one subscription's fit in one; the fan-out's
    assert len(listed) == 1100 and [c.id for c in listed] == sorted(c.id for c in listed)
    assert sum(c.uses_managed_identity for c in listed) == 7
    for info in listed:  # what ARM's GET would say of each cluster
        cluster_state = served[info.id.lower()]
        assert info.client_id.lower() == cluster_state["clientId"].lower()
        assert info.tags == (cluster_state.get("tags") or {})
    assert {ClusterId.parse(c.id).subscription_id for c in only_first} == {sandbox.subscription_ids[0].lower()}


def test_graph_batches_reads_20_at_a_time_and_tells_missing_from_unread(sandbox: Sandbox) -> None:
    apps = [admin(sandbox, "/_sandbox/applications", {"displayName": f"sp-{n}", "passwords": [{"endInDays": n + 1}]})
            for n in range(44)]
    missing = str(uuid.uuid4())
    graph = GraphDirectory(credential(sandbox), endpoint=sandbox.endpoints["graph"], ca_bundle=sandbox.ca_path)
    found = graph.get_applications_by_app_ids([a["appId"].upper() for a in apps] + [missing])
    assert graph.batch_calls == 3 and sandbox.snapshot()["requests"]["graph"]["POST /$batch"] == 3
    assert found[missing] is None
    for app in apps:
        read = found[app["appId"].lower()]
        assert read is not None and [p.key_id for p in read.passwords] == [app["passwords"][0]["keyId"]]
    with pytest.raises(NotFoundError):
        graph.get_applications_by_app_ids(["x'); DROP"])


def test_graph_reads_again_only_what_it_throttled_and_leaves_out_what_it_kept_throttling(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from remediation.adapters import graph as graph_module

    apps = [admin(sandbox, "/_sandbox/applications", {"displayName": f"sp-{n}", "passwords": [{"endInDays": 30}]})
            for n in range(10)]
    ids = [a["appId"] for a in apps]
    graph = GraphDirectory(credential(sandbox), endpoint=sandbox.endpoints["graph"], ca_bundle=sandbox.ca_path)
    admin(sandbox, "/_sandbox/faults", {"api": "graph", "kind": "throttle", "route": "GET /applications(appId=)",
                                        "count": 3, "retryAfter": 0})
    assert set(graph.get_applications_by_app_ids(ids)) == {i.lower() for i in ids}  # the three were asked again
    assert graph.batch_calls == 2
    monkeypatch.setattr(graph_module, "BATCH_ATTEMPTS", 2)
    admin(sandbox, "/_sandbox/faults", {"api": "graph", "kind": "throttle", "route": "GET /applications(appId=)",
                                        "count": 1000, "retryAfter": 0})
    assert graph.get_applications_by_app_ids(ids[:3]) == {}  # unread, not missing: the report says "unknown"


def test_aks_reads_a_clusters_maintenance_configurations(aks: AksManagedClusters, sandbox: Sandbox) -> None:
    window = {"maintenanceWindow": {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Saturday"}},
                                    "durationHours": 4, "startTime": "01:00", "utcOffset": "+02:00",
                                    "startDate": "2026-01-03"}}
    assert aks.list_maintenance_configurations(cluster(sandbox)) == {}
    token = credential(sandbox, sandbox.operator).get_token("https://management.azure.com/.default").token
    request = urllib.request.Request(
        f"{sandbox.endpoints['arm']}{cluster(sandbox)}/maintenanceConfigurations/aksManagedNodeOSUpgradeSchedule"
        "?api-version=2024-09-01", data=json.dumps({"properties": window}).encode(), method="PUT",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    urllib.request.urlopen(request, context=ssl.create_default_context(cafile=sandbox.ca_path)).close()
    read = aks.list_maintenance_configurations(cluster(sandbox))
    assert list(read) == ["aksManagedNodeOSUpgradeSchedule"]
    assert read["aksManagedNodeOSUpgradeSchedule"]["maintenanceWindow"]["schedule"] == window["maintenanceWindow"][
        "schedule"]
