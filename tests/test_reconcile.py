"""The decision policy as a table: each check, alone, over a hand-built observation (the checks are pure).

The world-level sequences (event, repair, sweep, duplicate, restart) are in test_detection.py and
test_service.py; this file pins what each reason code means and the order the checks run in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from remediation.classify import Action, Classification, FailureKind
from remediation.guardrails import Guardrails, Scope
from remediation.model import Application, ClusterInfo, Credential, PasswordInfo, SignInResult, Status
from remediation.reconcile import CHECKS, Act, Hint, Source, evaluate
from remediation.record import Remediation, Target, TargetStatus
from tests.conftest import APP_ID, CLUSTER, SUB

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EXPIRED = Classification(FailureKind.EXPIRED_SECRET, Action.ROTATE_SECRET, "AADSTS7000222", "expired", "e")
QUOTA = Classification(FailureKind.NOT_SP, Action.NONE, "QuotaExceeded", "quota", "q")
# The cluster's own token refresh refused with a 401: its credential, but which way it is bad the text cannot say.
REFUSED = Classification(FailureKind.CREDENTIAL_REJECTED, Action.CONFIRM, "", "refused", "401")
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


def observe(**facts) -> SimpleNamespace:
    """The facts the checks read, given outright: a broken-looking world unless changed."""
    base = {"guardrails": Guardrails(scope=Scope(subscriptions=frozenset({SUB}))), "now": NOW, "cluster": cluster(),
            "group_tags": {}, "incident_remediation": None, "active": None, "repaired_at": None,
            "failed": {True: [], False: []},
            "application": Application("obj", APP_ID, "app", (PasswordInfo("k", "rbac", "abc", None,
                                                                           NOW - timedelta(days=3)),)),
            "stored_secret": None, "runner": SimpleNamespace(stalled=lambda r: r.updated_at < (
                NOW - timedelta(hours=1)).isoformat()),
            "credential": Credential.SERVICE_PRINCIPAL, "owner_id": OWNER,
            # Entra ID's answer to a throwaway secret: the application exists (and the secret is wrong).
            "entra_verdict": SignInResult(ok=False, code="AADSTS7000215")}
    o = SimpleNamespace(**{**base, **facts})
    o.app_id = o.cluster.app_id_for(o.credential) if o.cluster else ""
    o.failures = lambda *, of_cluster: o.failed[of_cluster]
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
    (Hint(CLUSTER, Source.MANUAL), {}, Act.START, "Requested"),
    (Hint(CLUSTER, Source.MANUAL, dry_run=True), {"active": rotation(Status.WAITING)}, Act.START, "DryRun"),
    (Hint(CLUSTER, Source.MANUAL), {"stored_secret": SignInResult(ok=True)}, Act.NONE, "CredentialValid"),
    (Hint(CLUSTER, Source.MANUAL, force=True), {"stored_secret": SignInResult(ok=True)}, Act.START, "Requested"),
    (Hint(CLUSTER, Source.MANUAL), {"stored_secret": SignInResult(ok=False, code="AADSTS7000215")}, Act.START,
     "Requested"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_each_check_decides_with_its_reason_code(hint: Hint, facts: dict, act: Act, code: str) -> None:
    verdict = evaluate(hint, observe(**facts))
    assert (verdict.act, verdict.code) == (act, code), verdict.message
    assert verdict.message


def test_the_checks_that_need_no_azure_call_come_first() -> None:
    # A hint refused for scope or as a duplicate costs no ARM or Graph call: those checks read nothing remote.
    names = [check.__name__ for check in CHECKS]
    assert names[:2] == ["out_of_scope", "already_acted"]
    assert names.index("running") < names.index("application_deleted")  # Graph only when still undecided
    assert names.index("application_deleted") < names.index("not_owned") < names.index("dry_run")
    assert names.index("stale") < names.index("running")  # an old failure never reopens a repaired cluster
