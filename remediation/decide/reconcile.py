"""One decision per hint: should this cluster be remediated now? Decided from its present state.

An event, a sweep's Activity Log entry and an operator's request are only hints that name a
cluster. What happens follows from what is true now, read once per decision: the cluster
(does it exist, does it use a service principal, was it changed after the failure), its
remediations (one running, or a repair newer than the failure), its application in Graph
(gone, every password expired, the failing app its own, owned by the remediator), Entra ID
(does it still know an application Graph does not show), and, where we stored the cluster's
current secret, whether that secret still signs in.

A hint is about one of the cluster's credentials: its service principal, or the legacy Azure AD
integration's server application when the failure names that application (or an operator asks).

`CHECKS` is the policy: an ordered tuple of small pure functions of (hint, observation), each
returning a Verdict (act, reason code, message) or None to pass to the next; the last one
always decides. `Observation` reads each fact on first use, so a hint refused early costs no
Graph call. Acting happens once per observed breakage: for an incident (event or sweep) the
incident is recorded insert-if-absent *before* anything acts, and only its first recorder acts;
every other path joins the cluster's one running remediation through its claim.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

from remediation.auth import Caller
from remediation.decide.classify import Action, Classification, FailureKind, refine_with_credential_dates
from remediation.decide.guardrails import Guardrails, Mode, Replacement
from remediation.errors import InvalidInputError, NotFoundError
from remediation.ids import ClusterId
from remediation.model import Application, ClusterInfo, Credential, SecretText, SignInResult, Status

if TYPE_CHECKING:
    from remediation.decide.maintenance import MaintenanceSchedule
from remediation.ports import (
    Directory,
    IncidentStore,
    ManagedClusters,
    RemediationStore,
    ResourceGroups,
    SecretStore,
    SignIn,
)
from remediation.record import Remediation, Target, TargetStatus, new_remediation_id
from remediation.run.runner import RemediationRunner, claims

log = logging.getLogger(__name__)

RECENT_REMEDIATIONS = 20
DEFAULT_GUARDRAILS = Guardrails()


class Source(StrEnum):
    EVENT = "event"
    SWEEP = "sweep"
    MANUAL = "manual"
    SCAN = "scan"  # the fleet health check found every password of the cluster's application ended
    ROTATION = "rotation"  # the fleet health check found an opted-in cluster's secret ending soon


class Act(StrEnum):
    START = "start"  # a new remediation (or a dry run)
    JOIN = "join"  # the cluster's running remediation already covers it
    RESUME = "resume"  # the running remediation lost its chain: take it over
    NONE = "none"  # nothing to do; the reason code says why


@dataclass(frozen=True)
class Hint:
    """Something that names a cluster: never itself a reason to act."""

    cluster: ClusterId
    source: Source
    failed_at: datetime | None = None  # when the failure happened (the Activity Log entry's time)
    correlation_id: str | None = None
    classification: Classification | None = None  # of the failure's text; None for a request
    named_apps: frozenset[str] = frozenset()  # appIds the failure's text names
    requested_by: Caller | None = None
    reason: str = ""  # an operator's words
    dry_run: bool = False
    force: bool = False  # an operator asks to rotate even a cluster whose credentials look fine
    credential: Credential | None = None  # an operator's choice; else read from the failure (named applications)

    @property
    def joined_by(self) -> str:
        """How the cluster enters a rotation, for the record: its own failure, or a person's request."""
        if self.source in (Source.SCAN, Source.ROTATION):
            return "healthCheck"
        return "request" if self.source is Source.MANUAL else "hint"

    @property
    def incident_key(self) -> str | None:
        if self.correlation_id is None:
            return None
        text = f"{self.correlation_id.lower()}|{str(self.cluster).lower()}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Verdict:
    act: Act
    code: str
    message: str
    kind: FailureKind | None = None
    replace: bool = False  # the application is gone: a new one is to take its place
    next_chance: datetime | None = None  # when the same hint could be decided otherwise (a window opens)


@dataclass(frozen=True)
class Decision:
    """What was decided for one hint and why, with the remediation it led to. Never holds a secret."""

    hint: Hint
    verdict: Verdict
    remediation: Remediation | None = None
    created: bool = False
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def code(self) -> str:
        return self.verdict.code

    def view(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "clusterResourceId": str(self.hint.cluster),
                "source": self.hint.source.value, "correlationId": self.hint.correlation_id,
                "act": self.verdict.act.value, "code": self.verdict.code, "message": self.verdict.message,
                "kind": self.verdict.kind.value if self.verdict.kind else None,
                "remediationId": self.remediation.id if self.remediation else None, "created": self.created}


