"""What a step is: a named function of (context, record) that returns Done, Wait, Retry or Stop with a reason code,
and what it is given (`StepContext`): the ports, the settings (`StepConfig`), its own progress and the limits its
procedure declares for it (remediation/run/procedures.py).

Every step is idempotent and keyed by the remediation id: running it again after a crash, a duplicate message or a
retry repeats no write that already happened. A step that is about to make a write Azure cannot take back
(addPassword, a reset, a removePassword, a create) records its intent first, through `ctx.checkpoint`, so the next
run can tell "never sent" from "sent, answer lost". No step waits inside an invocation: a step that must wait returns
Wait and the runner schedules the next message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from remediation.decide.guardrails import Guardrails
from remediation.decide.migration import ClusterDocuments
from remediation.decide.reconcile import Reconciler
from remediation.model import SecretText
from remediation.ports import (
    ClusterInventory,
    Directory,
    IdentityMoves,
    IncidentStore,
    ManagedClusters,
    ManagedIdentities,
    ResourceGroups,
    RoleAssignments,
    SecretStore,
    SignIn,
)
from remediation.record import Remediation, StepProgress
from remediation.run.chain import MAX_DELAY_SECONDS

SECRET_CONTENT_TYPE = "application/x-aks-service-principal-secret"
PASSWORD_PREFIX = "aks-sp-remediator"


@dataclass(frozen=True)
class Done:
    code: str
    detail: str


@dataclass(frozen=True)
class Wait:
    seconds: float
    code: str
    detail: str


@dataclass(frozen=True)
class Stop:
    """Nothing left to do: the remediation ends Succeeded without the remaining steps (say why)."""

    code: str
    detail: str


@dataclass(frozen=True)
class Retry:
    """Run `step` (and everything after it) again, after `seconds`."""

    step: str
    seconds: float
    code: str
    detail: str


Outcome = Done | Wait | Retry | Stop


@dataclass(frozen=True)
class StepConfig:
    secret_lifetime: timedelta = timedelta(days=180)
    poll_seconds: float = 30.0  # between looks at a running reset
    retry_delay_seconds: float = 30.0  # base of the backoff between failed resets
    reset_timeout: timedelta = timedelta(minutes=120)
    # Longer than any one invocation can run: the host stops an invocation at host.json's functionTimeout (10 min), so
    # a holder is either still within its lease or gone; never alive after another worker took the remediation over.
    lease: timedelta = timedelta(minutes=11)
    propagation_successes: int = 3
    propagation_interval_seconds: float = 10.0
    propagation_timeout: timedelta = timedelta(minutes=20)
    retire_after: timedelta = timedelta(hours=24)  # zero keeps the replaced passwords
    retire_foreign_passwords: bool = False
    guardrails: Guardrails = field(default_factory=Guardrails)
    subscriptions: tuple[str, ...] = ()  # where the fan-out looks for clusters; empty: the hint's own
    owner_id: str = ""  # the remediator's own service principal: owner of the applications a replacement creates

    @property
    def stalled_after(self) -> timedelta:
        """No progress for this long: the chain of work messages was lost (the lease, the longest wait, a margin)."""
        return self.lease + timedelta(seconds=MAX_DELAY_SECONDS) + timedelta(minutes=1)


@dataclass(frozen=True)
class Limits:
    """How far a step may go, as its procedure declares them (remediation/run/procedures.py), resolved against the
    settings: how long it may keep waiting from its first run (the runner fails it with `timed_out` after that),
    and, for a step that works cluster by cluster, how many attempts each cluster gets and how long one may run."""

    timeout: timedelta | None = None
    timed_out: str = "StepTimedOut"
    attempts_per_cluster: int | None = None
    attempt_timeout: timedelta | None = None


@dataclass(frozen=True)
class MigrationPorts:
    """What only a move to managed identity uses (a deployment with REMEDIATOR_MIGRATE=execute)."""

    identities: ManagedIdentities
    moves: IdentityMoves
    documents: ClusterDocuments  # the cluster's whole ARM body, for the plan


@dataclass
class StepContext:
    clusters: ManagedClusters
    directory: Directory
    vault: SecretStore
    sign_in: SignIn
    resource_groups: ResourceGroups
    incidents: IncidentStore  # the fleet's reset ledger (REMEDIATOR_MAX_RESETS_PER_HOUR)
    config: StepConfig
    clock: Callable[[], datetime]
    # Saves the record (ETag-checked) before a write Azure cannot take back; set by the runner.
    checkpoint: Callable[[Remediation], Remediation]
    # The new secret, kept only for the rest of this invocation so later steps need not read it back.
    secret: SecretText | None = field(default=None, repr=False)
    group_tags: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    roles: RoleAssignments | None = None  # a replacement's role assignments
    inventory: ClusterInventory | None = None  # Resource Graph: the fan-out's clusters in one query
    migration: MigrationPorts | None = None
    reconciler: Reconciler | None = None  # the decision chain, whose guardrail checks the fan-out applies
    # The running step's own: its progress (set by the runner before the step runs) and its declared limits.
    progress: StepProgress = field(default_factory=StepProgress)
    limits: Limits = field(default_factory=lambda: Limits())

    def new_secret(self, r: Remediation) -> SecretText:
        if self.secret is None:
            self.secret = self.vault.get_secret(r.secret.vault_name or "", r.secret.vault_version or "")
        return self.secret


Step = Callable[[StepContext, Remediation], Outcome]


def password_name(remediation: Remediation) -> str:
    return f"{PASSWORD_PREFIX} {remediation.id}"


def vault_secret_name(app_id: str) -> str:
    """One Key Vault secret per application: every cluster using it holds the same secret."""
    return f"aks-sp-app-{app_id.lower()}"


def look_after(config: StepConfig, retry_after: float | None) -> float:
    """Seconds until a running ARM operation is looked at again: when its answer asked (`Retry-After`, as every ARM
    client waits), else REMEDIATOR_RESET_POLL_SECONDS; never past the longest a message is held back."""
    return min(retry_after, MAX_DELAY_SECONDS) if retry_after else config.poll_seconds


def backoff(retry_delay_seconds: float, attempt: int) -> float:
    return min(retry_delay_seconds * 2 ** max(attempt - 1, 0), MAX_DELAY_SECONDS)
