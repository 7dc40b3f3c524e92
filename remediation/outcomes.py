"""Remediation outcomes as CloudEvents 1.0: what the remediator tells other teams, and the events' schema.

Published by remediation/adapters/outcomes.py to an Event Grid custom topic (infra/modules/outcome-topic.bicep).

Permission: the `EventGrid Data Sender` role (d5a91429-5739-47e2-a06b-3470a27159e7) on the topic, for the
remediator's identity: Microsoft Entra auth (token audience `https://eventgrid.azure.net`), so the topic can keep
local (key) auth disabled. Event Grid answers a caller without the role `401 Unauthorized`.

Event types (the set is stable; a subscriber filters on `type`, and on `subject`, the cluster's resource id):

| type | when |
| --- | --- |
| `Remediator.Remediation.Succeeded` | a remediation finished `Succeeded`: the new secret is in place and verified |
| `Remediator.Remediation.Failed` | a remediation finished `Failed`: a person must look (`reasonCode`, `failedStep`) |
| `Remediator.Remediation.Planned` | a dry run or an observe-mode remediation finished with its plan; nothing changed |
| `Remediator.Cluster.CredentialExpired` | a cluster's credential has ended (its application's last password) |
| `Remediator.Cluster.CredentialExpiring` | a cluster's credential ends within the warning window |

Envelope: `specversion` 1.0, `id` (derived from what happened, so a re-publish of the same outcome carries the same
id and subscribers can drop duplicates), `source` (the remediator: its function app's resource id), `subject` (the
cluster's ARM resource id), `time` (when it happened, not when it was sent), `datacontenttype` application/json,
`dataschema` `DATA_SCHEMA` (its version changes only with an incompatible data change).

Data of the three `Remediation` events (camelCase; absent values are null):
`remediationId`, `outcome` (Succeeded | Failed | Planned), `reasonCode` (the error's code when Failed, else null),
`reason` (the operator-facing text), `failedStep`, `kind` (the confirmed cause: expired_secret, invalid_secret,
credential_rejected, requested, ...), `credential` (servicePrincipal | aadServer), `dryRun`, `mode`
(remediate | observe), `origin` (what started it: event, sweep, request, ...), `clusterResourceId` (the cluster that
started it, also the subject), `clusters` (every cluster the rotation applied to: `clusterResourceId`, `status`,
`code`), `applicationId` (the appId whose secret broke), `newApplicationId` (a replacement's), `newKeyId` (the new
password's Entra keyId), `correlationId` (the incident's), `createdAt`, `finishedAt`.

Data of the two `Cluster` events: `clusterResourceId`, `applicationId`, `credential`, `health` (expired | expiring),
`keyId` (the ending password's keyId, if known), `endsAt`, `detectedAt`, `remediationId` (the one started for it, if
any).

Never a secret: no secret text, no Key Vault secret value, no token; ids, times and codes only.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from remediation.model import Status

if TYPE_CHECKING:
    from remediation.record import Remediation

REMEDIATION_SUCCEEDED = "Remediator.Remediation.Succeeded"
REMEDIATION_FAILED = "Remediator.Remediation.Failed"
REMEDIATION_PLANNED = "Remediator.Remediation.Planned"
CREDENTIAL_EXPIRED = "Remediator.Cluster.CredentialExpired"
CREDENTIAL_EXPIRING = "Remediator.Cluster.CredentialExpiring"
EVENT_TYPES = (REMEDIATION_SUCCEEDED, REMEDIATION_FAILED, REMEDIATION_PLANNED, CREDENTIAL_EXPIRED, CREDENTIAL_EXPIRING)
DATA_SCHEMA = "urn:aks-sp-remediator:events:1"
EVENT_TYPE_BY_STATUS = {Status.SUCCEEDED: REMEDIATION_SUCCEEDED, Status.FAILED: REMEDIATION_FAILED,
                        Status.PLANNED: REMEDIATION_PLANNED}
# Event ids are UUIDv5 of what happened in this namespace: the same outcome always gets the same id.
_ID_NAMESPACE = uuid.UUID("6b1f3c2e-9d0a-5e4b-8c7d-2a1b0c9d8e7f")


@dataclass(frozen=True)
class OutcomeEvent:
    """One event to publish: everything but `source`, which is the publisher's. `data` is JSON, never a secret."""

    type: str
    subject: str
    id: str
    time: datetime
    data: Mapping[str, Any] = field(hash=False)

    def to_cloud_event(self, source: str) -> dict[str, Any]:
        """The CloudEvents 1.0 JSON form (structured mode)."""
        return {"specversion": "1.0", "id": self.id, "source": source, "type": self.type, "subject": self.subject,
                "time": _rfc3339(self.time), "datacontenttype": "application/json", "dataschema": DATA_SCHEMA,
                "data": dict(self.data)}