class Observation:
    """The present state of one cluster, read on first use and at most once per decision."""

    def __init__(self, hint: Hint, *, clusters: ManagedClusters, directory: Directory, store: RemediationStore,
                 incidents: IncidentStore, vault: SecretStore, sign_in: SignIn, resource_groups: ResourceGroups,
                 runner: RemediationRunner, guardrails: Guardrails, owner_id: str, now: datetime) -> None:
        self._hint = hint
        self.owner_id = owner_id
        self._clusters, self._directory, self._store = clusters, directory, store
        self._incidents, self._vault, self._sign_in = incidents, vault, sign_in
        self._resource_groups = resource_groups
        self.runner = runner
        self.guardrails = guardrails
        self.now = now

    @cached_property
    def cluster(self) -> ClusterInfo | None:
        try:
            return self._clusters.get_cluster(self._hint.cluster)
        except NotFoundError:
            return None

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
            return self._resource_groups.get_tags(self._hint.cluster.subscription_id, self._hint.cluster.resource_group)
        except NotFoundError:
            return {}

    @cached_property
    def rotations(self) -> list[Remediation]:
        """The rotations of the cluster's application, newest first (they are what acts on the cluster)."""
        return self._store.list_for_application(self.app_id, limit=RECENT_REMEDIATIONS) if self.app_id else []

    @property
    def active(self) -> Remediation | None:
        return next((r for r in self.rotations if claims(r) and not r.status.terminal), None)

    @property
    def repaired_at(self) -> datetime | None:
        """When a rotation last moved this cluster to a new secret and verified it."""
        times = [t.updated_at for r in self.rotations if claims(r) and (t := r.target(self._hint.cluster))
                 and t.status is TargetStatus.VERIFIED and t.updated_at]
        return datetime.fromisoformat(max(times)) if times else None

    def failures(self, *, of_cluster: bool) -> list[Remediation]:
        """Failed rotations in the breaker's window: all of the application's, or those that failed this cluster."""
        since = (self.now - self.guardrails.breaker_window).isoformat()
        failed = [r for r in self.rotations
                  if claims(r) and r.status is Status.FAILED and (r.finished_at or "") >= since]
        if of_cluster:
            failed = [r for r in failed
                      if (t := r.target(self._hint.cluster)) and t.status is not TargetStatus.VERIFIED]
        return failed

    @cached_property
    def incident_remediation(self) -> Remediation | None:
        """The remediation a recorder of this incident started, if it exists."""
        key = self._hint.incident_key
        incident = self._incidents.get_incident(key) if key else None
        if not incident or not incident.get("remediation_id"):
            return None
        try:
            return self._store.get(incident["remediation_id"])
        except NotFoundError:
            return None

    @cached_property
    def application(self) -> Application | None:
        """The application in Graph (with its owners); None when Graph shows none: deleted, or not yet replicated."""
        try:
            return self._directory.get_application_by_app_id(self.app_id)
        except NotFoundError:
            return None

    @cached_property
    def entra_verdict(self) -> SignInResult:
        """Entra ID's answer to a sign-in as the application with a throwaway secret: AADSTS700016 when the tenant
        has no such application; a refused secret (AADSTS7000215) when it has one that Graph did not show."""
        return self._sign_in.sign_in(self.app_id, SecretText(secrets.token_urlsafe(32)))

    @property
    def every_password_ended(self) -> bool:
        app = self.application
        return app is not None and all(p.end is not None and p.end <= self.now for p in app.passwords)

    @property
    def held_password_end(self) -> datetime | None:
        """When the secret the cluster holds ends, as far as Graph and our records tell: the password our last
        repair gave it, if the cluster was not changed since; otherwise the soonest-ending valid password (the
        cluster may hold any of them, so the soonest is when it may break). None: no password ends, or none left."""
        app = self.application
        if app is None:
            return None
        repair = self.current_repair
        ours = next((p for p in app.passwords if repair and p.key_id == repair.new_key_id), None)
        if ours is not None:
            return ours.end
        valid = [p.end for p in app.passwords if p.end is not None and p.end > self.now]
        return min(valid, default=None)

    @cached_property
    def maintenance(self) -> tuple[str, MaintenanceSchedule] | None:
        """The window the cluster's nodes may be disrupted in: its AKS planned maintenance, else the operators'."""
        from remediation.decide.maintenance import choose_schedule  # only a proactive rotation needs it: not at import

        chosen = choose_schedule(self._clusters.list_maintenance_configurations(self._hint.cluster))
        if chosen is not None:
            return f"maintenance configuration {chosen[0]}", chosen[1]
        window = self.guardrails.rotation.window
        return ("REMEDIATOR_ROTATION_WINDOW", window) if window is not None else None

    @property
    def open_window(self) -> tuple[datetime, datetime] | None:
        return self.maintenance[1].window_at(self.now) if self.maintenance else None

    @cached_property
    def stored_secret(self) -> SignInResult | None:
        """Whether the secret our last rotation gave this cluster still signs in; None when we do not know the
        cluster's current secret (never repaired by us, or the cluster changed after our repair)."""
        repair = self.current_repair
        if repair is None or not repair.vault_secret_version:
            return None
        secret = self._vault.get_secret(repair.vault_secret_name or "", repair.vault_secret_version)
        return self._sign_in.sign_in(self.app_id, secret)

    @cached_property
    def current_repair(self) -> Remediation | None:
        """The rotation that last moved this cluster to a new secret and verified it, while that secret is what the
        cluster holds as far as we know: None if we never repaired it, or it was changed after our repair."""
        repaired_at, cluster = self.repaired_at, self.cluster
        if repaired_at is None or cluster is None or (cluster.last_modified_at
                                                      and cluster.last_modified_at > repaired_at):
            return None
        return next((r for r in self.rotations if claims(r) and (t := r.target(self._hint.cluster))
                     and t.status is TargetStatus.VERIFIED), None)


