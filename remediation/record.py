"""A remediation: one rotation of one application's secret, applied to every cluster it serves, or the
replacement of a deleted application by a new one.

One record holds everything its steps need between queue messages. It never holds secret
text: the secret lives only in Key Vault, and the record holds its name, version and Entra
keyId. `generation` numbers the work chain: every work message carries the generation it was
sent for, and the runner drops a message whose generation is not the record's, so a duplicate
or stale message never forks the chain.

`targets` is the fan-out: each cluster the rotation applies the new secret to, with its own
reset as a tracked, resumable sub-step (counted and timed before the call, its status URL saved
before anything waits on it) and its outcome.

`credential` says which secret of the clusters it is about: the service principal's, or the legacy
Azure AD integration's server application's. `client_id` is always the application whose secret
broke (its claim, its rotations). A replacement (`replace`) mints for a new application
(`new_client_id`) and carries the deleted principal's role assignments (`role_assignments`) over.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from remediation.ids import ClusterId
from remediation.model import Credential, Status

# Fields Table storage cannot hold as they are: they travel as JSON strings.
_JSON_FIELDS = ("steps", "old_key_ids", "plan", "error", "requested_by", "targets", "retired", "role_assignments")


def new_remediation_id() -> str:
    return uuid.uuid4().hex


class TargetStatus(StrEnum):
    PENDING = "Pending"  # the new secret is to be applied
    RESETTING = "Resetting"  # its reset runs
    VERIFYING = "Verifying"  # its reset ended Succeeded; the cluster is to be read back
    VERIFIED = "Verified"
    FAILED = "Failed"
    SKIPPED = "Skipped"  # a guardrail or the cluster's present state said no; `code` says which

    @property
    def terminal(self) -> bool:
        return self in (TargetStatus.VERIFIED, TargetStatus.FAILED, TargetStatus.SKIPPED)


@dataclass
class Target:
    cluster_id: str
    status: TargetStatus = TargetStatus.PENDING
    code: str = ""
    detail: str = ""
    reset_attempts: int = 0
    reset_started_at: str | None = None
    reset_status_url: str | None = None
    not_before: str | None = None  # after a failed reset: no new attempt before then (backoff)
    # A proactive rotation's target: no reset starts after then (its maintenance window's end).
    not_after: str | None = None
    updated_at: str | None = None
    # Why it is in the rotation: "hint" (its own failure: an event or a sweep), "request" (an operator asked),
    # "healthCheck" (the fleet health check: expired now, or expiring in its window), or "application" (it
    # shares the expired application).
    joined_by: str = "hint"

    @property
    def cluster(self) -> ClusterId:
        return ClusterId.parse(self.cluster_id)

    def set(self, status: TargetStatus, code: str, detail: str, now: datetime) -> None:
        self.status, self.code, self.detail, self.updated_at = status, code, detail, now.isoformat()

    def view(self) -> dict[str, Any]:
        return {"clusterResourceId": self.cluster_id, "status": self.status.value, "code": self.code,
                "detail": self.detail, "resetAttempts": self.reset_attempts, "updatedAt": self.updated_at,
                "joinedBy": self.joined_by, **({"notAfter": self.not_after} if self.not_after else {})}

    @classmethod
    def of(cls, data: dict[str, Any]) -> Target:
        return cls(**{**data, "status": TargetStatus(data["status"])})


@dataclass
class StepRecord:
    at: str
    code: str
    detail: str


@dataclass
class Remediation:
    id: str
    cluster_id: str  # the cluster whose hint started it
    dry_run: bool
    source: str
    status: Status
    created_at: str
    updated_at: str
    reason: str = ""  # why the status is what it is; changes as the steps run
    cause: str = ""  # why the remediation was started (the decision, or the operator's words); kept
    cause_kind: str = ""  # the confirmed failure: expired_secret, invalid_secret, credential_rejected, requested
    # Every password of the application had ended: every cluster using it is broken, and the rotation moves all.
    application_expired: bool = False
    mode: str = "remediate"  # observe: plans and records, writes nothing to Azure
    credential: str = Credential.SERVICE_PRINCIPAL.value
    # The application is gone: a new one replaces it (with `dry_run`, only planned).
    replace: bool = False
    requested_by: dict[str, str] | None = None  # the API caller's objectId and appId; None for events and sweeps
    correlation_id: str | None = None  # the incident that started it, if any
    generation: int = 0
    steps: dict[str, StepRecord] = field(default_factory=dict)
    # What the decision observed, so the steps need not read it again.
    client_id: str | None = None
    app_object_id: str | None = None
    old_key_ids: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    # The secret: minted (keyId), stored (Key Vault name and version). `mint_started_at` is set before
    # addPassword is called, so a run that finds it set without a keyId knows a password may be orphaned.
    mint_started_at: str | None = None
    new_key_id: str | None = None
    vault_secret_name: str | None = None
    vault_secret_version: str | None = None
    propagation_started_at: str | None = None
    propagation_successes: int = 0
    # A replacement: the deleted principal, the new application (created once: `app_nonce`, random, is recorded
    # before the create and written into the application's notes, so a run that finds it set looks for the one
    # application carrying it before creating another; never shown), and the role assignments carried over:
    # [{"scope", "roleDefinitionId", "role", "status", "detail"}], from `roles_started_at` (ARM's replication wait
    # has its own budget, apart from the secret's propagation).
    old_principal_id: str | None = None
    old_display_name: str | None = None
    app_nonce: str | None = field(default=None, repr=False)
    new_client_id: str | None = None
    new_app_object_id: str | None = None
    new_principal_id: str | None = None
    role_assignments: list[dict[str, str]] = field(default_factory=list)
    roles_started_at: str | None = None
    verified_at: str | None = None  # every target finished
    retired: list[dict[str, str]] = field(default_factory=list)  # removed passwords: keyId, hint, end, removedAt
    transient_failures: int = 0
    plan: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None
    lease_until: str | None = None
    finished_at: str | None = None
    failed_at: str | None = None  # when the failure it repairs happened (the Activity Log entry's time), if known
    # Storage's optimistic-concurrency token; not part of the public view.
    etag: str | None = field(default=None, compare=False)

    def done(self, step: str) -> bool:
        return step in self.steps

    def mark(self, step: str, code: str, detail: str, now: datetime) -> None:
        self.steps[step] = StepRecord(at=now.isoformat(), code=code, detail=detail)

    def undo_from(self, step: str, order: tuple[str, ...]) -> None:
        """Forget `step` and every step after it, so the runner runs them again."""
        for name in order[order.index(step):]:
            self.steps.pop(name, None)

    @property
    def cluster(self) -> ClusterId:
        return ClusterId.parse(self.cluster_id)

    @property
    def observe(self) -> bool:
        return self.mode == "observe"

    @property
    def kind(self) -> Credential:
        return Credential(self.credential)

    @property
    def secret_app_id(self) -> str:
        """The application the new secret belongs to: the replacement, or the one rotated."""
        return (self.new_client_id if self.replace else self.client_id) or ""

    @property
    def secret_app_object_id(self) -> str:
        return (self.new_app_object_id if self.replace else self.app_object_id) or ""

    def target(self, cluster: ClusterId) -> Target | None:
        return next((t for t in self.targets if t.cluster.key == cluster.key), None)

    def view(self) -> dict[str, Any]:
        """The operator-facing JSON: what was decided and why, ids and times, never a secret."""
        body = {
            "id": self.id,
            "clusterResourceId": self.cluster_id,
            "dryRun": self.dry_run,
            "mode": self.mode,
            "source": self.source,
            "status": self.status.value,
            "reason": self.reason,
            "cause": self.cause,
            "causeKind": self.cause_kind,
            "applicationExpired": self.application_expired,
            "requestedBy": self.requested_by,
            "correlationId": self.correlation_id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "finishedAt": self.finished_at,
            "steps": [{"name": n, **asdict(s)} for n, s in self.steps.items()],
            "credential": self.credential,
            "servicePrincipal": {"clientId": self.client_id, "applicationObjectId": self.app_object_id,
                                 "newKeyId": self.new_key_id},
            "keyVault": {"secretName": self.vault_secret_name, "version": self.vault_secret_version},
            "clusters": [t.view() for t in self.targets],
            "retiredPasswords": self.retired,
            "resetAttempts": sum(t.reset_attempts for t in self.targets),
            "error": self.error,
        }
        if self.replace:
            body["replacement"] = {"oldPrincipalId": self.old_principal_id, "oldDisplayName": self.old_display_name,
                                   "newClientId": self.new_client_id, "newApplicationObjectId": self.new_app_object_id,
                                   "newPrincipalId": self.new_principal_id, "roleAssignments": self.role_assignments}
        if self.dry_run or self.observe:
            body["plan"] = self.plan
        return body

    # Table storage keeps flat properties: lists and maps travel as JSON strings.
    def to_entity(self) -> dict[str, Any]:
        entity = {k: v for k, v in asdict(self).items() if k not in ("etag", *_JSON_FIELDS)}
        entity["status"] = self.status.value
        entity["steps"] = json.dumps({k: asdict(v) for k, v in self.steps.items()})
        entity["old_key_ids"] = json.dumps(self.old_key_ids)
        entity["plan"] = json.dumps(self.plan)
        entity["error"] = json.dumps(self.error) if self.error else None
        entity["requested_by"] = json.dumps(self.requested_by) if self.requested_by else None
        entity["targets"] = json.dumps([{**asdict(t), "status": t.status.value} for t in self.targets])
        entity["retired"] = json.dumps(self.retired)
        entity["role_assignments"] = json.dumps(self.role_assignments)
        entity["cluster_key"] = ClusterId.parse(self.cluster_id).key  # to find a cluster's remediations
        entity["app_key"] = (self.client_id or "").lower()  # to find an application's
        entity["active"] = not self.status.terminal  # to find unfinished work
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
            targets=[Target.of(t) for t in json.loads(entity.get("targets") or "[]")],
            retired=json.loads(entity.get("retired") or "[]"),
            role_assignments=json.loads(entity.get("role_assignments") or "[]"),
            etag=etag,
        )
