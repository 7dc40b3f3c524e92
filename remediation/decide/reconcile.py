"""One decision per hint: should this cluster be remediated now? Decided from its present state, and only decided:
nothing here writes (admitting a decision is remediation/run/admission.py's).

An event, a sweep's Activity Log entry, an operator's request and the health check's findings are only hints that
name a cluster (remediation/decide/hints.py). What happens follows from what is true now, read once per decision
(remediation/decide/observation.py): the cluster (does it exist, does it use a service principal, was it changed
after the failure), its remediations (one running, or a repair newer than the failure), its application in Graph
(gone, every password expired, the failing app its own, owned by the remediator), Entra ID (does it still know an
application Graph does not show), and, where we stored the cluster's current secret, whether that secret still
signs in.

A hint is about one of the cluster's credentials: its service principal, or the legacy Azure AD integration's server
application when the failure names that application (or an operator asks).

`CHECKS` is the policy: an ordered tuple of small pure functions of (hint, observation), each returning a Verdict
(act, reason code, message) or None to pass to the next; the last one always decides. It is the one chain every
hint goes through, and the one place each hint's scope is checked; the fan-out of a rotation checks the clusters it
reaches with the same guardrail checks (`GUARDRAILS`). `Observation` reads each fact on first use, so a hint
refused early costs no Graph call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from remediation.decide.classify import Action, FailureKind, refine_with_credential_dates
from remediation.decide.guardrails import Guardrails, Replacement
from remediation.decide.hints import INCIDENT_SOURCES, Act, Decision, Facts, Hint, Source, Verdict
from remediation.decide.observation import Observation, Readers
from remediation.errors import InvalidInputError
from remediation.ids import ClusterId
from remediation.model import ClusterInfo, Credential
from remediation.record import TargetStatus

log = logging.getLogger(__name__)

DEFAULT_GUARDRAILS = Guardrails()


Check = Callable[[Hint, Observation], Verdict | None]


def out_of_scope(h: Hint, o: Observation) -> Verdict | None:
    refusal = o.guardrails.scope.refusal(h.cluster)
    return Verdict(Act.NONE, *refusal) if refusal else None


def already_acted(h: Hint, o: Observation) -> Verdict | None:
    # The incident's first recorder acted; every later hint of it is a duplicate. (A recorder that died before
    # creating its remediation left the id behind: `decide` finishes its work instead.)
    if h.source in INCIDENT_SOURCES and o.incident_remediation is not None:
        return Verdict(Act.NONE, "DuplicateIncident", f"incident {h.correlation_id} was acted on before (remediation"
                                                      f" {o.incident_remediation.id})")
    return None


def unexplained(h: Hint, o: Observation) -> Verdict | None:
    """A failure event whose Activity Log entry has not appeared (and Graph does not show the secret ended): not
    decidable yet; given up, with the reason recorded, once its lookup has waited long enough."""
    if h.source is not Source.EVENT or h.lookup is None or o.failure is not None:
        return None
    if h.lookup.timed_out(o.now):
        return Verdict(Act.NONE, "GaveUp", f"no failed Activity Log entry appeared within {h.lookup.timeout}")
    return Verdict(Act.WAIT, "Waiting", f"Activity Log entry not there yet (attempt {h.lookup.attempt + 1})")


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
    if o.stalled(active):
        return Verdict(Act.RESUME, "ResumedStalled", f"rotation {active.id} of the cluster's application made no"
                                                     f" progress since {active.updated_at}: resumed")
    if active.migrate:  # it holds the application's claim and takes in no cluster: a rotation waits for its end
        return Verdict(Act.NONE, "MigrationUnderWay", f"migration {active.id} to managed identity holds the cluster's"
                                                      " application; the next hint or sweep after it decides again")
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
    c = o.failure.classification if o.failure else None
    if h.source in INCIDENT_SOURCES and (c is None or c.action is Action.NONE):
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
    assert o.failure is not None  # not_a_secret_failure passed
    c = o.failure.classification
    ends = [p.end for p in o.application.passwords if p.end is not None] if o.application else []
    refined = refine_with_credential_dates(c, newest_password_end=max(ends, default=None), now=o.now)
    bad_secret = refined.kind in (FailureKind.INVALID_SECRET, FailureKind.EXPIRED_SECRET)
    # A bad-secret verdict is the failure's text, and text can quote anyone's verdict (issue 2). It stands alone only
    # when Graph backs it (no password is valid now) or nothing can test it (we hold no secret the cluster holds);
    # otherwise the stored secret signs in first, as for a refused credential below: a reset re-images the nodes.
    if bad_secret and (not o.password_valid_now or o.stored_secret is None):
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


# The guardrails every write obeys, whoever asks: checked for each hint, and for each cluster a rotation reaches
# through its application (`Reconciler.guardrail_refusal`).
GUARDRAILS: tuple[Check, ...] = (out_of_scope, managed_identity, opted_out)
# The checks that need nothing read: what intake may ask before it spends anything on a hint.
BEFORE_READING: tuple[Check, ...] = (out_of_scope,)
CHECKS: tuple[Check, ...] = (out_of_scope, already_acted, unexplained, cluster_missing, managed_identity, opted_out,
                             not_due, stale, running, breaker, not_a_secret_failure, other_application,
                             application_deleted, not_owned, dry_run)


def evaluate(hint: Hint, observation: Observation, checks: tuple[Check, ...] = CHECKS) -> Verdict:
    for check in checks:
        verdict = check(hint, observation)
        if verdict is not None:
            return verdict
    return confirmed(hint, observation)


def first_refusal(hint: Hint, observation: Observation, checks: tuple[Check, ...]) -> Verdict | None:
    return next((v for check in checks if (v := check(hint, observation)) is not None), None)


class Reconciler:
    """Decides hints. `readers` are read, never written; `stalled_after` is how long a running rotation may go
    without progress before its chain counts as lost (the runner's lease, its longest wait and a margin)."""

    def __init__(self, readers: Readers, *, guardrails: Guardrails = DEFAULT_GUARDRAILS, owner_id: str = "",
                 stalled_after: timedelta = timedelta(minutes=21),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._readers = readers
        self._guardrails = guardrails
        self._owner_id = owner_id.lower()
        self._stalled_after = stalled_after
        self._clock = clock

    def decide(self, hint: Hint) -> Decision:
        """Decide the hint from the present; with the facts admitting it needs when it acts."""
        observation = self._observe(hint)
        verdict = evaluate(hint, observation)
        facts = None
        if verdict.act in (Act.START, Act.JOIN, Act.RESUME):
            facts = Facts(cluster=observation.cluster, application=observation.application,
                          credential=observation.credential, app_id=observation.app_id,
                          every_password_ended=observation.every_password_ended,
                          window_end=observation.window_end, active=observation.active)
        return Decision(hint, verdict, at=observation.now, facts=facts)

    def refusal_before_reading(self, hint: Hint) -> Verdict | None:
        """What the chain's first checks, which read nothing, say about a hint (intake asks before it spends on it)."""
        return first_refusal(hint, self._observe(hint), BEFORE_READING)

    def guardrail_refusal(self, cluster: ClusterId, info: ClusterInfo, credential: Credential,
                          readers: Readers | None = None) -> Verdict | None:
        """Why the guardrails keep a cluster a rotation reaches through its application out of it (scope, a managed
        identity, the opt-out tag on it or its group); None when they let it in. `info`: the cluster as listed."""
        hint = Hint(cluster, Source.FAN_OUT, credential=credential)
        return first_refusal(hint, self._observe(hint, readers=readers, cluster=info), GUARDRAILS)

    def _observe(self, hint: Hint, *, readers: Readers | None = None, cluster: ClusterInfo | None = None
                 ) -> Observation:
        return Observation(hint, readers or self._readers, guardrails=self._guardrails, owner_id=self._owner_id,
                           now=self._clock(), stalled_after=self._stalled_after, cluster=cluster)