def remediation_finished(remediation: Remediation) -> OutcomeEvent:
    """The event of a finished remediation; ValueError if it has not finished."""
    event_type = EVENT_TYPE_BY_STATUS.get(remediation.status)
    if event_type is None or not remediation.finished_at:
        raise ValueError(f"remediation {remediation.id} has not finished (status {remediation.status.value})")
    failed = remediation.status is Status.FAILED
    error = remediation.error or {}
    data = {
        "remediationId": remediation.id,
        "outcome": remediation.status.value,
        "reasonCode": (error.get("code") or "Unknown") if failed else None,
        "reason": remediation.reason,
        "failedStep": (error.get("step") or None) if failed else None,
        "kind": remediation.cause_kind or None,
        "credential": remediation.credential,
        "dryRun": remediation.dry_run,
        "mode": remediation.mode,
        "origin": remediation.source,
        "clusterResourceId": remediation.cluster_id,
        "clusters": [{"clusterResourceId": t.cluster_id, "status": t.status.value, "code": t.code or None}
                     for t in remediation.targets],
        "applicationId": remediation.client_id,
        "newApplicationId": remediation.replacement.new_client_id if remediation.replace else None,
        "newKeyId": remediation.secret.key_id,
        "correlationId": remediation.correlation_id,
        "createdAt": remediation.created_at,
        "finishedAt": remediation.finished_at,
    }
    return OutcomeEvent(type=event_type, subject=remediation.cluster_id,
                        id=_event_id(event_type, remediation.id), time=datetime.fromisoformat(remediation.finished_at),
                        data=data)


def credential_expired(cluster_id: str, *, application_id: str, credential: str, ended_at: datetime | None,
                       detected_at: datetime, key_id: str | None = None,
                       remediation_id: str | None = None) -> OutcomeEvent:
    """A cluster's credential has ended. One id per cluster, application and end: found again, it is the same event."""
    return _credential_event(CREDENTIAL_EXPIRED, "expired", cluster_id, application_id, credential, ended_at,
                             detected_at, key_id, remediation_id)


def credential_expiring(cluster_id: str, *, application_id: str, credential: str, ends_at: datetime,
                        detected_at: datetime, key_id: str | None = None) -> OutcomeEvent:
    """A cluster's credential ends soon (`ends_at`). One id per cluster, application and end."""
    return _credential_event(CREDENTIAL_EXPIRING, "expiring", cluster_id, application_id, credential, ends_at,
                             detected_at, key_id, None)


def _credential_event(event_type: str, health: str, cluster_id: str, application_id: str, credential: str,
                      ends_at: datetime | None, detected_at: datetime, key_id: str | None,
                      remediation_id: str | None) -> OutcomeEvent:
    ends = _rfc3339(ends_at) if ends_at else None
    data = {"clusterResourceId": cluster_id, "applicationId": application_id.lower(), "credential": credential,
            "health": health, "keyId": key_id, "endsAt": ends, "detectedAt": _rfc3339(detected_at),
            "remediationId": remediation_id}
    key = "|".join((cluster_id.lower(), application_id.lower(), credential, ends or ""))
    return OutcomeEvent(type=event_type, subject=cluster_id, id=_event_id(event_type, key), time=detected_at, data=data)


def _event_id(event_type: str, key: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{event_type}|{key}"))


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
