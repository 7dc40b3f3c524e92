"""The limits operators put around the remediator, as plain values with pure checks.

A reset re-images a cluster's nodes, so platform teams let the remediator near production
only inside limits they set: which subscriptions and resource groups it may touch, an
opt-out tag on a cluster or its resource group, an observe-only mode, a cap on resets per
hour across the fleet, a circuit breaker per cluster and per application, and whether a
deleted service principal is replaced or only planned (with the roles a replacement may be
given). Settings
(remediation/app/settings.py) builds one `Guardrails`; the reconcile's checks and the reset
step apply it, and every refusal is a recorded decision with its reason code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from remediation.ids import ClusterId

if TYPE_CHECKING:
    from remediation.decide.maintenance import MaintenanceSchedule


class Mode(StrEnum):
    REMEDIATE = "remediate"  # decide and act
    OBSERVE = "observe"  # decide, plan and record; write nothing to Azure


class Replacement(StrEnum):
    """What happens when a cluster's application was deleted."""

    PLAN = "plan"  # record the replacement as a dry run: its exact steps and the equivalent az commands
    REPLACE = "replace"  # create a new application and service principal, carry the roles over, reset


ANY = "*"  # a subscription or resource group a scope reaches without naming it (Scope.overlap)


def names(raw: str) -> frozenset[str]:
    """A comma-separated setting as a set of lower-case entries (ARM names and ids are case-insensitive)."""
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Scope:
    """Where the remediator may act. Empty allow lists allow all; deny lists win over allow lists.

    Resource-group entries are a name (in any subscription) or `<subscription id>/<name>`.
    """

    subscriptions: frozenset[str] = frozenset()
    deny_subscriptions: frozenset[str] = frozenset()
    resource_groups: frozenset[str] = frozenset()
    deny_resource_groups: frozenset[str] = frozenset()

    def refusal_of_subscription(self, subscription_id: str) -> tuple[str, str] | None:
        sub = subscription_id.lower()
        if sub in self.deny_subscriptions:
            return "DeniedSubscription", f"subscription {sub} is on the deny list (REMEDIATOR_DENY_SUBSCRIPTION_IDS)"
        if self.subscriptions and sub not in self.subscriptions:
            return "OutOfScope", f"subscription {sub} is not one the remediator manages (REMEDIATOR_SUBSCRIPTION_IDS)"
        return None

    def refusal(self, cluster: ClusterId) -> tuple[str, str] | None:
        """(reason code, message) if the cluster is out of scope, else None."""
        return self.refusal_at(cluster.subscription_id, cluster.resource_group)

    def refusal_at(self, subscription_id: str, resource_group: str) -> tuple[str, str] | None:
        """(reason code, message) if the resource group is out of scope, else None."""
        sub, group = subscription_id.lower(), resource_group.lower()
        if refusal := self.refusal_of_subscription(sub):
            return refusal
        if {group, f"{sub}/{group}"} & self.deny_resource_groups:
            return "DeniedResourceGroup", (f"resource group {resource_group} is on the deny list"
                                           " (REMEDIATOR_DENY_RESOURCE_GROUPS)")
        if self.resource_groups and not {group, f"{sub}/{group}"} & self.resource_groups:
            return "OutOfScope", (f"resource group {resource_group} is not on the allow list"
                                  " (REMEDIATOR_ALLOW_RESOURCE_GROUPS)")
        return None

    def overlap(self, other: Scope) -> tuple[str, str] | None:
        """A (subscription, resource group) where both scopes may act, or None when no cluster is in both.

        A scope without a subscription list, or without an allow list of groups, reaches names it does not list;
        such a place is reported as `ANY` ("*"): an empty allow list on both sides always overlaps, since deny lists
        are finite."""
        subscriptions = self._candidate_subscriptions(other)
        for sub in sorted(subscriptions):
            for group in sorted(self._candidate_groups(other, sub)):
                if self.refusal_at(sub, group) is None and other.refusal_at(sub, group) is None:
                    return sub, group
        return None

    def _candidate_subscriptions(self, other: Scope) -> set[str]:
        mine, theirs = self.subscriptions or {ANY}, other.subscriptions or {ANY}
        named = {entry.split("/", 1)[0] for entry in self.resource_groups | other.resource_groups if "/" in entry}
        if ANY in mine and ANY in theirs:
            return {ANY} | named | set(self.subscriptions) | set(other.subscriptions)
        if ANY in mine:
            return set(theirs)
        if ANY in theirs:
            return set(mine)
        return set(mine) & set(theirs)

    def _candidate_groups(self, other: Scope, sub: str) -> set[str]:
        def listed(scope: Scope) -> set[str]:
            return {entry.split("/", 1)[1] if "/" in entry else entry for entry in scope.resource_groups
                    if "/" not in entry or entry.split("/", 1)[0] == sub}
        groups = listed(self) | listed(other)
        if not self.resource_groups or not other.resource_groups:
            groups.add(ANY)
        return groups