Check = Callable[[Hint, Observation], Verdict | None]
# What a remediation started without a confirmed failure is about, by the hint that started it.
_UNCONFIRMED_KIND = {Source.ROTATION: "expiring_secret", Source.MANUAL: "requested"}
_INCIDENT_SOURCES = (Source.EVENT, Source.SWEEP)


def out_of_scope(h: Hint, o: Observation) -> Verdict | None:
    refusal = o.guardrails.scope.refusal(h.cluster)
    return Verdict(Act.NONE, *refusal) if refusal else None


def already_acted(h: Hint, o: Observation) -> Verdict | None:
    # The incident's first recorder acted; every later hint of it is a duplicate. (A recorder that died before
    # creating its remediation left the id behind: `decide` finishes its work instead.)
    if h.source in _INCIDENT_SOURCES and o.incident_remediation is not None:
        return Verdict(Act.NONE, "DuplicateIncident", f"incident {h.correlation_id} was acted on before (remediation"
                                                      f" {o.incident_remediation.id})")
    return None


def cluster_missing(h: Hint, o: Observation) -> Verdict | None:
    if o.cluster is None:
        return Verdict(Act.NONE, "ClusterNotFound", f"cluster {h.cluster.name} does not exist (any more)")
    return None


def managed_identity(h: Hint, o: Observation) -> Verdict | None:
    if o.credential is Credential.AAD_SERVER:
        if o.cluster and not o.cluster.aad_server_app_id:
            return Verdict(Act.NONE, "NoLegacyAzureAd", f"cluster {h.cluster.name} has no legacy Azure AD integration"
                                                        " (no aadProfile server application): no server secret")
        return None
    if o.cluster and o.cluster.uses_managed_identity:
        return Verdict(Act.NONE, "ManagedIdentityCluster", f"cluster {h.cluster.name} uses a managed identity, not a"
                                                           " service principal: there is no client secret to reset")
    return None


def opted_out(h: Hint, o: Observation) -> Verdict | None:
    tag = o.guardrails.opt_out
    if o.cluster and tag.on(o.cluster.tags):
        return Verdict(Act.NONE, "OptedOut", f"cluster {h.cluster.name} carries the opt-out tag {tag}")
    if tag.on(o.group_tags):
        return Verdict(Act.NONE, "OptedOut", f"resource group {h.cluster.resource_group} carries the opt-out tag"
                                             f" {tag}")
    return None


