"""A remediation: one rotation of one application's secret, applied to every cluster it serves, the
replacement of a deleted application by a new one, or one cluster's move to managed identity (`migrate`). The
aggregate: its record, and the rules that read it.

One record holds everything its steps need between queue messages. It never holds secret text: the secret lives only
in Key Vault, and the record holds its name, version and Entra keyId (`secret`). `generation` numbers the work chain:
every work message carries the generation it was sent for, and the runner drops a message whose generation is not
the record's, so a duplicate or stale message never forks the chain.

- `steps`: each step's progress (`StepProgress`: when it first ran, how many times, when it finished, its last
  reason code), one generic record for every step, as kopf keeps one per handler.
- `targets`: the fan-out: each cluster the rotation applies the new secret to, with its own reset as a tracked,
  resumable sub-step (counted and timed before the call, its status URL saved before anything waits on it).
- `secret`: the rotation's state: the password it minted and where its secret is stored.
- `replacement`: a replacement's state (`replace`): the deleted principal, the new application and the role
  assignments carried over.
- `plan`: a dry run's or observe mode's plan.
- `migration`: a move to managed identity's state (`migrate`): the identities and roles planned and made, and the
  switch and node-image upgrades as tracked long-running operations.

`credential` says which secret of the clusters it is about: the service principal's, or the legacy Azure AD
integration's server application's. `client_id` is always the application whose secret broke (its claim, its
rotations).

What is kept outside this record, and why (each written before or with the record, never instead of it):
- the application's claim: a row `~claim~app-{appId}` beside the records, written in one transaction with the
  record it names (remediation/run/admission.py), so two workers cannot both start a rotation of one application;
- the incident: a row per (correlation id, cluster), written insert-if-absent before anything acts, so one
  breakage is acted on once however often it is reported; and the decision log (remediation/run/admission.py);
- the reset ledger: the fleet's reset reservations, for REMEDIATOR_MAX_RESETS_PER_HOUR across rotations;
- a cluster's pending lookup and each subscription's sweep checkpoint (remediation/intake/detection.py);
- markers in Azure, which a run that died finds again: the password's display name (`aks-sp-remediator {id}`), the
  Key Vault secret's tags (remediationId, keyId), the role assignments' names (derived from scope, principal and
  role) and the replacement application's notes (its creation nonce).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from remediation.ids import ClusterId
from remediation.model import Credential, Status

# Fields Table storage cannot hold as they are: they travel as JSON strings.
_JSON_FIELDS = ("steps", "old_key_ids", "plan", "error", "requested_by", "targets", "secret", "replacement",
                "retired", "migration")


def new_remediation_id() -> str:
    return uuid.uuid4().hex


_OBSERVE_PLANS = uuid.UUID("5d1c3f0e-9b7a-4c2e-8f41-6a0d2b9e7c15")


def observe_plan_id(client_id: str) -> str:
    """The one record of an application's plan in observe mode: the same id for every hint about any of its clusters,
    so the next check updates that plan in place instead of adding one per cluster and per check."""
    return uuid.uuid5(_OBSERVE_PLANS, client_id.lower()).hex


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
class StepProgress:
    """One step's progress. The runner counts each run before the step's body runs, so a step that finds
    `attempts > 1` knows an earlier run went through it and may have died inside it."""

    started_at: str | None = None  # its first run
    attempts: int = 0  # runs so far, this one included
    at: str | None = None  # when it finished; None while it is to run or waiting
    code: str = ""  # its last outcome's reason code
    detail: str = ""


@dataclass
class NewSecret:
    """The password a rotation minted, and where its secret text is stored (never the text)."""

    key_id: str | None = None
    vault_name: str | None = None
    vault_version: str | None = None
    accepted_in_a_row: int = 0  # Entra ID's successive acceptances while it propagates


@dataclass
class CarriedRole:
    """One role assignment of the deleted principal, to give the new one."""

    scope: str
    role_definition_id: str
    role: str  # the role definition's GUID
    status: str = "Pending"  # Pending, Assigned, NotAssignable
    detail: str = ""

    def view(self) -> dict[str, str]:
        return {"scope": self.scope, "roleDefinitionId": self.role_definition_id, "role": self.role,
                "status": self.status, "detail": self.detail}

    @classmethod
    def of(cls, data: dict[str, str]) -> CarriedRole:
        return cls(data["scope"], data["roleDefinitionId"], data["role"], data.get("status", "Pending"),
                   data.get("detail", ""))


@dataclass
class ReplacementState:
    """A replacement: the deleted principal, the new application (created once: `app_nonce`, random, is recorded
    before the create and written into the application's notes, so a run that finds it set looks for the one
    application carrying it before creating another; never shown), and the role assignments carried over."""

    old_principal_id: str | None = None
    old_display_name: str | None = None
    app_nonce: str | None = field(default=None, repr=False)
    new_client_id: str | None = None
    new_app_object_id: str | None = None
    new_principal_id: str | None = None
    roles: list[CarriedRole] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "roles"}, "roles": [r.view() for r in self.roles]}

    @classmethod
    def of(cls, data: dict[str, Any]) -> ReplacementState:
        return cls(**{k: v for k, v in data.items() if k != "roles"}, roles=[CarriedRole.of(r) for r in
                                                                             data.get("roles", ())])


@dataclass
class IdentityMade:
    """A user-assigned identity a migration created (or found again by its name and tag)."""

    id: str
    principal_id: str
    client_id: str


@dataclass
class Operation:
    """A long-running ARM write of a migration: when it was started (recorded before the call) and where to look."""

    started_at: str | None = None
    status_url: str | None = None
    not_before: str | None = None  # when to look next (ARM's Retry-After)
    finished_at: str | None = None


@dataclass
class MigrationState:
    """A move to managed identity (remediation/run/migration.py): what the plan said to create and grant, what was
    created, and the cluster's two long-running writes (the switch, then one node-image upgrade per pool)."""

    identity_group: str = ""
    location: str = ""  # the cluster's: its identities are made there
    names: dict[str, str] = field(default_factory=dict)  # controlPlane / kubelet -> identity name
    roles: list[dict[str, str]] = field(default_factory=list)  # {identity, scope, role, status, detail}
    made: dict[str, IdentityMade] = field(default_factory=dict)  # controlPlane / kubelet -> what ARM holds
    window_end: str | None = None  # disruptive writes start only before then (the maintenance window)
    switch: Operation = field(default_factory=Operation)
    pools: dict[str, Operation] = field(default_factory=dict)
    verified_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, data: dict[str, Any]) -> MigrationState:
        return cls(identity_group=data.get("identity_group", ""), location=data.get("location", ""),
                   names=dict(data.get("names") or {}),
                   roles=[dict(r) for r in data.get("roles") or ()],
                   made={k: IdentityMade(**v) for k, v in (data.get("made") or {}).items()},
                   window_end=data.get("window_end"), switch=Operation(**(data.get("switch") or {})),
                   pools={k: Operation(**v) for k, v in (data.get("pools") or {}).items()},
                   verified_at=data.get("verified_at"))

    def view(self) -> dict[str, Any]:
        return {"identityResourceGroup": self.identity_group or None, "identityNames": dict(self.names),
                "identities": {k: {"id": v.id, "principalId": v.principal_id, "clientId": v.client_id}
                               for k, v in self.made.items()},
                "roleAssignments": [dict(r) for r in self.roles], "windowEnd": self.window_end,
                "switch": asdict(self.switch), "nodeImageUpgrades": {k: asdict(v) for k, v in self.pools.items()},
                "verifiedAt": self.verified_at}