@dataclass(frozen=True)
class ControlTag:
    """`key=value`: a tag operators set to steer the remediator, matched case-insensitively: the opt-out (a cluster,
    or its resource group, carrying it is left alone) and the opt-in to proactive rotation (on the cluster)."""

    key: str = "aks-sp-remediator"
    value: str = "off"

    @classmethod
    def parse(cls, raw: str) -> ControlTag:
        key, separator, value = raw.partition("=")
        if not separator or not key.strip() or not value.strip():
            raise ValueError(f"a tag is key=value, got {raw!r}")
        return cls(key.strip(), value.strip())

    def on(self, tags: Mapping[str, str] | None) -> bool:
        return any(k.lower() == self.key.lower() and str(v).lower() == self.value.lower()
                   for k, v in (tags or {}).items())

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


@dataclass(frozen=True)
class ProactiveRotation:
    """Rotating a secret before it expires: only for clusters opted in by tag on the cluster itself (a proactive
    reset re-images nodes, so a resource group's tag does not opt its clusters in, unlike the opt-out), only when
    their secret ends within `within`, and only inside their maintenance window (the AKS planned maintenance
    configuration, else `window`, the operators' REMEDIATOR_ROTATION_WINDOW; neither: never)."""

    opt_in: ControlTag = field(default_factory=lambda: ControlTag("aks-sp-remediator", "rotate"))
    within: timedelta = timedelta(days=30)
    window: MaintenanceSchedule | None = None


class MigrateMode(StrEnum):
    """Whether the remediator moves opted-in clusters to managed identity itself (remediation/run/migration.py)."""

    OFF = "off"  # plans only (python -m remediation migrate plan, GET /api/clusters/migration-plan)
    EXECUTE = "execute"  # opted-in clusters move inside their window; needs the permissions infra/ grants for it


@dataclass(frozen=True)
class Migration:
    """The move to managed identity, done by the remediator: only with `mode` execute (off by default), only for a
    cluster carrying `opt_in` itself (a group's tag does not opt its clusters in: the move re-images nodes), with its
    user-assigned identities in `identity_group` (a resource group of that name in the cluster's subscription, given
    to the remediator for them)."""

    mode: MigrateMode = MigrateMode.OFF
    opt_in: ControlTag = field(default_factory=lambda: ControlTag("aks-sp-remediator", "migrate"))
    identity_group: str = ""

    @property
    def enabled(self) -> bool:
        return self.mode is MigrateMode.EXECUTE


@dataclass(frozen=True)
class Guardrails:
    scope: Scope = field(default_factory=Scope)
    opt_out: ControlTag = field(default_factory=ControlTag)
    mode: Mode = Mode.REMEDIATE
    max_resets_per_hour: int = 20  # across the fleet; 0 allows none
    breaker_failures: int = 3  # failed remediations of one cluster or application in the window stop further ones
    breaker_window: timedelta = timedelta(hours=24)
    replacement: Replacement = Replacement.PLAN
    # Role definition GUIDs a replacement may be given: the condition on the remediator's Role Based Access Control
    # Administrator assignment (infra/) allows these and no others. Empty: any (Azure's condition still decides).
    assignable_roles: frozenset[str] = frozenset()
    rotation: ProactiveRotation = field(default_factory=ProactiveRotation)
    migration: Migration = field(default_factory=Migration)

    def breaker_open(self, failures_at: Iterable[object]) -> bool:
        return self.breaker_failures > 0 and sum(1 for _ in failures_at) >= self.breaker_failures