def not_due(h: Hint, o: Observation) -> Verdict | None:
    """A health check's hint acts only on what Graph shows now: every password ended (the cluster is broken), or,
    for an opted-in cluster inside its maintenance window, a secret ending within the warning period."""
    if h.source not in (Source.SCAN, Source.ROTATION) or o.application is None:
        return None  # an application gone is application_deleted's to decide
    if o.every_password_ended:
        return None
    if h.source is Source.SCAN:
        return Verdict(Act.NONE, "NotExpired", f"application {o.app_id} has a valid password: nothing has expired")
    rotation = o.guardrails.rotation
    if not rotation.opt_in.on(o.cluster.tags if o.cluster else None):
        return Verdict(Act.NONE, "NotOptedIn", f"cluster {h.cluster.name} does not carry {rotation.opt_in}: secrets"
                                               " are rotated ahead of expiry only on opt-in")
    ends = o.held_password_end
    if ends is None or ends > o.now + rotation.within:
        return Verdict(Act.NONE, "NotExpiring", f"the cluster's secret ends {ends.isoformat() if ends else 'never'},"
                                                f" not within {rotation.within.days} days")
    try:
        maintenance = o.maintenance
    except InvalidInputError as err:
        return Verdict(Act.NONE, "MaintenanceWindowUnreadable", f"the cluster's maintenance configuration cannot be"
                                                                f" read, so no window is known: {err}")
    if maintenance is None:
        return Verdict(Act.NONE, "NoMaintenanceWindow", f"cluster {h.cluster.name} has no planned maintenance"
                       " configuration and REMEDIATOR_ROTATION_WINDOW is empty: a reset re-images nodes, so it is"
                       " never rotated ahead of expiry")
    if o.open_window is None:
        source, schedule = maintenance
        upcoming = schedule.next_opening(o.now)
        return Verdict(Act.NONE, "OutsideMaintenanceWindow", f"outside the cluster's window ({source}:"
                       f" {schedule.describe()}); next opens {upcoming.isoformat() if upcoming else 'never'}",
                       next_chance=upcoming)
    return None


def stale(h: Hint, o: Observation) -> Verdict | None:
    if h.failed_at is None or h.dry_run:
        return None
    repaired_at = o.repaired_at
    if repaired_at and h.failed_at <= repaired_at:
        return Verdict(Act.NONE, "StaleBeforeRepair", f"the failure at {h.failed_at.isoformat()} happened before"
                                                      f" the remediator repaired the cluster at {repaired_at}")
    cluster = o.cluster
    # A change at the very moment of the failure counts as after it: when in doubt, do not re-image nodes.
    if cluster and cluster.provisioning_state == "Succeeded" and cluster.last_modified_at \
            and h.failed_at <= cluster.last_modified_at:
        return Verdict(Act.NONE, "StaleBeforeSuccess", f"the cluster was changed successfully at"
                                                       f" {cluster.last_modified_at.isoformat()}, after the failure")
    return None


def running(h: Hint, o: Observation) -> Verdict | None:
    active = None if h.dry_run else o.active
    if active is None:
        return None
    target = active.target(h.cluster)
    if target and target.status is TargetStatus.VERIFIED and h.source is Source.MANUAL and not h.force:
        return Verdict(Act.NONE, "AlreadyRepaired", f"rotation {active.id} moved this cluster to its new secret at"
                       f" {target.updated_at}; send force: true to reset it again")
    if o.runner.stalled(active):
        return Verdict(Act.RESUME, "ResumedStalled", f"rotation {active.id} of the cluster's application made no"
                                                     f" progress since {active.updated_at}: resumed")
    return Verdict(Act.JOIN, "JoinedRunning", f"rotation {active.id} of the cluster's application is running: the"
                                              " cluster joins it")


def breaker(h: Hint, o: Observation) -> Verdict | None:
    if h.dry_run:
        return None
    hours = o.guardrails.breaker_window.total_seconds() / 3600
    for of_cluster, what in ((True, f"cluster {h.cluster.name}"), (False, "the cluster's application")):
        if o.guardrails.breaker_open(o.failures(of_cluster=of_cluster)):
            return Verdict(Act.NONE, "CircuitOpen", f"{o.guardrails.breaker_failures} or more remediations of {what}"
                           f" failed in the last {hours:g} h: a person must look before it is tried again")
    return None


def not_a_secret_failure(h: Hint, o: Observation) -> Verdict | None:
    c = h.classification
    if h.source in _INCIDENT_SOURCES and (c is None or c.action is Action.NONE):
        return Verdict(Act.NONE, "NotServicePrincipal", c.reason if c else "the failure has no error text",
                       c.kind if c else None)
    return None


