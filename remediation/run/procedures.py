"""Which steps a remediation runs, in order: a rotation, a replacement, or the plan of either.

    rotation      discover_clusters, mint_secret, await_propagation, apply_to_clusters,
                  retire_old_passwords
    replacement   discover_clusters, find_old_principal, create_application, mint_secret,
                  await_propagation, carry_over_roles, apply_to_clusters
    plan          discover_clusters, (find_old_principal,) plan: dry runs and observe mode

The runner runs them (remediation/run/runner.py); each step is in remediation/run/steps.py or
remediation/run/replacement.py.
"""

from __future__ import annotations

from remediation.record import Remediation
from remediation.run.replacement import carry_over_roles, create_application, find_old_principal
from remediation.run.steps import (
    Step,
    apply_to_clusters,
    await_propagation,
    discover_clusters,
    mint_secret,
    plan,
    retire_old_passwords,
)

Steps = tuple[tuple[str, Step], ...]

STEPS: Steps = (
    ("discover_clusters", discover_clusters),
    ("mint_secret", mint_secret),
    ("await_propagation", await_propagation),
    ("apply_to_clusters", apply_to_clusters),
    ("retire_old_passwords", retire_old_passwords),
)
REPLACEMENT_STEPS: Steps = (
    ("discover_clusters", discover_clusters),
    ("find_old_principal", find_old_principal),
    ("create_application", create_application),
    ("mint_secret", mint_secret),
    ("await_propagation", await_propagation),
    ("carry_over_roles", carry_over_roles),
    ("apply_to_clusters", apply_to_clusters),
)
PLAN_STEPS: Steps = (("discover_clusters", discover_clusters), ("plan", plan))
REPLACEMENT_PLAN_STEPS: Steps = (("discover_clusters", discover_clusters), ("find_old_principal", find_old_principal),
                                 ("plan", plan))


def steps_of(remediation: Remediation) -> Steps:
    if remediation.dry_run or remediation.observe:
        return REPLACEMENT_PLAN_STEPS if remediation.replace else PLAN_STEPS
    return REPLACEMENT_STEPS if remediation.replace else STEPS


def step_names(remediation: Remediation) -> tuple[str, ...]:
    return tuple(name for name, _ in steps_of(remediation))
