"""The present state of one cluster, as one decision reads it: each fact on first use, at most once.

What a decision may read (`Readers`) are ports that only read here: the cluster (ARM), its resource group's tags, its
application (Graph), Entra ID's answer to a sign-in, the remediator's own records (remediations, incidents) and the
secret it stored for the cluster (Key Vault). Nothing here writes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from remediation.decide.classify import Action, Classification, FailureKind
from remediation.decide.guardrails import Guardrails
from remediation.decide.hints import Hint, Source
from remediation.errors import NotFoundError
from remediation.model import Application, ClusterInfo, Credential, SecretText, SignInResult, Status
from remediation.ports import (
    Directory,
    IncidentStore,
    ManagedClusters,
    RemediationStore,
    ResourceGroups,
    SecretStore,
    SignIn,
)
from remediation.record import Remediation, TargetStatus

if TYPE_CHECKING:
    from remediation.decide.maintenance import MaintenanceSchedule

RECENT_REMEDIATIONS = 20
# A failure event whose Activity Log entry is not there yet, when Graph shows that every password of the cluster's
# application has ended: the cluster is broken, and this is what the entry would say.
GRAPH_SAYS_EXPIRED = Classification(FailureKind.EXPIRED_SECRET, Action.ROTATE_SECRET, "GraphPasswordsEnded",
                                    "a write failed and every password of the cluster's application has ended (Graph)",
                                    "")


@dataclass(frozen=True)
class Readers:
    """The ports a decision reads. A decision that needs only some of them (a fan-out's guardrails) gets None for
    the others, and never touches them."""

    clusters: ManagedClusters | None = None
    directory: Directory | None = None
    store: RemediationStore | None = None
    incidents: IncidentStore | None = None
    vault: SecretStore | None = None
    sign_in: SignIn | None = None
    resource_groups: ResourceGroups | None = None


@dataclass(frozen=True)
class Failure:
    """What a failure's text says, and when it happened: the hint's own, or Graph's when the text is not there yet."""

    classification: Classification
    failed_at: datetime | None


class Observation:
    """The present state of one cluster, read on first use and at most once per decision."""

    def __init__(self, hint: Hint, readers: Readers, *, guardrails: Guardrails, owner_id: str, now: datetime,
                 stalled_after: timedelta, cluster: ClusterInfo | None = None) -> None:
        self._hint = hint
        self._read = readers
        self.owner_id = owner_id
        self.guardrails = guardrails
        self.now = now
        self.stalled_after = stalled_after
        if cluster is not None:  # already read (a fan-out lists its clusters): not read again
            self.__dict__["cluster"] = cluster

    @cached_property
    def cluster(self) -> ClusterInfo | None:
        try:
            return self._read.clusters.get_cluster(self._hint.cluster)
        except NotFoundError:
            return None

    @cached_property
    def failure(self) -> Failure | None:
        """The failure the hint reports: its text's classification; for a failure event whose Activity Log entry is
        not there yet, at its first look, what Graph shows when every password of the application has ended (the
        commonest breakage needs no entry to be understood); None when nothing explains it (or for a request)."""
        h = self._hint
        if h.classification is not None:
            return Failure(h.classification, h.failed_at)
        if h.source is Source.EVENT and h.lookup is not None and h.lookup.attempt == 0 and self.graph_shows_expired:
            return Failure(GRAPH_SAYS_EXPIRED, h.failed_at)
        return None

    @property
    def graph_shows_expired(self) -> bool:
        """A service-principal cluster whose application Graph shows with every password ended."""
        cluster = self.cluster
        return (cluster is not None and not cluster.uses_managed_identity
                and self.credential is Credential.SERVICE_PRINCIPAL and self.application is not None
                and self.every_password_ended)

    @cached_property
    def credential(self) -> Credential:
        """Which of the cluster's secrets the hint is about: the operator's choice, or the failure's application."""
        if self._hint.credential is not None:
            return self._hint.credential
        server = self.cluster.aad_server_app_id if self.cluster else None
        if server and server.lower() in self._hint.named_apps:
            return Credential.AAD_SERVER
        return Credential.SERVICE_PRINCIPAL

    @property
    def app_id(self) -> str:
        """The application whose secret is in question ("" when the cluster holds none for the credential)."""
        return self.cluster.app_id_for(self.credential) if self.cluster else ""

    @cached_property
    def group_tags(self) -> dict[str, str]:
        try:
            return self._read.resource_groups.get_tags(self._hint.cluster.subscription_id,
                                                       self._hint.cluster.resource_group)
        except NotFoundError:
            return {}

    @cached_property
    def rotations(self) -> list[Remediation]:
        """The rotations of the cluster's application, newest first (they are what acts on the cluster)."""
        return self._read.store.list_for_application(self.app_id, limit=RECENT_REMEDIATIONS) if self.app_id else []

    @property
    def active(self) -> Remediation | None:
        return next((r for r in self.rotations if r.takes_claim and not r.status.terminal), None)

    @property
    def repaired_at(self) -> datetime | None:
        """When a rotation last moved this cluster to a new secret and verified it."""
        times = [at for r in self.rotations if r.takes_claim and (at := r.cluster_verified_at(self._hint.cluster))]
        return datetime.fromisoformat(max(times)) if times else None

    def stalled(self, remediation: Remediation) -> bool:
        return remediation.stalled(self.now, self.stalled_after)

    def failures(self, *, of_cluster: bool) -> list[Remediation]:
        """Failed rotations in the breaker's window: all of the application's, or those that failed this cluster."""
        since = (self.now - self.guardrails.breaker_window).isoformat()
        failed = [r for r in self.rotations
                  if r.takes_claim and r.status is Status.FAILED and (r.finished_at or "") >= since]
        if of_cluster:
            failed = [r for r in failed
                      if (t := r.target(self._hint.cluster)) and t.status is not TargetStatus.VERIFIED]
        return failed

    @cached_property
    def incident_remediation(self) -> Remediation | None:
        """The remediation a recorder of this incident started, if it exists."""
        key = self._hint.incident_key
        incident = self._read.incidents.get_incident(key) if key else None
        if not incident or not incident.get("remediation_id"):
            return None
        try:
            return self._read.store.get(incident["remediation_id"])
        except NotFoundError:
            return None

    @cached_property
    def application(self) -> Application | None:
        """The application in Graph (with its owners); None when Graph shows none: deleted, or not yet replicated."""
        try:
            return self._read.directory.get_application_by_app_id(self.app_id)
        except NotFoundError:
            return None

    @cached_property
    def entra_verdict(self) -> SignInResult:
        """Entra ID's answer to a sign-in as the application with a throwaway secret: AADSTS700016 when the tenant
        has no such application; a refused secret (AADSTS7000215) when it has one that Graph did not show."""
        return self._read.sign_in.sign_in(self.app_id, SecretText(secrets.token_urlsafe(32)))

    @property
    def every_password_ended(self) -> bool:
        app = self.application
        return app is not None and all(p.end is not None and p.end <= self.now for p in app.passwords)

    @property
    def password_valid_now(self) -> bool:
        """Whether Graph shows a password of the cluster's application that Entra ID accepts now (started, not
        ended)."""
        app = self.application
        return app is not None and any((p.start is None or p.start <= self.now) and (p.end is None or p.end > self.now)
                                       for p in app.passwords)

    @property
    def held_password_end(self) -> datetime | None:
        """When the secret the cluster holds ends, as far as Graph and our records tell: the password our last
        repair gave it, if the cluster was not changed since; otherwise the soonest-ending valid password (the
        cluster may hold any of them, so the soonest is when it may break). None: no password ends, or none left."""
        app = self.application
        if app is None:
            return None
        repair = self.current_repair
        ours = next((p for p in app.passwords if repair and p.key_id == repair.secret.key_id), None)
        if ours is not None:
            return ours.end
        valid = [p.end for p in app.passwords if p.end is not None and p.end > self.now]
        return min(valid, default=None)

    @cached_property
    def maintenance(self) -> tuple[str, MaintenanceSchedule] | None:
        """The window the cluster's nodes may be disrupted in: its AKS planned maintenance, else the operators'."""
        from remediation.decide.maintenance import choose_schedule  # only a proactive rotation needs it: not at import

        chosen = choose_schedule(self._read.clusters.list_maintenance_configurations(self._hint.cluster))
        if chosen is not None:
            return f"maintenance configuration {chosen[0]}", chosen[1]
        window = self.guardrails.rotation.window
        return ("REMEDIATOR_ROTATION_WINDOW", window) if window is not None else None

    @property
    def open_window(self) -> tuple[datetime, datetime] | None:
        return self.maintenance[1].window_at(self.now) if self.maintenance else None

    @property
    def window_end(self) -> str | None:
        """A proactive rotation resets the cluster only until its maintenance window closes (a broken one: any time)."""
        if self._hint.source is not Source.ROTATION or self.every_password_ended:
            return None
        window = self.open_window
        return window[1].isoformat() if window else None

    @cached_property
    def stored_secret(self) -> SignInResult | None:
        """Whether the secret our last rotation gave this cluster still signs in; None when we do not know the
        cluster's current secret (never repaired by us, or the cluster changed after our repair)."""
        repair = self.current_repair
        if repair is None or not repair.secret.vault_version:
            return None
        secret = self._read.vault.get_secret(repair.secret.vault_name or "", repair.secret.vault_version)
        return self._read.sign_in.sign_in(self.app_id, secret)

    @cached_property
    def current_repair(self) -> Remediation | None:
        """The rotation that last moved this cluster to a new secret and verified it, while that secret is what the
        cluster holds as far as we know: None if we never repaired it, or it was changed after our repair."""
        repaired_at, cluster = self.repaired_at, self.cluster
        if repaired_at is None or cluster is None or (cluster.last_modified_at
                                                      and cluster.last_modified_at > repaired_at):
            return None
        return next((r for r in self.rotations if r.takes_claim and r.verified(self._hint.cluster)), None)