@dataclass
class RetiredPassword:
    key_id: str
    hint: str
    display_name: str
    end: str
    removed_at: str
    why: str  # expired, replaced

    def view(self) -> dict[str, str]:
        return {"keyId": self.key_id, "hint": self.hint, "displayName": self.display_name, "endDateTime": self.end,
                "removedAt": self.removed_at, "why": self.why}

    @classmethod
    def of(cls, data: dict[str, str]) -> RetiredPassword:
        return cls(data["keyId"], data.get("hint", ""), data.get("displayName", ""), data.get("endDateTime", ""),
                   data.get("removedAt", ""), data.get("why", ""))


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
    migrate: bool = False  # a move to managed identity (migration), not a rotation
    requested_by: dict[str, str] | None = None  # the API caller's objectId and appId; None for events and sweeps
    correlation_id: str | None = None  # the incident that started it, if any
    generation: int = 0
    steps: dict[str, StepProgress] = field(default_factory=dict)
    # What the decision observed, so the steps need not read it again.
    client_id: str | None = None
    app_object_id: str | None = None
    old_key_ids: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    secret: NewSecret = field(default_factory=NewSecret)
    replacement: ReplacementState = field(default_factory=ReplacementState)
    migration: MigrationState = field(default_factory=MigrationState)
    verified_at: str | None = None  # every target finished
    retired: list[RetiredPassword] = field(default_factory=list)
    transient_failures: int = 0
    plan: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None
    lease_until: str | None = None
    finished_at: str | None = None
    failed_at: str | None = None  # when the failure it repairs happened (the Activity Log entry's time), if known
    # Storage's optimistic-concurrency token; not part of the public view.
    etag: str | None = field(default=None, compare=False)

    # ----- its steps ------------------------------------------------------------------------------

    def progress(self, step: str) -> StepProgress:
        return self.steps.setdefault(step, StepProgress())

    def done(self, step: str) -> bool:
        return step in self.steps and self.steps[step].at is not None

    def mark(self, step: str, code: str, detail: str, now: datetime) -> None:
        progress = self.progress(step)
        progress.at, progress.code, progress.detail = now.isoformat(), code, detail

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
    def credential_kind(self) -> Credential:
        return Credential(self.credential)

    @property
    def secret_app_id(self) -> str:
        """The application the new secret belongs to: the replacement, or the one rotated."""
        return (self.replacement.new_client_id if self.replace else self.client_id) or ""

    @property
    def secret_app_object_id(self) -> str:
        return (self.replacement.new_app_object_id if self.replace else self.app_object_id) or ""

    def target(self, cluster: ClusterId) -> Target | None:
        return next((t for t in self.targets if t.cluster.key == cluster.key), None)

    # ----- its rules ------------------------------------------------------------------------------

    @property
    def is_observe_plan(self) -> bool:
        """An application's plan in observe mode (not an operator's dry run): one record per application."""
        return self.observe and not self.dry_run and bool(self.client_id)

    @property
    def takes_claim(self) -> bool:
        """Dry runs and observe-mode plans write nothing to Azure: they take no claim and block nothing."""
        return not self.dry_run and not self.observe

    @property
    def claim_key(self) -> str:
        """One rotation per application at a time: the claim is the application's."""
        return f"app-{(self.client_id or '').lower()}"

    def stalled(self, now: datetime, after: timedelta) -> bool:
        """Not finished and not changed for longer than any live chain leaves it alone (`after`: the lease, the
        longest wait and a margin), so its chain of work messages was lost."""
        return not self.status.terminal and now - datetime.fromisoformat(self.updated_at) > after

    def verified(self, cluster: ClusterId) -> bool:
        """Whether this remediation moved the cluster to its new secret and read it back."""
        target = self.target(cluster)
        return target is not None and target.status is TargetStatus.VERIFIED

    def cluster_verified_at(self, cluster: ClusterId) -> str | None:
        target = self.target(cluster)
        return target.updated_at if target is not None and target.status is TargetStatus.VERIFIED else None

    def rejoin(self, cluster: ClusterId, *, joined_by: str, not_after: str | None, order: tuple[str, ...]) -> bool:
        """Take in a cluster of this rotation's application that broke meanwhile: a new target, or one moved,
        skipped or failed earlier made pending again, and the fan-out (`apply_to_clusters` onwards, in `order`) to
        run again. False when there is nothing to do: it is finished, or the cluster is already pending in it."""
        target = self.target(cluster)
        if self.migrate or self.status.terminal or (target and not target.status.terminal):
            return False  # a migration moves its one cluster and takes in no other
        if target:  # it was moved, skipped or failed earlier in this rotation, and has broken since: again
            target.status, target.code, target.detail = TargetStatus.PENDING, "Rejoined", "a new failure"
            target.reset_attempts, target.reset_started_at, target.reset_status_url = 0, None, None
            target.not_before, target.joined_by, target.not_after = None, joined_by, not_after
        else:
            self.targets.append(Target(str(cluster), joined_by=joined_by, not_after=not_after))
        if self.done("apply_to_clusters"):
            self.undo_from("apply_to_clusters", order)
        self.lease_until = None
        return True

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
            "steps": [{"name": n, "at": s.at, "code": s.code, "detail": s.detail, "startedAt": s.started_at,
                       "attempts": s.attempts} for n, s in self.steps.items()],
            "credential": self.credential,
            "servicePrincipal": {"clientId": self.client_id, "applicationObjectId": self.app_object_id,
                                 "newKeyId": self.secret.key_id},
            "keyVault": {"secretName": self.secret.vault_name, "version": self.secret.vault_version},
            "clusters": [t.view() for t in self.targets],
            "retiredPasswords": [p.view() for p in self.retired],
            "resetAttempts": sum(t.reset_attempts for t in self.targets),
            "error": self.error,
        }
        if self.replace:
            r = self.replacement
            body["replacement"] = {"oldPrincipalId": r.old_principal_id, "oldDisplayName": r.old_display_name,
                                   "newClientId": r.new_client_id, "newApplicationObjectId": r.new_app_object_id,
                                   "newPrincipalId": r.new_principal_id, "roleAssignments": [c.view() for c in r.roles]}
        if self.migrate:
            body["migration"] = self.migration.view()
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
        entity["secret"] = json.dumps(asdict(self.secret))
        entity["replacement"] = json.dumps(self.replacement.to_json()) if self.replace else None
        entity["retired"] = json.dumps([p.view() for p in self.retired])
        entity["migration"] = json.dumps(self.migration.to_json()) if self.migrate else None
        entity["cluster_key"] = ClusterId.parse(self.cluster_id).key  # to find a cluster's remediations
        entity["app_key"] = (self.client_id or "").lower()  # to find an application's
        entity["active"] = not self.status.terminal  # to find unfinished work
        return {k: v for k, v in entity.items() if v is not None}

    @classmethod
    def from_entity(cls, entity: dict[str, Any], etag: str | None = None) -> Remediation:
        entity = _upgraded(entity)
        names = set(cls.__dataclass_fields__) - {"etag", "status", *_JSON_FIELDS}
        values = {k: entity[k] for k in names if k in entity}
        return cls(
            **values,
            status=Status(entity["status"]),
            steps={k: StepProgress(**v) for k, v in json.loads(entity.get("steps") or "{}").items()},
            old_key_ids=json.loads(entity.get("old_key_ids") or "[]"),
            plan=json.loads(entity.get("plan") or "[]"),
            error=json.loads(entity["error"]) if entity.get("error") else None,
            requested_by=json.loads(entity["requested_by"]) if entity.get("requested_by") else None,
            targets=[Target.of(t) for t in json.loads(entity.get("targets") or "[]")],
            secret=NewSecret(**json.loads(entity.get("secret") or "{}")),
            replacement=ReplacementState.of(json.loads(entity.get("replacement") or "{}")),
            retired=[RetiredPassword.of(p) for p in json.loads(entity.get("retired") or "[]")],
            migration=MigrationState.of(json.loads(entity.get("migration") or "{}")),
            etag=etag,
        )


