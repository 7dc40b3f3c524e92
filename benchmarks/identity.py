"""Identity scenarios (issue 10), over HTTP against the sandbox with the function app in its own worker process.

    replace   aks-payments' application is deleted (its service principal had Network Contributor on the
              cluster's subnet, AcrPull on a registry, Private DNS Zone Contributor on a zone); the operator's
              upgrade fails with AADSTS700016; with REMEDIATOR_REPLACE_DELETED=replace the remediator creates
              an application and service principal it owns, gives it the same role assignments, resets the
              cluster to it and verifies it
    crashes   the same, with the worker killed just after each of the replacement's writes
    plan      the same with the default setting (plan): a recorded plan with its az commands, 0 writes
    aad       a cluster on the legacy Azure AD integration whose server application's secrets expired: the
              operator asks for its repair (credential aadServer); the secret is rotated and the AAD
              profile reset
    orphans   applications the remediator owns that no cluster uses any more, reported with their
              passwords' end dates and the command to delete them; nothing deleted
    attacks   the replacement under attack (issue 17), by another identity of the tenant acting only over Graph:
              impostor-after-create / impostor-before-create: the worker is killed just after (before) its
              create of the application; meanwhile the attacker (a member user) registers an application with
              the name the remediator gives its own (predictable from the remediation id any reader sees) and
              adds the remediator as co-owner; copied-nonce: the attacker also copies the notes of the remediator's new
              application (any reader of applications sees them) and then leaves the remediator sole owner;
              lost-503: Graph commits the create and answers 503

Everything the scenarios plant they plant as a platform team would: role assignments with ARM's PUT, the
application's deletion with Graph's DELETE, both as the operator; clusters and applications through the
sandbox's admin routes. `python benchmarks/identity.py [replace|plan|aad|orphans ...]` prints the figures;
tests/test_identity_scenarios.py asserts them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fleet import Fleet, served  # noqa: E402
from benchmarks.scenarios import VISIBILITY_SECONDS, _call  # noqa: E402
from sandbox import Sandbox, WorldOptions  # noqa: E402
from sandbox.azurite import Azurite  # noqa: E402
from sandbox.rbac import BUILT_IN_ROLES  # noqa: E402

FAST = {"REMEDIATOR_LEASE_SECONDS": "10", "REMEDIATOR_RETRY_DELAY_SECONDS": "1", "REMEDIATOR_RESET_POLL_SECONDS": "1",
        "REMEDIATOR_PROPAGATION_SUCCESSES": "2", "REMEDIATOR_PROPAGATION_INTERVAL_SECONDS": "1"}
ROLES_API = "2022-04-01"
# What infra/role-delegation.bicep grants in replace mode (main.bicep's assignableRoleIds default).
DELEGATION = WorldOptions(remediator_role_assignment_roles=frozenset(
    {"Network Contributor", "AcrPull", "Private DNS Zone Contributor"}))
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# POSTs that only read: a Resource Graph query (the fan-out's clusters), a Graph JSON batch of GETs.
READ_POSTS = frozenset({"POST Microsoft.ResourceGraph/resources", "POST /$batch"})


class World(Fleet):
    """A named sandbox scenario with the remediator's worker, and the operator's own ARM and Graph calls."""

    def operator_call(self, method: str, api: str, path: str, body: Any = None) -> Any:
        resource = {"arm": "https://management.azure.com", "graph": "https://graph.microsoft.com"}[api]
        token = self.sandbox.credential(self.sandbox.operator).get_token(f"{resource}/.default").token
        url = f"{self.sandbox.endpoints[api]}{'/v1.0' if api == 'graph' else ''}{path}"
        status, payload = _call(method, url, body, headers={"Authorization": f"Bearer {token}"},
                                ca=self.sandbox.ca_path)
        if status >= 400:
            raise RuntimeError(f"operator {method} {path}: {status} {payload[:300]!r}")
        return json.loads(payload or b"null")

    def application(self, display_name: str) -> dict[str, Any]:
        return next(a for a in self.snapshot()["applications"] if a["displayName"] == display_name)

    def cluster(self, name: str) -> dict[str, Any]:
        return next(c for c in self.clusters() if c["name"] == name)

    def assign(self, scope: str, role: str, principal_id: str) -> dict[str, Any]:
        return self.operator_call("PUT", "arm", f"{scope}/providers/Microsoft.Authorization/roleAssignments/"
                                  f"{uuid.uuid4()}?api-version={ROLES_API}", {"properties": {
                                      "roleDefinitionId": f"{scope.split('/resourceGroups/')[0]}/providers/"
                                                          f"Microsoft.Authorization/roleDefinitions/"
                                                          f"{BUILT_IN_ROLES[role]}",
                                      "principalId": principal_id, "principalType": "ServicePrincipal"}})

    def roles_of(self, principal_id: str) -> set[tuple[str, str, str]]:
        """(scope, role name, principal type) of every assignment the principal has."""
        return {(a["scope"].lower(), a["roleName"], a["principalType"]) for a in self.snapshot()["roleAssignments"]
                if a["principalId"] == principal_id}

    def writes_by_remediator(self) -> dict[str, int]:
        calls = self.snapshot()["requestsByCaller"].get("aks-sp-remediator", {})
        return {f"{api} {route}": n for api, routes in calls.items() if api in ("arm", "graph", "vault")
                for route, n in routes.items() if route.split(" ")[0] in WRITES and route not in READ_POSTS}

    def calls_by_remediator(self) -> dict[str, int]:
        calls = self.snapshot()["requestsByCaller"].get("aks-sp-remediator", {})
        return {api: sum(routes.values()) for api, routes in calls.items()}


@contextlib.contextmanager
def identity_world(scenario: str = "healthy", *, options: WorldOptions = DELEGATION,
                   visibility_seconds: int = VISIBILITY_SECONDS, **settings: str) -> Iterator[World]:
    with Azurite() as azurite, Sandbox(scenario, options=options) as sandbox, \
            served(sandbox, azurite, {**FAST, **settings}, kind=World, visibility_seconds=visibility_seconds) as world:
        yield world


def _deleted_application_with_roles(world: World) -> dict[str, Any]:
    """aks-payments' service principal holds what an AKS cluster's typically does; then its application is
    deleted. Returns what it was."""
    sub = world.sandbox.subscription_id
    for group in ("rg-network", "rg-shared"):
        world.admin("POST", "resourcegroups", {"name": group})
    old = world.application("aks-payments-sp")
    principal = old["servicePrincipalObjectId"]
    scopes = {
        "Network Contributor": f"/subscriptions/{sub}/resourceGroups/rg-network/providers/Microsoft.Network/"
                               "virtualNetworks/vnet-aks/subnets/aks-payments",
        "AcrPull": f"/subscriptions/{sub}/resourceGroups/rg-shared/providers/Microsoft.ContainerRegistry/"
                   "registries/acrplatform",
        "Private DNS Zone Contributor": f"/subscriptions/{sub}/resourceGroups/rg-network/providers/"
                                        "Microsoft.Network/privateDnsZones/privatelink.swedencentral.azmk8s.io",
    }
    for role, scope in scopes.items():
        world.assign(scope, role, principal)
    before = world.roles_of(principal)
    world.operator_call("DELETE", "graph", f"/applications/{old['objectId']}")
    return {"appId": old["appId"], "displayName": old["displayName"], "principalId": principal, "roles": before}


def _upgrade_fails(world: World, name: str = "aks-payments") -> str:
    attempt = world.admin("POST", f"{world.cluster(name)['id']}/operate", {"kubernetesVersion": "1.30.4"})
    if attempt["succeeded"]:
        raise RuntimeError(f"the upgrade of {name} was expected to fail")
    return attempt["correlationId"]


def replace(*, replication_seconds: float = 8, **settings: str) -> dict[str, Any]:
    """`replication_seconds`: how long ARM's directory replica does not know the new service principal, even when
    a request names its principalType (field reports say that does not always help)."""
    with identity_world(REMEDIATOR_REPLACE_DELETED="replace", **settings) as world:
        old = _deleted_application_with_roles(world)
        world.admin("POST", "faults", {"kind": "principal_replication_delay", "seconds": replication_seconds,
                                       "ignorePrincipalType": True})
        _upgrade_fails(world)
        world.wait(lambda: world.quiet() and world.cluster("aks-payments")["secretValidNow"], 300,
                   "the replacement to finish and the cluster to be repaired")
        cluster = world.cluster("aks-payments")
        new = next(a for a in world.snapshot()["applications"] if a["appId"] == cluster["clientId"])
        remediation = world.remediations()[0]
        snapshot = world.snapshot()
        return {
            "seconds": round(time.monotonic() - world.started, 1),
            "status": remediation["status"],
            "newClientId": cluster["clientId"] != old["appId"],
            "newApplication": new["displayName"],
            "ownedByRemediator": world.sandbox.remediator.client_id in new["owners"],
            "oldRoles": sorted(r[:2] for r in old["roles"]),
            "oldRolesKept": world.roles_of(old["principalId"]) == old["roles"],
            "rolesEqual": {r[:2] for r in world.roles_of(new["servicePrincipalObjectId"])}
            == {r[:2] for r in old["roles"]},
            "newPrincipalTypes": sorted({r[2] for r in world.roles_of(new["servicePrincipalObjectId"])}),
            "resets": cluster["writes"]["reset"],
            "secretValidNow": cluster["secretValidNow"],
            "roleAssignmentAnswers": snapshot["responses"]["arm"].get("PUT roleAssignments/{name}", {}),
            "vaultSecrets": len(snapshot["keyVault"]),
            "remediatorWrites": world.writes_by_remediator(),
            "remediatorCalls": world.calls_by_remediator(),
        }


# The replacement's writes, in order: the worker is killed just after each one took effect.
REPLACEMENT_WRITES = (("graph", "POST /applications"), ("graph", "POST /servicePrincipals"),
                      ("graph", "POST /applications/{id}/addPassword"), ("vault", "PUT /secrets/{name}"),
                      ("arm", "PUT roleAssignments/{name}"),
                      ("arm", "POST managedClusters/{name}/resetServicePrincipalProfile"))


def crashes(points: tuple[tuple[str, str], ...] = REPLACEMENT_WRITES, **settings: str) -> list[dict[str, Any]]:
    """The replacement with the worker killed after each of its writes: one application, one service principal,
    the same roles, one reset, every time; a password whose secret was lost with the worker is taken back."""
    found = []
    for api, route in points:
        with identity_world(REMEDIATOR_REPLACE_DELETED="replace", **settings) as world:
            old = _deleted_application_with_roles(world)
            world.admin("POST", "faults", {"api": api, "route": route, "kind": "kill_worker", "when": "after",
                                           "count": 1})
            pid = world.worker.pid
            _upgrade_fails(world)
            world.wait(lambda: world.quiet() and world.cluster("aks-payments")["secretValidNow"], 300,
                       f"the replacement to finish after a kill after {route}")
            snapshot = world.snapshot()
            new_apps = [a for a in snapshot["applications"] if "(aks-sp-remediator " in a["displayName"]]
            new_roles = {r[:2] for app in new_apps for r in world.roles_of(app["servicePrincipalObjectId"])}
            writes = world.writes_by_remediator()
            cluster = world.cluster("aks-payments")
            found.append({
                "killedAfter": f"{api} {route}", "workerRestarted": world.worker.pid != pid,
                "status": world.remediations()[0]["status"], "applicationsCreated": len(new_apps),
                "servicePrincipalsCreated": writes.get("graph POST /servicePrincipals", 0),
                "addPassword": writes.get("graph POST /applications/{id}/addPassword", 0),
                "passwordsOnNewApplication": sum(len(a["passwords"]) for a in new_apps),
                "rolesEqual": new_roles == {r[:2] for r in old["roles"]},
                "resets": cluster["writes"]["reset"], "secretValidNow": cluster["secretValidNow"],
                "seconds": round(time.monotonic() - world.started, 1)})
    return found


def plan(**settings: str) -> dict[str, Any]:
    with identity_world(options=WorldOptions(), **settings) as world:  # plan is the default
        old = _deleted_application_with_roles(world)
        _upgrade_fails(world)
        world.wait(lambda: world.quiet() and bool(world.remediations()), 300, "the plan")
        time.sleep(3)  # anything written would be visible by now
        [remediation] = world.remediations()
        _, shown = world.api("GET", f"remediations/{remediation['id']}")
        return {
            "seconds": round(time.monotonic() - world.started, 1),
            "status": remediation["status"],
            "plannedRoles": sorted((r["scope"].lower(), r["role"]) for r in (shown.get("replacement") or {})
                                   .get("roleAssignments", [])),
            "oldRoles": sorted((r[0], BUILT_IN_ROLES[r[1]]) for r in old["roles"]),
            "plan": shown.get("plan") or [],
            "remediatorWrites": world.writes_by_remediator(),
            "resets": world.cluster("aks-payments")["writes"]["reset"],
            "remediatorCalls": world.calls_by_remediator(),
        }


def aad(**settings: str) -> dict[str, Any]:
    with identity_world(**settings) as world:
        server = world.admin("POST", "applications", {"displayName": "aks-aad-server", "passwords": [
            {"displayName": "aad server", "startDaysAgo": 400, "endInDays": -35}]})
        client = world.admin("POST", "applications", {"displayName": "aks-aad-client", "ownedByRemediator": False})
        healthy = world.application("aks-healthy-sp")
        cluster = world.admin("POST", "clusters", {
            "resourceGroup": "rg-platform", "name": "aks-legacy-aad", "applicationAppId": healthy["appId"],
            "legacyAad": {"serverAppId": server["appId"], "clientAppId": client["appId"]}})
        assert cluster["aad"]["serverSecretValidNow"] is False, cluster
        status, started = world.api("POST", "remediations", {"clusterResourceId": cluster["id"],
                                                             "credential": "aadServer"})
        if status != 202:
            raise RuntimeError(f"the repair was refused: {status} {started}")
        world.wait(lambda: world.quiet() and world.cluster("aks-legacy-aad")["aad"]["serverSecretValidNow"], 300,
                   "the AAD profile reset")
        after = world.cluster("aks-legacy-aad")
        snapshot = world.snapshot()
        return {
            "seconds": round(time.monotonic() - world.started, 1),
            "status": world.remediations()[0]["status"],
            "serverSecretValidNow": after["aad"]["serverSecretValidNow"],
            "servicePrincipalUntouched": after["clientId"] == healthy["appId"] and after["secretValidNow"],
            "resetAADProfile": snapshot["requests"]["arm"].get("POST managedClusters/{name}/resetAADProfile", 0),
            "resetServicePrincipalProfile": after["writes"]["reset"],
            "remediatorWrites": world.writes_by_remediator(),
            "remediatorCalls": world.calls_by_remediator(),
        }


def orphans(**settings: str) -> dict[str, Any]:
    with identity_world(**settings) as world:
        planted = [
            world.admin("POST", "applications", {"displayName": "aks-retired-sp", "passwords": [
                {"displayName": "rbac", "startDaysAgo": 400, "endInDays": -35}]}),
            world.admin("POST", "applications", {"displayName": "aks-old-dev-sp", "passwords": [
                {"displayName": "rbac", "endInDays": 90}]}),
        ]
        world.admin("POST", "applications", {"displayName": "someone-elses-app", "ownedByRemediator": False})
        status, report = world.api("GET", "orphans")
        if status != 200:
            raise RuntimeError(f"GET /api/orphans: {status} {report}")
        listed = report["value"]
        return {
            "seconds": round(time.monotonic() - world.started, 1),
            "listed": sorted(o["displayName"] for o in listed),
            "planted": sorted(p["displayName"] for p in planted),
            "exact": {o["appId"] for o in listed} == {p["appId"] for p in planted},
            "deleteCommands": sorted(o["deleteCommand"] for o in listed),
            "endDates": {o["displayName"]: [p["endDateTime"] for p in o["passwords"]] for o in listed},
            "remediatorWrites": world.writes_by_remediator(),
            "remediatorCalls": world.calls_by_remediator(),
        }


class Attacker:
    """A member user of the tenant, with Entra ID's default user permissions (read every application, register
    applications, manage the ones the user owns and their owners), acting only over Microsoft Graph with the token
    the Azure CLI would hold for the user."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.user = world.admin("POST", "users", {"displayName": "Mallory Contractor"})

    def token(self) -> str:
        return self.world.admin("POST", f"users/{self.user['id']}/token", {})["accessToken"]

    def graph(self, method: str, path: str, body: Any = None) -> Any:
        token = self.token()
        status, payload = _call(method, f"{self.world.sandbox.endpoints['graph']}/v1.0{path}", body,
                                headers={"Authorization": f"Bearer {token}"}, ca=self.world.sandbox.ca_path)
        if status >= 400:
            raise RuntimeError(f"attacker {method} {path}: {status} {payload[:300]!r}")
        return json.loads(payload or b"null")

    def principal_of(self, app_id: str) -> str:
        return self.graph("GET", f"/servicePrincipals(appId='{app_id}')")["id"]

    def plant(self, display_name: str, *, notes: str | None = None, leave: bool = False) -> dict[str, Any]:
        """An application named `display_name` (with `notes`), with the remediator added as co-owner; `leave`: the
        attacker then removes itself, so the remediator is the sole owner."""
        app = self.graph("POST", "/applications", {"displayName": display_name, **({"notes": notes} if notes else {})})
        remediator = self.principal_of(self.world.sandbox.remediator.client_id)
        self.graph("POST", f"/applications/{app['id']}/owners/$ref",
                   {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{remediator}"})
        if leave:
            self.graph("DELETE", f"/applications/{app['id']}/owners/{self.user['id']}/$ref")
        return app


ATTACKS = ("impostor-after-create", "impostor-before-create", "copied-nonce", "lost-503")
ATTACK_WINDOW_SECONDS = 20


def attacks(variants: tuple[str, ...] = ATTACKS, **settings: str) -> list[dict[str, Any]]:
    """The replacement while another identity of the tenant attacks it (see the module's docstring): what each
    application got, and what the remediator did."""
    found = []
    for variant in variants:
        # The killed worker's message comes back only after the visibility timeout: long enough here that the
        # attacker's moves land before the retry however loaded the machine is (the race is the attack's, not the
        # scenario's: with 3 s, a slow machine let the retry finish first, and the attack never happened).
        with identity_world(REMEDIATOR_REPLACE_DELETED="replace", visibility_seconds=ATTACK_WINDOW_SECONDS,
                            **settings) as world:
            old = _deleted_application_with_roles(world)
            attacker = Attacker(world)
            fault = ({"api": "graph", "route": "POST /applications", "kind": "error_after_commit", "status": 503}
                     if variant == "lost-503" else
                     {"api": "graph", "route": "POST /applications", "kind": "kill_worker",
                      "when": "before" if variant == "impostor-before-create" else "after"})
            world.admin("POST", "faults", {**fault, "count": 1})
            pid = world.worker.pid
            _upgrade_fails(world)
            planted = None
            if variant != "lost-503":
                world.wait(lambda pid=pid: world.worker.pid not in (None, pid), 120, "the worker killed at its create")
                # What any reader of the API sees: the remediation's id, hence the name its application will have.
                world.wait(world.remediations, 60, "the restarted worker to answer")
                [remediation] = world.remediations()
                name = f"{old['displayName']} (aks-sp-remediator {remediation['id'][:12]})"
                ours = [a for a in attacker.graph("GET", "/applications")["value"] if a["displayName"] == name]
                planted = attacker.plant(name, notes=ours[0]["notes"] if variant == "copied-nonce" else None,
                                         leave=variant == "copied-nonce")
            world.wait(world.quiet, 300, f"the replacement to end ({variant})")
            snapshot = world.snapshot()
            [remediation] = world.remediations()
            _, shown = world.api("GET", f"remediations/{remediation['id']}")
            apps = [a for a in snapshot["applications"] if "(aks-sp-remediator " in a["displayName"]]
            cluster = world.cluster("aks-payments")
            attacker_app = next((a for a in apps if planted and a["objectId"] == planted["id"]), None)
            writes = world.writes_by_remediator()
            found.append({
                "variant": variant, "status": remediation["status"], "code": (shown.get("error") or {}).get("code"),
                "reason": remediation["reason"],
                "applications": len(apps), "ownApplications": len([a for a in apps if a is not attacker_app]),
                "remediatorCreates": writes.get("graph POST /applications", 0),
                "clusterOnAttackerApp": bool(attacker_app) and cluster["clientId"] == attacker_app["appId"],
                "attackerAppRoles": sorted(r[1] for r in world.roles_of(attacker_app["servicePrincipalObjectId"]))
                if attacker_app and attacker_app.get("servicePrincipalObjectId") else [],
                "attackerAppPasswords": len(attacker_app["passwords"]) if attacker_app else 0,
                "roleWrites": writes.get("arm PUT roleAssignments/{name}", 0),
                "resets": cluster["writes"]["reset"], "secretValidNow": cluster["secretValidNow"],
                "clusterOnOwnApp": any(a["appId"] == cluster["clientId"] and a is not attacker_app
                                       and a["owners"] == [world.sandbox.remediator.client_id] for a in apps),
                "seconds": round(time.monotonic() - world.started, 1)})
    return found


SCENARIOS = {"replace": replace, "crashes": crashes, "plan": plan, "aad": aad, "orphans": orphans,
             "attacks": attacks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", default=list(SCENARIOS), help=f"any of {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    unknown = [name for name in args.which if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    for name in args.which:
        print(f"identity {name}:", json.dumps(SCENARIOS[name]()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