def other_application(h: Hint, o: Observation) -> Verdict | None:
    client_id = o.app_id
    if h.named_apps and client_id not in h.named_apps:
        return Verdict(Act.NONE, "OtherApplication", f"the failing secret belongs to app"
                       f" {', '.join(sorted(h.named_apps))}, not to the cluster's service principal {client_id}:"
                       " resetting the cluster would not fix it", FailureKind.SP_OTHER)
    return None


def application_deleted(h: Hint, o: Observation) -> Verdict | None:
    """Graph shows no application: replace it (or plan to) only when Entra ID confirms the tenant has none."""
    if o.application is not None:
        return None
    app_id = o.app_id
    if o.credential is Credential.AAD_SERVER:
        return Verdict(Act.NONE, "ApplicationNotFound", f"the legacy Azure AD server application {app_id} does not"
                       " exist: a new one needs an administrator's consent; migrate the cluster to AKS-managed Azure"
                       " AD (az aks update --enable-aad)", FailureKind.SP_NOT_FOUND)
    verdict = o.entra_verdict
    if verdict.code != "AADSTS700016":
        return Verdict(Act.NONE, "ApplicationNotFound", f"Graph shows no application {app_id}, but Entra ID still knows"
                       f" it ({verdict.code or 'signed in'}): replication, or another tenant; nothing to replace",
                       FailureKind.SP_NOT_FOUND)
    plan_only = o.guardrails.replacement is Replacement.PLAN
    return Verdict(Act.START, "ApplicationDeleted", f"application {app_id} no longer exists (Graph: not found;"
                   " Entra ID: AADSTS700016): a new application and service principal are to replace it"
                   + (" (REMEDIATOR_REPLACE_DELETED=plan: planned only)" if plan_only else ""),
                   FailureKind.SP_NOT_FOUND, replace=True)


def not_owned(h: Hint, o: Observation) -> Verdict | None:
    """Graph lets the remediator read every application but change only those it owns: refuse before minting."""
    app = o.application
    if app is None or app.owner_ids is None or not o.owner_id or o.owner_id in app.owner_ids:
        return None
    return Verdict(Act.NONE, "ApplicationNotOwned", f"the remediator's identity ({o.owner_id}) is not an owner of"
                   f" application {app.app_id}, so it may not add a password: az ad app owner add --id {app.app_id}"
                   f" --owner-object-id {o.owner_id} (infra/README.md)")


def dry_run(h: Hint, o: Observation) -> Verdict | None:
    if h.dry_run:
        return Verdict(Act.START, "DryRun", h.reason or "dry run requested: the plan is recorded, nothing is written")
    return None


def confirmed(h: Hint, o: Observation) -> Verdict:
    """The last check: is the cluster's credential really broken, or did a person ask regardless?"""
    if h.source is Source.MANUAL:
        check = None if h.force else o.stored_secret
        if check is not None and check.ok:
            return Verdict(Act.NONE, "CredentialValid", "the secret the remediator stored for this cluster still"
                           " signs in; send force: true to rotate it anyway")
        return Verdict(Act.START, "Requested", h.reason or "requested by an operator")
    if h.source in (Source.SCAN, Source.ROTATION):  # not_due let it through: Graph confirms it now
        if o.every_password_ended:
            return Verdict(Act.START, "ExpiredNow", f"every password of application {o.app_id} has ended (Graph):"
                           " the cluster is broken whether or not a write failed yet", FailureKind.EXPIRED_SECRET)
        ends = o.held_password_end
        return Verdict(Act.START, "ExpiringSoon", f"the cluster's secret ends {ends.isoformat() if ends else ''},"
                       f" within {o.guardrails.rotation.within.days} days, and its maintenance window is open:"
                       " rotated ahead of expiry")
    c = h.classification
    assert c is not None  # not_a_secret_failure passed
    ends = [p.end for p in o.application.passwords if p.end is not None] if o.application else []
    refined = refine_with_credential_dates(c, newest_password_end=max(ends, default=None), now=o.now)
    bad_secret = refined.kind in (FailureKind.INVALID_SECRET, FailureKind.EXPIRED_SECRET)
    # A bad-secret verdict is the failure's text, and text can quote anyone's verdict (issue 2). It stands alone only
    # when Graph backs it (no password is valid now) or nothing can test it (we hold no secret the cluster holds);
    # otherwise the stored secret signs in first, as for a refused credential below: a reset re-images the nodes.
    if bad_secret and (not _password_valid_now(o) or o.stored_secret is None):
        return Verdict(Act.START, "Confirmed", refined.reason, refined.kind)
    if refined.kind is FailureKind.SP_NOT_FOUND:
        return Verdict(Act.NONE, "ApplicationExists", "the failure says the service principal was not found, but"
                       " Graph shows its application: replication delay or another tenant; nothing to rotate",
                       refined.kind)
    what = ("the failure says the cluster's secret is bad while Graph shows a valid password" if bad_secret
            else "the cluster's credential was refused")
    check = o.stored_secret
    if check is not None and not check.ok:
        return Verdict(Act.START, "ConfirmedBySignIn", f"{what}, and the secret the remediator stored for it no"
                       f" longer signs in ({check.code})", refined.kind if bad_secret else FailureKind.INVALID_SECRET)
    if check is not None:
        return Verdict(Act.NONE, "CredentialValid", f"{what}, but the secret the remediator stored for it signs in:"
                       " not rotated", refined.kind)
    return Verdict(Act.NONE, "Unconfirmed", "the cluster's credential was refused, but neither Graph (a password is"
                   " still valid) nor a sign-in could confirm a bad secret: left to a person", refined.kind)