# Columns of records written before the typed state (issue 18): read into it, so a remediation in flight during an
# upgrade carries on. Written records never have them again.
_LEGACY_SECRET = {"new_key_id": "key_id", "vault_secret_name": "vault_name", "vault_secret_version": "vault_version",
                  "propagation_successes": "accepted_in_a_row"}
_LEGACY_REPLACEMENT = ("old_principal_id", "old_display_name", "app_nonce", "new_client_id", "new_app_object_id",
                       "new_principal_id")
_LEGACY_STARTED = {"mint_started_at": "mint_secret", "propagation_started_at": "await_propagation",
                   "roles_started_at": "carry_over_roles"}


def _upgraded(entity: dict[str, Any]) -> dict[str, Any]:
    if "secret" in entity or not any(k in entity for k in (*_LEGACY_SECRET, *_LEGACY_REPLACEMENT, *_LEGACY_STARTED,
                                                            "role_assignments")):
        return entity
    entity = dict(entity)
    entity["secret"] = json.dumps({new: entity.pop(old) for old, new in _LEGACY_SECRET.items() if old in entity})
    replacement = {name: entity.pop(name) for name in _LEGACY_REPLACEMENT if name in entity}
    replacement["roles"] = json.loads(entity.pop("role_assignments", None) or "[]")
    entity["replacement"] = json.dumps(replacement)
    steps = {name: {"at": s.get("at"), "code": s.get("code", ""), "detail": s.get("detail", ""),
                    "started_at": s.get("at"), "attempts": 1}
             for name, s in json.loads(entity.get("steps") or "{}").items()}
    for old, step in _LEGACY_STARTED.items():
        started = entity.pop(old, None)
        if started and step not in steps:  # it had started and not finished: an earlier run went through it
            steps[step] = {"started_at": started, "attempts": 1, "at": None, "code": "", "detail": ""}
    entity["steps"] = json.dumps(steps)
    return entity
