"""remediation/adapters/outcomes.py: the real azure-eventgrid publisher against the sandbox's custom topic
(sandbox/topics.py): the CloudEvents it sends, who may publish, how failures become the two error roots; and the topic
itself against the official examples in tests/reference/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from remediation import outcomes
from remediation.adapters.outcomes import EventGridOutcomes, NoOutcomes
from remediation.errors import PermanentError, TransientError
from remediation.model import Status
from remediation.outcomes import OutcomeEvent
from remediation.record import NewSecret, Remediation, Target, TargetStatus
from sandbox import Sandbox
from sandbox.state import EVENTGRID_AUDIENCE

REFERENCE = Path(__file__).parent / "reference"
BATCH = "application/cloudevents-batch+json; charset=utf-8"
SINGLE = "application/cloudevents+json; charset=utf-8"
FINISHED = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as running:
        yield running


@pytest.fixture(autouse=True)
def clean_topic(sandbox: Sandbox) -> Iterator[None]:
    with sandbox.state.lock:
        sandbox.state.topic_events.clear()
    yield
    requests.delete(f"{sandbox.endpoints['admin']}/_sandbox/faults", verify=sandbox.ca_path, timeout=10)


def topic_url(sandbox: Sandbox) -> str:
    return f"{sandbox.endpoints['topic']}/api/events"


def source(sandbox: Sandbox) -> str:
    # A source as Azure's own events name one: an ARM resource id (here the function app's).
    return (f"/subscriptions/{sandbox.subscription_id}/resourceGroups/rg-remediator/providers/Microsoft.Web/sites/"
            "func-remediator")


def publisher(sandbox: Sandbox, identity: Any = None) -> EventGridOutcomes:
    return EventGridOutcomes(topic_url(sandbox), sandbox.credential(identity or sandbox.remediator),
                             source=source(sandbox), connection_verify=sandbox.ca_path, retry_total=0)


def cluster_id(sandbox: Sandbox, name: str = "aks-payments", group: str = "rg-payments") -> str:
    return (f"/subscriptions/{sandbox.subscription_id}/resourceGroups/{group}/providers/"
            f"Microsoft.ContainerService/managedClusters/{name}")


def remediation(sandbox: Sandbox, status: Status, **overrides: Any) -> Remediation:
    cluster = cluster_id(sandbox)
    fields: dict[str, Any] = {
        "id": "0123456789abcdef0123456789abcdef", "cluster_id": cluster, "dry_run": False, "source": "event",
        "status": status, "created_at": (FINISHED - timedelta(minutes=30)).isoformat(),
        "updated_at": FINISHED.isoformat(), "finished_at": FINISHED.isoformat(), "reason": "1 cluster(s) reset",
        "cause_kind": "expired_secret", "client_id": "11111111-2222-4333-8444-555555555555",
        "correlation_id": "c0ffee00-0000-4000-8000-000000000001",
        "secret": NewSecret(key_id="9e4c2c8a-0000-4000-8000-00000000abcd", vault_name="aks-sp-11111111",
                            vault_version="0123456789abcdef0123456789abcdef"),
        "targets": [Target(cluster, status=TargetStatus.VERIFIED),
                    Target(cluster_id(sandbox, "aks-other"), status=TargetStatus.SKIPPED, code="OptedOut",
                           joined_by="application")]}
    fields.update(overrides)
    return Remediation(**fields)


def published(sandbox: Sandbox, event_type: str | None = None) -> list[dict[str, Any]]:
    """What the topic holds, read as a test reads it: the admin route."""
    response = requests.get(f"{sandbox.endpoints['admin']}/_sandbox/topics/events", verify=sandbox.ca_path,
                            params={"type": event_type} if event_type else None, timeout=10)
    response.raise_for_status()
    return response.json()["value"]


def raw_post(sandbox: Sandbox, body: Any, *, content_type: str = BATCH, token: str | None = "remediator",
             api_version: str | None = "2018-01-01") -> requests.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        identity = {"remediator": sandbox.remediator, "auditor": sandbox.auditor}[token]
        token_text = sandbox.credential(identity).get_token(f"{EVENTGRID_AUDIENCE}/.default").token
        headers["Authorization"] = f"Bearer {token_text}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(topic_url(sandbox), data=data, headers=headers, verify=sandbox.ca_path, timeout=10,
                         params={"api-version": api_version} if api_version else None)


def assert_event_grid_error(response: requests.Response, status: int, code: str, detail: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].endswith("to our forums for assistance or raise a support ticket.")
    assert error["details"][0]["message"] == error["message"]
    if detail:
        assert error["details"][0]["code"] == detail
    return error["message"]


# ------------------------------------------------------------------------------------------------ the publisher

def test_a_succeeded_remediation_is_published_as_a_cloud_event(sandbox: Sandbox) -> None:
    finished = remediation(sandbox, Status.SUCCEEDED)
    publisher(sandbox).publish([outcomes.remediation_finished(finished)])

    (record,) = published(sandbox)
    assert record["publisherAppId"] == sandbox.remediator.client_id
    assert record["contentType"] == BATCH
    event = record["event"]
    assert event["specversion"] == "1.0" and event["type"] == "Remediator.Remediation.Succeeded"
    assert event["source"] == (f"/subscriptions/{sandbox.subscription_id}/resourceGroups/rg-remediator/providers/"
                               "Microsoft.Web/sites/func-remediator")
    assert event["subject"] == finished.cluster_id
    assert event["datacontenttype"] == "application/json" and event["dataschema"] == outcomes.DATA_SCHEMA
    assert datetime.fromisoformat(event["time"].replace("Z", "+00:00")) == FINISHED
    assert event["data"] == {
        "remediationId": finished.id, "outcome": "Succeeded", "reasonCode": None, "reason": "1 cluster(s) reset",
        "failedStep": None, "kind": "expired_secret", "credential": "servicePrincipal", "dryRun": False,
        "mode": "remediate", "origin": "event", "clusterResourceId": finished.cluster_id,
        "clusters": [{"clusterResourceId": finished.cluster_id, "status": "Verified", "code": None},
                     {"clusterResourceId": cluster_id(sandbox, "aks-other"), "status": "Skipped", "code": "OptedOut"}],
        "applicationId": finished.client_id, "newApplicationId": None, "newKeyId": finished.secret.key_id,
        "correlationId": finished.correlation_id, "createdAt": finished.created_at, "finishedAt": finished.finished_at}


def test_failed_and_planned_remediations_and_credential_events_in_one_batch(sandbox: Sandbox) -> None:
    failed = remediation(sandbox, Status.FAILED, reason="the reset failed 3 times",
                         error={"code": "ResetFailed", "message": "the reset failed 3 times", "step": "reset"})
    planned = remediation(sandbox, Status.PLANNED, id="f" * 32, dry_run=True, reason="dry run planned")
    now = datetime(2025, 3, 2, 8, 0, tzinfo=UTC)
    expired = outcomes.credential_expired(cluster_id(sandbox), application_id="11111111-2222-4333-8444-555555555555",
                                          credential="servicePrincipal", ended_at=now - timedelta(days=3),
                                          detected_at=now, key_id="5c2b0000-0000-4000-8000-000000000001")
    expiring = outcomes.credential_expiring(cluster_id(sandbox, "aks-healthy", "rg-platform"),
                                            application_id="22222222-2222-4333-8444-555555555555",
                                            credential="servicePrincipal", ends_at=now + timedelta(days=10),
                                            detected_at=now)
    publisher(sandbox).publish([outcomes.remediation_finished(failed), outcomes.remediation_finished(planned),
                                expired, expiring])

    events = {r["event"]["type"]: r["event"] for r in published(sandbox)}
    assert set(events) == {"Remediator.Remediation.Failed", "Remediator.Remediation.Planned",
                           "Remediator.Cluster.CredentialExpired", "Remediator.Cluster.CredentialExpiring"}
    assert {k: events["Remediator.Remediation.Failed"]["data"][k] for k in ("outcome", "reasonCode", "failedStep")} \
        == {"outcome": "Failed", "reasonCode": "ResetFailed", "failedStep": "reset"}
    assert events["Remediator.Remediation.Planned"]["data"]["dryRun"] is True
    assert events["Remediator.Cluster.CredentialExpired"]["data"] == {
        "clusterResourceId": cluster_id(sandbox), "applicationId": "11111111-2222-4333-8444-555555555555",
        "credential": "servicePrincipal", "health": "expired", "keyId": "5c2b0000-0000-4000-8000-000000000001",
        "endsAt": "2025-02-27T08:00:00Z", "detectedAt": "2025-03-02T08:00:00Z", "remediationId": None}
    assert events["Remediator.Cluster.CredentialExpiring"]["subject"] == cluster_id(sandbox, "aks-healthy",
                                                                                    "rg-platform")
    assert len(published(sandbox, "Remediator.Remediation.Failed")) == 1  # the admin route's type filter


def test_the_same_outcome_always_gets_the_same_id(sandbox: Sandbox) -> None:
    """Publishing is at least once (a retry after a crash publishes again): subscribers drop duplicates by id."""
    first = outcomes.remediation_finished(remediation(sandbox, Status.SUCCEEDED))
    again = outcomes.remediation_finished(remediation(sandbox, Status.SUCCEEDED, updated_at="later"))
    failed = outcomes.remediation_finished(remediation(sandbox, Status.FAILED, error={"code": "X"}))
    other = outcomes.remediation_finished(remediation(sandbox, Status.SUCCEEDED, id="e" * 32))
    assert first.id == again.id and len({first.id, failed.id, other.id}) == 3
    now = datetime(2025, 3, 2, tzinfo=UTC)
    args = {"application_id": "A", "credential": "servicePrincipal", "ended_at": now}
    assert outcomes.credential_expired("/c", detected_at=now, **args).id == \
        outcomes.credential_expired("/C", detected_at=now + timedelta(days=1), **args).id


def test_an_unfinished_remediation_has_no_event(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="has not finished"):
        outcomes.remediation_finished(remediation(sandbox, Status.RUNNING, finished_at=None))


def test_no_secret_is_ever_published(sandbox: Sandbox) -> None:
    publisher(sandbox).publish([outcomes.remediation_finished(remediation(sandbox, Status.SUCCEEDED))])
    text = json.dumps(published(sandbox))
    secrets = [sandbox.remediator.client_secret, sandbox.state.secret_text_of_cluster("aks-payments")]
    assert all(secret and secret not in text for secret in secrets)
    assert "vault" not in text.lower() and "secretText" not in text


def test_nothing_to_publish_sends_nothing(sandbox: Sandbox) -> None:
    before = sandbox.snapshot()["requests"].get("topic", {})
    publisher(sandbox).publish([])
    NoOutcomes().publish([outcomes.remediation_finished(remediation(sandbox, Status.SUCCEEDED))])
    assert sandbox.snapshot()["requests"].get("topic", {}) == before
    assert published(sandbox) == []


def test_a_caller_without_the_role_is_refused_for_good(sandbox: Sandbox) -> None:
    event = outcomes.remediation_finished(remediation(sandbox, Status.SUCCEEDED))
    with pytest.raises(PermanentError) as refused:
        publisher(sandbox, sandbox.auditor).publish([event])
    assert refused.value.code == "EventGridUnauthorized"
    assert "EventGrid Data Sender" in str(refused.value)
    assert refused.value.__cause__ is not None  # raised from the SDK's error
    assert published(sandbox) == []


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_transient_with_the_servers_retry_after(sandbox: Sandbox, status: int) -> None:
    fault = {"api": "topic", "kind": "error", "status": status, "retryAfter": 7}
    requests.post(f"{sandbox.endpoints['admin']}/_sandbox/faults", json=fault, verify=sandbox.ca_path,
                  timeout=10).raise_for_status()
    event = outcomes.remediation_finished(remediation(sandbox, Status.SUCCEEDED))
    with pytest.raises(TransientError) as failed:
        publisher(sandbox).publish([event])
    assert failed.value.retry_after == (7 if status == 503 else None)
    assert failed.value.__cause__ is not None
    assert published(sandbox) == []
    publisher(sandbox).publish([event])  # the fault is used up: the next try goes through
    assert len(published(sandbox)) == 1


def test_throttling_is_transient(sandbox: Sandbox) -> None:
    requests.post(f"{sandbox.endpoints['admin']}/_sandbox/faults", verify=sandbox.ca_path, timeout=10,
                  json={"api": "topic", "kind": "throttle", "retryAfter": 3}).raise_for_status()
    with pytest.raises(TransientError) as throttled:
        publisher(sandbox).publish([outcomes.remediation_finished(remediation(sandbox, Status.SUCCEEDED))])
    assert throttled.value.retry_after == 3


def test_an_unreachable_topic_is_transient(sandbox: Sandbox) -> None:
    unreachable = EventGridOutcomes("https://127.0.0.1:9/api/events", sandbox.credential(sandbox.remediator),
                                    source="x", connection_verify=sandbox.ca_path, retry_total=0)
    with pytest.raises(TransientError):
        unreachable.publish([outcomes.remediation_finished(remediation(sandbox, Status.SUCCEEDED))])


def test_the_event_type_set_is_stable() -> None:
    assert outcomes.EVENT_TYPES == ("Remediator.Remediation.Succeeded", "Remediator.Remediation.Failed",
                                    "Remediator.Remediation.Planned", "Remediator.Cluster.CredentialExpired",
                                    "Remediator.Cluster.CredentialExpiring")
    assert set(outcomes.EVENT_TYPE_BY_STATUS) == {status for status in Status if status.terminal}
    event = OutcomeEvent(type="T", subject="/s", id="1", time=datetime(2025, 1, 1), data={"a": 1})
    assert event.to_cloud_event("src")["time"] == "2025-01-01T00:00:00Z"  # naive times are UTC


# ------------------------------------------------------------------------------------------------ the sandbox topic

def test_the_sdks_own_sample_is_accepted_as_sent(sandbox: Sandbox) -> None:
    from azure.eventgrid import EventGridPublisherClient

    sample = json.loads((REFERENCE / "eventgrid_publish_cloud_event_using_dict_sdk_sample.json").read_text())
    client = EventGridPublisherClient(topic_url(sandbox), sandbox.credential(sandbox.remediator))
    client.send(sample, connection_verify=sandbox.ca_path)
    (record,) = published(sandbox)
    assert record["contentType"] == BATCH
    assert {k: v for k, v in record["event"].items() if k in sample[0]} == sample[0]


def test_one_event_in_its_own_content_type(sandbox: Sandbox) -> None:
    event = json.loads((REFERENCE / "eventgrid_cloud_event_schema_blob_created_docs.json").read_text())
    response = raw_post(sandbox, event, content_type=SINGLE)
    assert (response.status_code, response.content) == (200, b"")
    assert published(sandbox)[0]["event"] == event
    assert raw_post(sandbox, [event]).status_code == 200  # the same event in a batch


def test_tokens_are_checked_as_event_grid_checks_them(sandbox: Sandbox) -> None:
    event = json.loads((REFERENCE / "eventgrid_cloud_event_schema_blob_created_docs.json").read_text())
    assert_event_grid_error(raw_post(sandbox, [event], token=None), 401, "Unauthorized")
    message = assert_event_grid_error(raw_post(sandbox, [event], token="auditor"), 401, "Unauthorized",
                                      "Unauthorized")
    assert message.startswith("The principal associated with access token presented with the incoming request does "
                              "not have permission to send data to /subscriptions/")
    vault_token = sandbox.credential(sandbox.remediator).get_token("https://vault.azure.net/.default").token
    wrong_audience = requests.post(topic_url(sandbox), params={"api-version": "2018-01-01"}, json=[event],
                                   headers={"Content-Type": BATCH, "Authorization": f"Bearer {vault_token}"},
                                   verify=sandbox.ca_path, timeout=10)
    assert_event_grid_error(wrong_audience, 401, "Unauthorized")
    assert published(sandbox) == []


@pytest.mark.parametrize(("body", "content_type", "api_version", "status", "detail"), [
    (b"{not json", BATCH, "2018-01-01", 400, "InputJsonInvalid"),
    ({"specversion": "1.0", "id": "1", "source": "/s", "type": "T"}, BATCH, "2018-01-01", 400, "InputJsonInvalid"),
    ([{"specversion": "1.0", "id": "1", "source": "/s", "type": "T"}], SINGLE, "2018-01-01", 400, "InputJsonInvalid"),
    ([{"specversion": "1.0", "id": "1", "type": "T"}], BATCH, "2018-01-01", 400, "InputJsonInvalid"),
    ([{"specversion": "0.3", "id": "1", "source": "/s", "type": "T"}], BATCH, "2018-01-01", 400, "InputJsonInvalid"),
    ([{"specversion": "1.0", "id": "1", "source": "/s", "type": "T", "time": "yesterday"}], BATCH, "2018-01-01", 400,
     "InputJsonInvalid"),
    ([{"specversion": "1.0", "id": "1", "source": "/s", "type": "T", "Bad-Name": 1}], BATCH, "2018-01-01", 400,
     "InputJsonInvalid"),
    ([], BATCH, "2018-01-01", 400, "InputJsonInvalid"),
    ([{"id": "1", "subject": "s", "eventType": "T", "eventTime": "2025-01-01T00:00:00Z", "data": {},
       "dataVersion": "1"}], "application/json", "2018-01-01", 400, "InvalidContentType"),
    ([{"specversion": "1.0", "id": "1", "source": "/s", "type": "T"}], BATCH, "2024-06-01", 400, None),
    ([{"specversion": "1.0", "id": "1", "source": "/s", "type": "T"}], BATCH, None, 400, None),
    ([{"specversion": "1.0", "id": "1", "source": "/s", "type": "T", "data": "x" * (1024 * 1024)}], BATCH,
     "2018-01-01", 413, "PayloadTooLarge"),
])
def test_bodies_event_grid_would_refuse(sandbox: Sandbox, body: Any, content_type: str, api_version: str | None,
                                       status: int, detail: str | None) -> None:
    code = "BadRequest" if status == 400 else "RequestEntityTooLarge"
    assert_event_grid_error(raw_post(sandbox, body, content_type=content_type, api_version=api_version), status, code,
                            detail)
    assert published(sandbox) == []


def test_a_batch_of_the_wrong_shape_gets_event_grids_words(sandbox: Sandbox) -> None:
    message = assert_event_grid_error(raw_post(sandbox, [{"id": "1"}], content_type=SINGLE), 400, "BadRequest")
    assert message.startswith("This resource is configured to receive event in 'CloudEventV10' schema. The JSON "
                              "received does not conform to the expected schema. Token Expected: StartObject, Actual "
                              "Token Received: StartArray.")


def test_faults_can_name_the_topics_route(sandbox: Sandbox) -> None:
    response = requests.post(f"{sandbox.endpoints['admin']}/_sandbox/faults", verify=sandbox.ca_path, timeout=10,
                             json={"api": "topic", "route": "POST /api/events", "kind": "error", "status": 503})
    assert response.status_code == 200, response.text
    answer = raw_post(sandbox, [{"specversion": "1.0", "id": "1", "source": "/s", "type": "T"}])
    assert_event_grid_error(answer, 503, "ServiceUnavailable")
    assert answer.headers["Retry-After"] == "1"
