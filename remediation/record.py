"""A remediation: a record of named, idempotent steps, keyed by the remediation id.

The record is the whole memory of a remediation between queue messages. It never
holds secret text: the secret lives only in Key Vault, and the record holds its
name, version and Entra keyId.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from remediation.ids import ClusterId
from remediation.model import Status

# The steps of a real remediation, in order. A dry run stops after `plan`.
STEPS = ("inspect_cluster", "find_application", "mint_and_store_secret", "start_reset", "verify_cluster")
DRY_RUN_STEPS = ("inspect_cluster", "find_application", "plan")
# Fields Table storage cannot hold as they are: they travel as JSON strings.
_JSON_FIELDS = ("steps", "old_key_ids", "plan", "error", "requested_by")


def new_remediation_id() -> str:
    return uuid.uuid4().hex


@dataclass
class StepRecord:
    at: str
    detail: str


@dataclass
class Remediation:
    id: str
    cluster_id: str
    dry_run: bool
    source: str
    status: Status
    created_at: str
    updated_at: str
    reason: str = ""  # why the status is what it is; changes as the steps run
    cause: str = ""  # why the remediation was started (the classification, or the operator's words); kept
    requested_by: dict[str, str] | None = None  # the API caller's objectId and appId; None for events and sweeps
    steps: dict[str, StepRecord] = field(default_factory=dict)
    client_id: str | None = None
    app_object_id: str | None = None
    old_key_ids: list[str] = field(default_factory=list)
    new_key_id: str | None = None
    vault_secret_name: str | None = None
    vault_secret_version: str | None = None
    reset_started_at: str | None = None
    reset_attempts: int = 0
    transient_failures: int = 0
    plan: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None
    lease_until: str | None = None
    # Storage's optimistic-concurrency token; not part of the public view.
    etag: str | None = field(default=None, compare=False)

    def done(self, step: str) -> bool:
        return step in self.steps

    def mark(self, step: str, detail: str, now: datetime) -> None:
        self.steps[step] = StepRecord(at=now.isoformat(), detail=detail)

    @property
    def step_names(self) -> tuple[str, ...]:
        return DRY_RUN_STEPS if self.dry_run else STEPS

    @property
    def next_step(self) -> str | None:
        return next((s for s in self.step_names if s not in self.steps), None)

    def view(self) -> dict[str, Any]:
        """The operator-facing JSON: what was decided and why, ids and times, never a secret."""
        body = {
            "id": self.id,
            "clusterResourceId": self.cluster_id,
            "dryRun": self.dry_run,
            "source": self.source,
            "status": self.status.value,
            "reason": self.reason,
            "cause": self.cause,
            "requestedBy": self.requested_by,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "nextStep": None if self.status.terminal else self.next_step,
            "steps": [{"name": n, **asdict(s)} for n, s in self.steps.items()],
            "servicePrincipal": {"clientId": self.client_id, "applicationObjectId": self.app_object_id,
                                 "newKeyId": self.new_key_id},
            "keyVault": {"secretName": self.vault_secret_name, "version": self.vault_secret_version},
            "resetAttempts": self.reset_attempts,
            "error": self.error,
        }
        if self.dry_run:
            body["plan"] = self.plan
        return body

    # Table storage keeps flat properties: lists and step maps travel as JSON strings.
    def to_entity(self) -> dict[str, Any]:
        entity = {k: v for k, v in asdict(self).items() if k not in ("etag", *_JSON_FIELDS)}
        entity["status"] = self.status.value
        entity["steps"] = json.dumps({k: asdict(v) for k, v in self.steps.items()})
        entity["old_key_ids"] = json.dumps(self.old_key_ids)
        entity["plan"] = json.dumps(self.plan)
        entity["error"] = json.dumps(self.error) if self.error else None
        entity["requested_by"] = json.dumps(self.requested_by) if self.requested_by else None
        entity["cluster_key"] = ClusterId.parse(self.cluster_id).key  # to find a cluster's remediations
        return {k: v for k, v in entity.items() if v is not None}

    @classmethod
    def from_entity(cls, entity: dict[str, Any], etag: str | None = None) -> Remediation:
        names = set(cls.__dataclass_fields__) - {"etag", "status", *_JSON_FIELDS}
        values = {k: entity[k] for k in names if k in entity}
        steps = {k: StepRecord(**v) for k, v in json.loads(entity.get("steps") or "{}").items()}
        return cls(
            **values,
            status=Status(entity["status"]),
            steps=steps,
            old_key_ids=json.loads(entity.get("old_key_ids") or "[]"),
            plan=json.loads(entity.get("plan") or "[]"),
            error=json.loads(entity["error"]) if entity.get("error") else None,
            requested_by=json.loads(entity["requested_by"]) if entity.get("requested_by") else None,
            etag=etag,
        )
