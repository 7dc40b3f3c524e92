"""Whether the remediator moves one cluster to managed identity now (REMEDIATOR_MIGRATE=execute): an ordered tuple of
pure checks over what was read of the present (`MigrationFacts`), the first that answers deciding.

The move disrupts the cluster (the switch reconciles its control plane; the node-image upgrade re-images every node)
and needs powerful rights, so every guardrail of a reset applies and a few more: the deployment option (off by
default), the cluster's own opt-in tag (a resource group's tag does not opt its clusters in), scope and opt-out, one
remediation per application at a time (a running rotation goes first), the breaker, observe mode, a plan without
blockers, and the cluster's maintenance window (the reset cap is taken by the switch step itself,
remediation/run/migration.py). Nothing here reads or writes: `remediation/app/migrations.py` reads the facts and
admits the decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from remediation.decide.guardrails import Guardrails, Mode
from remediation.decide.hints import Act, Verdict
from remediation.decide.migration import BLOCKED, NOT_APPLICABLE, MigrationPlan
from remediation.ids import subscription_of
from remediation.model import ClusterInfo
from remediation.record import Remediation


@dataclass(frozen=True)
class MigrationFacts:
    cluster: ClusterInfo | None
    group_tags: dict[str, str]
    active: Remediation | None  # an unfinished remediation of the cluster's application (rotation or migration)
    failed_migrations: int  # of this cluster, within the breaker's window
    plan: MigrationPlan | None  # None until the cheaper checks passed (the plan reads role assignments)


Check = Callable[[MigrationFacts, Guardrails, datetime], Verdict | None]


def disabled(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    if not g.migration.enabled:
        return Verdict(Act.NONE, "MigrationDisabled", "REMEDIATOR_MIGRATE is off: the move is planned, never made")
    return None


def cluster_missing(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    return Verdict(Act.NONE, "ClusterNotFound", "the cluster does not exist (any more)") if f.cluster is None else None


def already_managed_identity(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    if f.cluster is not None and f.cluster.uses_managed_identity:
        return Verdict(Act.NONE, "ManagedIdentityCluster", "the cluster already uses a managed identity")
    return None


def opted_out(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    if f.cluster is not None and (g.opt_out.on(f.cluster.tags) or g.opt_out.on(f.group_tags)):
        return Verdict(Act.NONE, "OptedOut", f"the cluster or its resource group carries {g.opt_out}")
    return None


def not_opted_in(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    if f.cluster is not None and not g.migration.opt_in.on(f.cluster.tags):
        return Verdict(Act.NONE, "NotOptedIn", f"the cluster does not carry {g.migration.opt_in}: planned only")
    return None


def application_busy(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    # One remediation per application at a time (its claim): a rotation repairs first, a migration under way goes on
    # (a lost chain is taken over by the timer's resume of stalled work, never by a second migration).
    if f.active is not None:
        if f.active.migrate:
            return Verdict(Act.NONE, "MigrationUnderWay", f"migration {f.active.id} of application"
                                                          f" {f.active.client_id} is under way")
        return Verdict(Act.NONE, "ApplicationBusy", f"rotation {f.active.id} of the cluster's application is under way:"
                                                    " it goes first")
    return None


def circuit_open(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    if g.breaker_failures > 0 and f.failed_migrations >= g.breaker_failures:
        return Verdict(Act.NONE, "CircuitOpen", f"{f.failed_migrations} failed migration(s) of the cluster in the last"
                                                f" {g.breaker_window}: a person looks first")
    return None


def roles_out_of_reach(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    # The remediator may write role assignments only in the subscriptions it manages (infra/ assigns its roles
    # there): a role on a hub network elsewhere would stop the move at assign_roles, after its identities were made.
    managed = {s.lower() for s in g.scope.subscriptions}
    if f.plan is None or not managed:
        return None
    outside = sorted({r.scope for r in f.plan.roles if subscription_of(r.scope) not in managed})
    if outside:
        return Verdict(Act.NONE, "MigrationBlocked", f"{len(outside)} role(s) to carry lie outside the subscriptions"
                                                     f" the remediator manages ({outside[0]}): the plan's commands,"
                                                     " run by a person, can carry them")
    return None


def observe_mode(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    if g.mode is Mode.OBSERVE:
        return Verdict(Act.NONE, "ObserveMode", "observe mode: the plan is recorded, nothing is written")
    return None


def plan_blocked(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    plan = f.plan
    if plan is not None and plan.status in (BLOCKED, NOT_APPLICABLE):
        return Verdict(Act.NONE, "MigrationBlocked" if plan.status == BLOCKED else "ManagedIdentityCluster",
                       plan.reason)
    return None


def outside_window(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict | None:
    window = f.plan.window if f.plan is not None else {}
    if not window.get("source") or window.get("error"):
        return Verdict(Act.NONE, "NoMaintenanceWindow", window.get("error") or window.get("description")
                       or "the cluster has no maintenance window: the move is never made unattended")
    if window.get("openNow"):
        return None
    opening = window.get("nextOpening")
    return Verdict(Act.NONE, "OutsideMaintenanceWindow", f"the window ({window.get('description')}) opens next at"
                                                         f" {opening or 'no time in the next 62 days'}",
                   next_chance=datetime.fromisoformat(opening) if opening else None)


def ready(f: MigrationFacts, g: Guardrails, now: datetime) -> Verdict:
    assert f.plan is not None
    return Verdict(Act.START, "MigrationReady", f"inside the window until {f.plan.window.get('closes')}: "
                                                f"{f.plan.reason}")


# Before the plan is read (cheap: the cluster, its group's tags, the application's records) and after.
BEFORE_PLAN: tuple[Check, ...] = (disabled, cluster_missing, already_managed_identity, opted_out, not_opted_in,
                                  application_busy, circuit_open)
AFTER_PLAN: tuple[Check, ...] = (plan_blocked, roles_out_of_reach, observe_mode, outside_window)


def first_refusal(facts: MigrationFacts, guardrails: Guardrails, now: datetime,
                  checks: tuple[Check, ...]) -> Verdict | None:
    return next((v for check in checks if (v := check(facts, guardrails, now)) is not None), None)


def decide(facts: MigrationFacts, guardrails: Guardrails, now: datetime) -> Verdict:
    return (first_refusal(facts, guardrails, now, BEFORE_PLAN) or first_refusal(facts, guardrails, now, AFTER_PLAN)
            or ready(facts, guardrails, now))
