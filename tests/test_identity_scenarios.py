"""The identity scenarios of benchmarks/identity.py, over HTTP against the sandbox with the function
app in its own worker process: a deleted application replaced with its role assignments carried over, the same
with the default setting planned and nothing written, a legacy Azure AD server secret rotated, and the orphan
report. The sandbox enforces the deployed Graph permissions and the role-delegation condition infra/ deploys."""

from __future__ import annotations

import pytest

from benchmarks.identity import ATTACKS, REPLACEMENT_WRITES, aad, attacks, crashes, orphans, plan, replace
from sandbox.rbac import BUILT_IN_ROLES

# Minutes of worker processes over HTTP: out of the inner loop (`pytest -m "not slow"`), in `make test`.
pytestmark = pytest.mark.slow

CARRIED = ["AcrPull", "Network Contributor", "Private DNS Zone Contributor"]


def test_a_deleted_application_is_replaced_by_one_the_remediator_owns_with_the_same_roles() -> None:
    # ARM does not know the new principal for a while (PrincipalNotFound, even with principalType): it waits it out.
    figures = replace(replication_seconds=4)
    assert figures["status"] == "Succeeded" and figures["secretValidNow"], figures
    assert figures["newClientId"] and figures["ownedByRemediator"], figures
    assert sorted(role for _, role in figures["oldRoles"]) == CARRIED
    assert figures["rolesEqual"] and figures["newPrincipalTypes"] == ["ServicePrincipal"], figures
    assert figures["oldRolesKept"], figures  # the deleted principal's assignments are left as they were
    assert figures["resets"] == 1 and figures["vaultSecrets"] == 1, figures
    writes = figures["remediatorWrites"]
    assert writes["graph POST /applications"] == writes["graph POST /servicePrincipals"] == 1, writes
    assert writes["graph POST /applications/{id}/addPassword"] == 1, writes
    assert writes["arm PUT roleAssignments/{name}"] >= len(CARRIED), writes
    assert figures["roleAssignmentAnswers"].get("400", 0) >= 1, figures  # it did meet PrincipalNotFound


@pytest.mark.parametrize("point", [REPLACEMENT_WRITES[0], REPLACEMENT_WRITES[2], REPLACEMENT_WRITES[4]],
                         ids=lambda point: point[1])
def test_a_worker_killed_after_a_replacement_write_still_ends_with_one_of_everything(point) -> None:
    # After creating the application (found again by name among the remediator's), after addPassword (the secret
    # died with the worker: that password is removed and another minted), after a role assignment.
    [figures] = crashes((point,))
    assert figures["workerRestarted"] and figures["status"] == "Succeeded", figures
    assert figures["applicationsCreated"] == figures["servicePrincipalsCreated"] == 1, figures
    assert figures["passwordsOnNewApplication"] == 1 and figures["rolesEqual"], figures
    assert figures["resets"] == 1 and figures["secretValidNow"], figures


def test_with_the_default_setting_a_deleted_application_gets_a_plan_and_nothing_is_written() -> None:
    figures = plan()
    assert figures["status"] == "Planned", figures
    assert figures["remediatorWrites"] == {} and figures["resets"] == 0, figures
    assert figures["plannedRoles"] == figures["oldRoles"], figures
    commands = " ".join(figures["plan"])
    for command in ("az ad app create", "az ad sp create", "az ad app credential reset",
                    "az role assignment create", "az aks update-credentials"):
        assert command in commands, (command, figures["plan"])
    assert all(BUILT_IN_ROLES[role] in commands for role in CARRIED)


def test_a_legacy_azure_ad_server_secret_is_rotated_and_the_aad_profile_reset_once() -> None:
    figures = aad()
    assert figures["status"] == "Succeeded" and figures["serverSecretValidNow"], figures
    assert figures["resetAADProfile"] == 1 and figures["resetServicePrincipalProfile"] == 0, figures
    assert figures["servicePrincipalUntouched"], figures
    assert figures["remediatorWrites"] == {"arm POST managedClusters/{name}/resetAADProfile": 1,
                                           "graph POST /applications/{id}/addPassword": 1,
                                           "vault PUT /secrets/{name}": 1}, figures


def test_the_orphan_report_lists_exactly_the_planted_orphans_and_deletes_nothing() -> None:
    figures = orphans()
    assert figures["exact"] and figures["listed"] == figures["planted"], figures
    assert all(command.startswith("az ad app delete --id ") for command in figures["deleteCommands"])
    assert all(dates for dates in figures["endDates"].values()), figures
    assert figures["remediatorWrites"] == {}, figures


@pytest.mark.parametrize("variant", ATTACKS)
def test_a_replacement_under_attack_uses_only_its_own_application_or_stops_for_a_person(variant: str) -> None:
    # Another identity of the tenant registers an application with the name the remediator's will have
    # (the remediation id is visible to any reader of the API) and makes the remediator its co-owner, while the
    # worker is down after (or before) its own create; or copies the new application's notes (any reader of
    # applications sees them) and leaves the remediator its sole owner; or Graph commits the create and answers 503
    # (the SDK's retry handler used to POST it again).
    [figures] = attacks((variant,))
    assert not figures["clusterOnAttackerApp"] and figures["attackerAppRoles"] == [], figures
    assert figures["attackerAppPasswords"] == 0, figures  # the remediator never minted a password on it
    assert figures["ownApplications"] == 1, figures  # never a second application of its own
    if variant == "copied-nonce":  # two candidates carry the nonce: neither is used, a person decides
        assert (figures["status"], figures["code"]) == ("Failed", "AmbiguousReplacement"), figures
        assert figures["roleWrites"] == 0 and figures["resets"] == 0, figures
        assert "a person must look" in figures["reason"], figures
    else:
        assert figures["status"] == "Succeeded" and figures["clusterOnOwnApp"], figures
        assert figures["resets"] == 1 and figures["secretValidNow"], figures
    if variant == "lost-503":
        assert figures["applications"] == figures["remediatorCreates"] == 1, figures  # no automatic second POST
