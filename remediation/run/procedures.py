"""Which steps a remediation runs, in order, each with the limits it runs under: a rotation, a replacement, or the
plan of either. The limits live here, beside the step, not in its body: the runner enforces how long a step may
keep waiting (from its first run); a step that works cluster by cluster reads the attempts and time each cluster
gets from its context (remediation/run/step.py `Limits`).

    rotation      discover_clusters, mint_secret, await_propagation (within REMEDIATOR_PROPAGATION_TIMEOUT_MINUTES),
                  apply_to_clusters (5 resets a cluster, each within REMEDIATOR_RESET_TIMEOUT_MINUTES),
                  retire_old_passwords
    replacement   discover_clusters, find_old_principal, create_application, mint_secret, await_propagation,
                  carry_over_roles (ARM must see the new principal within the propagation timeout),
                  apply_to_clusters
    plan          discover_clusters, (find_old_principal,) plan: dry runs and observe mode
    migration     plan_move, create_identities, assign_roles, await_roles (ARM must list them within the
                  propagation timeout), switch_identity (within REMEDIATOR_RESET_TIMEOUT_MINUTES), upgrade_node_images
                  (4 times that: one upgrade per pool), verify_migration, retire_old_secret

Each step is in remediation/run/rotation.py, replacement.py, migration.py or plan.py; the runner runs them
(remediation/run/runner.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from remediation.record import Remediation
from remediation.run import migration as move
from remediation.run.plan import plan
from remediation.run.replacement import carry_over_roles, create_application, find_old_principal
from remediation.run.rotation import (
    apply_to_clusters,
    await_propagation,
    discover_clusters,
    mint_secret,
    retire_old_passwords,
)
from remediation.run.step import Limits, Step, StepConfig

MAX_RESET_ATTEMPTS = 5  # resets of one cluster in one rotation (a new secret can take minutes to be accepted)


@dataclass(frozen=True)
class StepSpec:
    """A step of a procedure and its limits: `timeout`, how long it may keep waiting from its first run (then it
    fails with `timed_out`); `attempts_per_cluster` and `attempt_timeout`, for a step that resets clusters."""

    name: str
    run: Step
    timeout: Callable[[StepConfig], timedelta] | None = None
    timed_out: str = "StepTimedOut"
    attempts_per_cluster: int | None = None
    attempt_timeout: Callable[[StepConfig], timedelta] | None = None

    def limits(self, config: StepConfig) -> Limits:
        return Limits(timeout=self.timeout(config) if self.timeout else None, timed_out=self.timed_out,
                      attempts_per_cluster=self.attempts_per_cluster,
                      attempt_timeout=self.attempt_timeout(config) if self.attempt_timeout else None)


Procedure = tuple[StepSpec, ...]

_DISCOVER = StepSpec("discover_clusters", discover_clusters)
_MINT = StepSpec("mint_secret", mint_secret)
# Entra ID must accept the new secret several times in a row before any cluster is reset with it.
_PROPAGATE = StepSpec("await_propagation", await_propagation, timeout=lambda c: c.propagation_timeout,
                      timed_out="SecretNotAccepted")
_APPLY = StepSpec("apply_to_clusters", apply_to_clusters, attempts_per_cluster=MAX_RESET_ATTEMPTS,
                  attempt_timeout=lambda c: c.reset_timeout)
_FIND_OLD = StepSpec("find_old_principal", find_old_principal)

ROTATION: Procedure = (_DISCOVER, _MINT, _PROPAGATE, _APPLY, StepSpec("retire_old_passwords", retire_old_passwords))
REPLACEMENT: Procedure = (
    _DISCOVER, _FIND_OLD, StepSpec("create_application", create_application), _MINT, _PROPAGATE,
    # ARM learns a new principal minutes after Graph made it (PrincipalNotFound meanwhile): waited out, this long.
    StepSpec("carry_over_roles", carry_over_roles, timeout=lambda c: c.propagation_timeout,
             timed_out="PrincipalNotFound"),
    _APPLY,
)
# A move to managed identity: opt-in, inside the window (remediation/decide/migration_gate.py), one per application.
MIGRATION: Procedure = (
    StepSpec("plan_move", move.plan_move), StepSpec("create_identities", move.create_identities),
    StepSpec("assign_roles", move.assign_roles, timeout=lambda c: c.propagation_timeout, timed_out="PrincipalNotFound"),
    StepSpec("await_roles", move.await_roles, timeout=lambda c: c.propagation_timeout, timed_out="RolesNotListed"),
    StepSpec("switch_identity", move.switch_identity, timeout=lambda c: c.reset_timeout, timed_out="SwitchTimedOut"),
    StepSpec("upgrade_node_images", move.upgrade_node_images, timeout=lambda c: c.reset_timeout * 4,
             timed_out="NodeImageUpgradeTimedOut"),
    StepSpec("verify_migration", move.verify_migration, timeout=lambda c: c.reset_timeout,
             timed_out="MigrationNotVerified"),
    StepSpec("retire_old_secret", move.retire_old_secret),
)
PLAN: Procedure = (_DISCOVER, StepSpec("plan", plan))
REPLACEMENT_PLAN: Procedure = (_DISCOVER, _FIND_OLD, StepSpec("plan", plan))


def procedure_of(remediation: Remediation) -> Procedure:
    if remediation.migrate:
        return MIGRATION
    if remediation.dry_run or remediation.observe:
        return REPLACEMENT_PLAN if remediation.replace else PLAN
    return REPLACEMENT if remediation.replace else ROTATION


def step_order(remediation: Remediation) -> tuple[str, ...]:
    return tuple(spec.name for spec in procedure_of(remediation))
