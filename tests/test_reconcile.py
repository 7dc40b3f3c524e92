"""The decision policy as a table: each check, alone, over a hand-built observation (the checks are pure).

The world-level sequences (event, repair, sweep, duplicate, restart) are in test_detection.py and
test_service.py; this file pins what each reason code means and the order the checks run in.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from remediation.decide.classify import Action, Classification, FailureKind
from remediation.decide.guardrails import Guardrails, Scope
from remediation.decide.hints import Act, Hint, Source
from remediation.decide.observation import Failure
from remediation.decide.reconcile import CHECKS, evaluate
from remediation.errors import TransientError
from remediation.intake.events import FailureEvent
from remediation.model import ActivityLogEntry, Application, ClusterInfo, Credential, PasswordInfo, SignInResult, Status
from remediation.record import Remediation, Target, TargetStatus
from tests.support.world import APP_ID, CLUSTER, SUB, World

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EXPIRED = Classification(FailureKind.EXPIRED_SECRET, Action.ROTATE_SECRET, "AADSTS7000222", "expired", "e")
QUOTA = Classification(FailureKind.NOT_SP, Action.NONE, "QuotaExceeded", "quota", "q")
# The cluster's own token refresh refused with a 401: its credential, but which way it is bad the text cannot say.
REFUSED = Classification(FailureKind.CREDENTIAL_REJECTED, Action.CONFIRM, "", "refused", "401")
# Entra ID's verdict as the text reports it: anyone able to put text in the failure can write one.
INVALID = Classification(FailureKind.INVALID_SECRET, Action.ROTATE_SECRET, "AADSTS7000215", "invalid", "i")
OWNER = "0a0a0a0a-0000-4000-8000-00000000beef"
SERVER_APP = "99999999-2222-4333-8444-555555555555"
VALID_PASSWORD = Application("obj", APP_ID, "app", (PasswordInfo("k", "rbac", "abc", None, NOW + timedelta(days=90)),))


def cluster(**changes) -> ClusterInfo:
    return ClusterInfo(**{"id": str(CLUSTER), "name": CLUSTER.name, "location": "westeurope", "client_id": APP_ID,
                          "provisioning_state": "Succeeded", "last_modified_at": NOW - timedelta(days=30),
                          **changes})


def rotation(status: Status, *, updated: datetime = NOW, target: TargetStatus = TargetStatus.PENDING,
             target_at: datetime = NOW) -> Remediation:
    return Remediation(id="a" * 32, cluster_id=str(CLUSTER), dry_run=False, source="event", status=status,
                       created_at=updated.isoformat(), updated_at=updated.isoformat(), client_id=APP_ID,
                       targets=[Target(str(CLUSTER), target, updated_at=target_at.isoformat())])


def observe(hint: Hint, **facts) -> SimpleNamespace:
    """The facts the checks read, given outright: a broken-looking world unless changed. The failure is the hint's
    own text, as `Observation.failure` reads it."""
    base = {"guardrails": Guardrails(scope=Scope(subscriptions=frozenset({SUB}))), "now": NOW, "cluster": cluster(),
            "group_tags": {}, "incident_remediation": None, "active": None, "repaired_at": None,
            "failed": {True: [], False: []},
            "application": Application("obj", APP_ID, "app", (PasswordInfo("k", "rbac", "abc", None,
                                                                           NOW - timedelta(days=3)),)),
            "stored_secret": None, "stalled": lambda r: r.updated_at < (NOW - timedelta(hours=1)).isoformat(),
            "failure": Failure(hint.classification, hint.failed_at) if hint.classification else None,
            "credential": Credential.SERVICE_PRINCIPAL, "owner_id": OWNER,
            # Entra ID's answer to a throwaway secret: the application exists (and the secret is wrong).
            "entra_verdict": SignInResult(ok=False, code="AADSTS7000215")}
    o = SimpleNamespace(**{**base, **facts})
    o.app_id = o.cluster.app_id_for(o.credential) if o.cluster else ""
    o.failures = lambda *, of_cluster: o.failed[of_cluster]
    o.password_valid_now = bool(o.application) and any(
        (p.start is None or p.start <= NOW) and (p.end is None or p.end > NOW) for p in o.application.passwords)
    return o


def event_hint(**changes) -> Hint:
    return Hint(**{"cluster": CLUSTER, "source": Source.EVENT, "failed_at": NOW - timedelta(minutes=5),
                   "correlation_id": "c", "classification": EXPIRED, **changes})


@pytest.mark.parametrize(("hint", "facts", "act", "code"), [
    (event_hint(), {}, Act.START, "Confirmed"),
    (event_hint(), {"guardrails": Guardrails(scope=Scope(subscriptions=frozenset({"another"})))}, Act.NONE,
     "OutOfScope"),
    (event_hint(), {"guardrails": Guardrails(scope=Scope(deny_resource_groups=frozenset({"rg-payments"})))},
     Act.NONE, "DeniedResourceGroup"),
    (event_hint(), {"incident_remediation": rotation(Status.SUCCEEDED)}, Act.NONE, "DuplicateIncident"),
    (event_hint(), {"cluster": None}, Act.NONE, "ClusterNotFound"),
    (event_hint(), {"cluster": cluster(client_id="msi")}, Act.NONE, "ManagedIdentityCluster"),
    (event_hint(), {"cluster": cluster(tags={"Aks-SP-Remediator": "OFF"})}, Act.NONE, "OptedOut"),
    (event_hint(), {"group_tags": {"aks-sp-remediator": "off"}}, Act.NONE, "OptedOut"),
    (event_hint(), {"active": rotation(Status.WAITING)}, Act.JOIN, "JoinedRunning"),
    (event_hint(), {"active": rotation(Status.WAITING, updated=NOW - timedelta(hours=2))}, Act.RESUME,
     "ResumedStalled"),
    (Hint(CLUSTER, Source.MANUAL), {"active": rotation(Status.WAITING, target=TargetStatus.VERIFIED)}, Act.NONE,
     "AlreadyRepaired"),
    (event_hint(), {"repaired_at": NOW - timedelta(minutes=1)}, Act.NONE, "StaleBeforeRepair"),
    (event_hint(), {"failed": {True: [1, 2, 3], False: []}}, Act.NONE, "CircuitOpen"),
    (event_hint(), {"failed": {True: [], False: [1, 2, 3]}}, Act.NONE, "CircuitOpen"),
    (event_hint(), {"failed": {True: [1, 2], False: [1, 2]}}, Act.START, "Confirmed"),
    (event_hint(), {"cluster": cluster(last_modified_at=NOW - timedelta(minutes=1))}, Act.NONE,
     "StaleBeforeSuccess"),
    (event_hint(), {"cluster": cluster(last_modified_at=NOW, provisioning_state="Failed")}, Act.START, "Confirmed"),
    (event_hint(classification=QUOTA), {}, Act.NONE, "NotServicePrincipal"),
    (event_hint(named_apps=frozenset({"another-app"})), {}, Act.NONE, "OtherApplication"),
    (event_hint(), {"application": None}, Act.NONE, "ApplicationNotFound"),  # Entra ID still knows it
    (event_hint(), {"application": None, "entra_verdict": SignInResult(ok=False, code="AADSTS700016")}, Act.START,
     "ApplicationDeleted"),
    (Hint(CLUSTER, Source.MANUAL), {"application": None, "entra_verdict": SignInResult(ok=False, code="AADSTS700016")},
     Act.START, "ApplicationDeleted"),
    (event_hint(), {"application": Application("obj", APP_ID, "app", owner_ids=frozenset({"someone-else"}))},
     Act.NONE, "ApplicationNotOwned"),
    (Hint(CLUSTER, Source.MANUAL, dry_run=True), {"application": Application("obj", APP_ID, "app",
                                                                             owner_ids=frozenset())},
     Act.NONE, "ApplicationNotOwned"),
    (Hint(CLUSTER, Source.MANUAL, credential=Credential.AAD_SERVER), {"credential": Credential.AAD_SERVER},
     Act.NONE, "NoLegacyAzureAd"),
    (Hint(CLUSTER, Source.MANUAL, credential=Credential.AAD_SERVER),
     {"credential": Credential.AAD_SERVER, "cluster": cluster(client_id="msi", aad_server_app_id=SERVER_APP)},
     Act.START, "Requested"),
    (event_hint(named_apps=frozenset({SERVER_APP})),
     {"credential": Credential.AAD_SERVER, "cluster": cluster(aad_server_app_id=SERVER_APP), "application": None,
      "entra_verdict": SignInResult(ok=False, code="AADSTS700016")}, Act.NONE, "ApplicationNotFound"),
    (event_hint(classification=REFUSED), {}, Act.START, "Confirmed"),  # Graph: every password has ended
    (event_hint(classification=REFUSED), {"application": VALID_PASSWORD}, Act.NONE, "Unconfirmed"),
    (event_hint(classification=REFUSED), {"application": VALID_PASSWORD,
                                          "stored_secret": SignInResult(ok=False, code="AADSTS7000215")},
     Act.START, "ConfirmedBySignIn"),
    (event_hint(classification=REFUSED), {"application": VALID_PASSWORD, "stored_secret": SignInResult(ok=True)},
     Act.NONE, "CredentialValid"),
    # A bad-secret verdict while Graph shows a valid password: the secret stored for the cluster is asked first.
    (event_hint(classification=INVALID), {"application": VALID_PASSWORD, "stored_secret": SignInResult(ok=True)},
     Act.NONE, "CredentialValid"),
    (event_hint(), {"application": VALID_PASSWORD, "stored_secret": SignInResult(ok=True)}, Act.NONE,
     "CredentialValid"),
    (event_hint(classification=INVALID), {"application": VALID_PASSWORD,
                                          "stored_secret": SignInResult(ok=False, code="AADSTS7000215")},
     Act.START, "ConfirmedBySignIn"),
    # No stored secret (never repaired by us, or changed since): the verdict stands, as for a secret rotated elsewhere.
    (event_hint(classification=INVALID), {"application": VALID_PASSWORD}, Act.START, "Confirmed"),
    # Graph shows every password ended: Graph confirms, no sign-in is needed.
    (event_hint(classification=INVALID), {"stored_secret": SignInResult(ok=True)}, Act.START, "Confirmed"),
    (Hint(CLUSTER, Source.MANUAL), {}, Act.START, "Requested"),
    (Hint(CLUSTER, Source.MANUAL, dry_run=True), {"active": rotation(Status.WAITING)}, Act.START, "DryRun"),
    (Hint(CLUSTER, Source.MANUAL), {"stored_secret": SignInResult(ok=True)}, Act.NONE, "CredentialValid"),
    (Hint(CLUSTER, Source.MANUAL, force=True), {"stored_secret": SignInResult(ok=True)}, Act.START, "Requested"),
    (Hint(CLUSTER, Source.MANUAL), {"stored_secret": SignInResult(ok=False, code="AADSTS7000215")}, Act.START,
     "Requested"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_each_check_decides_with_its_reason_code(hint: Hint, facts: dict, act: Act, code: str) -> None:
    verdict = evaluate(hint, observe(hint, **facts))
    assert (verdict.act, verdict.code) == (act, code), verdict.message
    assert verdict.message


def test_the_checks_that_need_no_azure_call_come_first() -> None:
    # A hint refused for scope or as a duplicate costs no ARM or Graph call: those checks read nothing remote.
    names = [check.__name__ for check in CHECKS]
    assert names[:2] == ["out_of_scope", "already_acted"]
    assert names.index("running") < names.index("application_deleted")  # Graph only when still undecided
    assert names.index("application_deleted") < names.index("not_owned") < names.index("dry_run")
    assert names.index("stale") < names.index("running")  # an old failure never reopens a repaired cluster


# ------------------------------------------------------------------ a healthy cluster is never reset on text

QUOTED_VERDICT = ("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
                  "client secret value, not the client secret ID.")
# The attack: a write refused over a tag value anyone allowed to tag the cluster chose.
TAG_QUOTE = json.dumps({"error": {"code": "InvalidParameter", "target": "tags['owner-note']", "message": (
    f"The value '{QUOTED_VERDICT}' of tag 'owner-note' is not valid: a tag value may hold at most 256 characters.")}})
# AKS's own words for a refused secret (MS Learn, ServicePrincipalValidationClientError): what the cluster's real
# breakage says, and what forged text can say too.
AKS_REFUSED = json.dumps({"status": "Failed", "error": {
    "code": "ResourceOperationFailure", "message": "The resource operation completed with terminal provisioning state"
    " 'Failed'.", "details": [{"code": "ServicePrincipalValidationClientError", "message": (
        "The credentials in ServicePrincipalProfile were invalid. Please see https://aka.ms/aks-sp-help for more "
        "details. (Details: adal: Refresh request failed. Status Code = '401'. Response body: "
        + json.dumps({"error": "invalid_client", "error_description": QUOTED_VERDICT, "error_codes": [7000215]})
        + ")")}]}})


def failed_write(world: World, status_message: str) -> FailureEvent:
    """A write to the cluster failed with `status_message` in the Activity Log, and Event Grid says so."""
    correlation = str(uuid.uuid4())
    world.activity_log.entries.append(ActivityLogEntry(
        correlation, str(CLUSTER), "Microsoft.ContainerService/managedClusters/write", "EndRequest", "Failed",
        world.clock() - timedelta(seconds=5), status_message))
    return FailureEvent(event_id=str(uuid.uuid4()), event_type="Microsoft.Resources.ResourceWriteFailure",
                        cluster=CLUSTER, resource_uri=str(CLUSTER),
                        operation_name="Microsoft.ContainerService/managedClusters/write", correlation_id=correlation,
                        event_time=world.clock())


def test_text_alone_never_resets_a_healthy_cluster_and_a_real_breakage_later_is_repaired_once(world: World) -> None:
    # A month ago the cluster's secret expired and the remediator repaired it: it holds the new secret in Key Vault,
    # and Graph shows that password valid for 150 more days.
    world.detector.accept_event(world.operate())
    world.drain()
    assert world.clusters.resets_started == 1 and world.clusters.secret_valid(CLUSTER)
    world.clock.advance(days=30)

    # The attack: a tag value quoting Entra ID's verdict; then the verdict in AKS's own error shape, which text alone
    # cannot tell from a real one. The cluster is healthy all along.
    world.detector.accept_event(failed_write(world, TAG_QUOTE))
    world.drain()
    world.clock.advance(minutes=5)
    world.detector.accept_event(failed_write(world, AKS_REFUSED))
    world.drain()
    first, tag, forged = world.incidents.decisions
    assert (tag["code"], tag["kind"]) == ("NotServicePrincipal", "not_sp"), tag
    assert (forged["code"], forged["act"]) == ("CredentialValid", "none"), forged
    assert world.clusters.resets_started == 1 and world.clusters.healthy_resets == []
    assert len(world.directory.added) == 1 and len(world.store.all()) == 1
    assert not world.clusters.write_fails(CLUSTER)  # nothing was broken

    # Ten days later someone replaces the application's passwords by hand and gives the cluster none of them: the
    # cluster's writes now fail with the same AKS words, and the stored secret no longer signs in.
    world.clock.advance(days=10)
    world.directory.apps[APP_ID].passwords.clear()
    world.directory.add_password_by_hand(APP_ID, expires_in=timedelta(days=365))
    assert world.clusters.write_fails(CLUSTER)
    breakage = failed_write(world, AKS_REFUSED)
    world.detector.accept_event(breakage)
    world.drain()
    world.detector.accept_event(breakage)  # Event Grid delivers at least once
    world.drain()
    assert [d["code"] for d in world.incidents.decisions[3:]] == ["ConfirmedBySignIn", "DuplicateIncident"]
    assert world.clusters.resets_started == 2 and world.clusters.healthy_resets == []
    assert [r.status for r in world.store.all()] == [Status.SUCCEEDED, Status.SUCCEEDED]
    assert world.clusters.secret_valid(CLUSTER) and world.operate() is None


def test_a_sign_in_that_cannot_reach_entra_id_resets_nothing_now_and_is_decided_on_the_retry(world: World) -> None:
    world.detector.accept_event(world.operate())
    world.drain()
    world.clock.advance(days=30)  # repaired a month ago: the remediator holds the secret the cluster holds

    def entra_id_unreachable() -> None:
        raise TransientError("could not reach Entra ID to sign in")

    # The next sign-in meets an Entra ID outage: no verdict on the secret, so no decision either way yet.
    world.faults.meanwhile("sign_in.sign_in", entra_id_unreachable)
    world.detector.accept_event(failed_write(world, AKS_REFUSED))
    world.deliver_visible(only=("lookups",))
    assert world.clusters.resets_started == 1 and len(world.directory.added) == 1
    assert [d["code"] for d in world.incidents.decisions] == ["Confirmed"]  # nothing recorded for the failure yet
    assert len(world.lookups.messages) == 1  # the host puts the lookup back: tried again, not refused for good

    world.drain()
    assert world.incidents.decisions[-1]["code"] == "CredentialValid", world.incidents.decisions[-1]
    assert world.clusters.resets_started == 1 and world.clusters.healthy_resets == []