def _password_valid_now(o: Observation) -> bool:
    """Whether Graph shows a password of the cluster's application that Entra ID accepts now (started, not ended)."""
    app = o.application
    return app is not None and any((p.start is None or p.start <= o.now) and (p.end is None or p.end > o.now)
                                   for p in app.passwords)


CHECKS: tuple[Check, ...] = (out_of_scope, already_acted, cluster_missing, managed_identity, opted_out, not_due, stale,
                             running, breaker, not_a_secret_failure, other_application, application_deleted,
                             not_owned, dry_run)


def evaluate(hint: Hint, observation: Observation) -> Verdict:
    for check in CHECKS:
        verdict = check(hint, observation)
        if verdict is not None:
            return verdict
    return confirmed(hint, observation)


class Reconciler:
    def __init__(self, *, clusters: ManagedClusters, directory: Directory, store: RemediationStore,
                 incidents: IncidentStore, vault: SecretStore, sign_in: SignIn, resource_groups: ResourceGroups,
                 runner: RemediationRunner, guardrails: Guardrails = DEFAULT_GUARDRAILS, owner_id: str = "",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._owner_id = owner_id.lower()
        self._clusters, self._directory, self._store = clusters, directory, store
        self._incidents, self._vault, self._sign_in = incidents, vault, sign_in
        self._resource_groups = resource_groups
        self._runner = runner
        self._guardrails = guardrails
        self._clock = clock

    def decide(self, hint: Hint) -> Decision:
        """Decide from the present, act at most once per observed breakage, and record the decision."""
        return self._decide(hint, self._observe(hint))

    def decide_if_expired(self, hint: Hint) -> Decision | None:
        """The fast path for a failure event: when Graph shows that the cluster's application has no unexpired
        password, the cluster is broken and the failure needs no Activity Log entry to be understood: decide it now
        (as the entry would have been decided, with the same incident key). None when Graph does not confirm."""
        graph_says = Classification(FailureKind.EXPIRED_SECRET, Action.ROTATE_SECRET, "GraphPasswordsEnded",
                                    "a write failed and every password of the cluster's application has ended (Graph)",
                                    "")
        hint = replace(hint, classification=graph_says)
        observation = self._observe(hint)  # the classification changes what is decided, not what is read
        cluster = observation.cluster
        if cluster is None or cluster.uses_managed_identity or observation.credential is not \
                Credential.SERVICE_PRINCIPAL or observation.application is None or not observation.every_password_ended:
            return None
        return self._decide(hint, observation)

    def _observe(self, hint: Hint) -> Observation:
        return Observation(hint, clusters=self._clusters, directory=self._directory, store=self._store,
                           incidents=self._incidents, vault=self._vault, sign_in=self._sign_in,
                           resource_groups=self._resource_groups, runner=self._runner, guardrails=self._guardrails,
                           owner_id=self._owner_id, now=self._clock())

    def _decide(self, hint: Hint, observation: Observation) -> Decision:
        now = observation.now
        verdict = evaluate(hint, observation)
        decision = Decision(hint, verdict, at=now)
        not_after = _window_end(hint, observation) if verdict.act in (Act.JOIN, Act.RESUME) else None
        if verdict.act is Act.JOIN:
            joined = self._runner.join(observation.active, hint.cluster, joined_by=hint.joined_by, not_after=not_after)
            decision = replace(decision, remediation=joined)
        elif verdict.act is Act.RESUME:
            resumed = self._runner.resume(observation.active)
            decision = replace(decision, remediation=self._runner.join(resumed, hint.cluster, joined_by=hint.joined_by,
                                                                       not_after=not_after))
        elif verdict.act is Act.START:
            decision = self._start(hint, verdict, observation, now)
        self._incidents.record_decision(decision.view())
        log.info("%s hint for %s: %s (%s)%s", hint.source.value, hint.cluster.name, verdict.code, verdict.message,
                 f", remediation {decision.remediation.id}" if decision.remediation else "")
        return decision

    def _start(self, hint: Hint, verdict: Verdict, o: Observation, now: datetime) -> Decision:
        remediation_id = new_remediation_id()
        key = hint.incident_key if hint.source in _INCIDENT_SOURCES else None
        # Recorded before anything acts: of all the hints of one incident, only the first recorder goes on.
        if key and not self._incidents.record_incident(key, {"remediation_id": remediation_id,
                                                             "correlation_id": hint.correlation_id,
                                                             "cluster_id": str(hint.cluster), "code": verdict.code}):
            earlier = (self._incidents.get_incident(key) or {}).get("remediation_id")
            try:
                return Decision(hint, Verdict(Act.NONE, "DuplicateIncident", f"incident {hint.correlation_id} is"
                                              f" being acted on (remediation {earlier})", verdict.kind),
                                self._store.get(earlier or ""), at=now)
            except NotFoundError:
                remediation_id = earlier or remediation_id  # its recorder died before starting it: finish the job
        cluster, app = o.cluster, o.application
        assert cluster is not None and (app is not None or verdict.replace)
        stamp = now.isoformat()
        observe = self._guardrails.mode is Mode.OBSERVE
        # A replacement is only planned unless the operators chose to replace: it is recorded as a dry run.
        plan_only = verdict.replace and self._guardrails.replacement is Replacement.PLAN
        remediation = Remediation(
            id=remediation_id, cluster_id=str(hint.cluster), dry_run=hint.dry_run or plan_only,
            source=hint.source.value, status=Status.ACCEPTED, created_at=stamp, updated_at=stamp, reason="accepted",
            cause=f"{verdict.code}: {verdict.message}"[:1000],
            cause_kind=verdict.kind.value if verdict.kind else _UNCONFIRMED_KIND.get(hint.source, "requested"),
            # A deleted application breaks every cluster using it, as every password ending does: all are moved.
            application_expired=verdict.replace or o.every_password_ended,
            mode=Mode.OBSERVE.value if observe else Mode.REMEDIATE.value, correlation_id=hint.correlation_id,
            failed_at=hint.failed_at.isoformat() if hint.failed_at else None,
            credential=o.credential.value, replace=verdict.replace,
            requested_by=hint.requested_by.view() if hint.requested_by else None,
            client_id=o.app_id, app_object_id=app.object_id if app else None,
            old_key_ids=[p.key_id for p in app.passwords] if app else [],
            targets=[Target(str(hint.cluster), joined_by=hint.joined_by, not_after=_window_end(hint, o))])
        submission = self._runner.start(remediation)
        if not submission.created:
            joined = Verdict(Act.JOIN, "JoinedRunning", f"rotation {submission.remediation.id} of the cluster's"
                             " application started meanwhile: the cluster joins it", verdict.kind)
            return Decision(hint, joined, self._runner.join(submission.remediation, hint.cluster,
                                                               joined_by=hint.joined_by,
                                                               not_after=_window_end(hint, o)), at=now)
        if observe:
            verdict = replace(verdict, message=f"{verdict.message} (observe mode: planned, nothing written)")
        return Decision(hint, verdict, submission.remediation, created=True, at=now)


def _window_end(hint: Hint, o: Observation) -> str | None:
    """A proactive rotation resets the cluster only until its maintenance window closes (a broken one: any time)."""
    if hint.source is not Source.ROTATION or o.every_password_ended:
        return None
    window = o.open_window
    return window[1].isoformat() if window else None
