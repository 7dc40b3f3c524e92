"""`python -m remediation preflight`: the checks as pure functions of a deployment and the facts read from Azure,
then the whole command against the sandbox, as a deployer runs it before `azd up` (and as azure.yaml's preprovision
hook runs it: tests/test_deploy_hooks.py)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from remediation.__main__ import main
from remediation.cli import preflight
from remediation.cli.preflight import (
    APP_ROLE_ASSIGNMENT_READWRITE_ALL,
    APPLICATION_ADMINISTRATOR,
    PRIVILEGED_ROLE_ADMINISTRATOR,
    DeployedRemediator,
    Deployer,
    Deployment,
    Facts,
    RoleDefinition,
    Status,
)
from remediation.errors import InvalidInputError
from remediation.model import REMEDIATOR_TAG
from sandbox import Sandbox
from tests.support.wire import Wire, reader, sandbox_info_file

SUB = "00000000-0000-0000-0000-00000000000a"
OTHER_SUB = "00000000-0000-0000-0000-00000000000b"
NETWORK = "4d97b98b-1d4f-4787-a291-c67834d212e7"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
ENV = {"AZURE_ENV_NAME": "second", "AZURE_LOCATION": "westeurope", "AZURE_SUBSCRIPTION_ID": SUB}


def deployment(**env: str) -> Deployment:
    return Deployment.from_environment({**ENV, **env})


def facts(**changes: Any) -> Facts:
    """What a healthy public-cloud tenant answers: Flex in westeurope, an administrator, no other remediator."""
    administrator = frozenset({PRIVILEGED_ROLE_ADMINISTRATOR, APPLICATION_ADMINISTRATOR})
    base = Facts(cloud="AzureCloud", flex_regions=frozenset({"westeurope", "swedencentral"}),
                 deployer=Deployer("11111111-1111-1111-1111-111111111111", "user", directory_roles=administrator),
                 role_definitions={r: RoleDefinition(r, name, ("Microsoft.Network/*",)) for r, name in (
                     (NETWORK, "Network Contributor"), ("7f951dda-4ed3-4680-a7ca-43fe172d538d", "AcrPull"),
                     ("b12aa53e-6015-4669-85d0-8515ebb3ae7f", "Private DNS Zone Contributor"))})
    return replace(base, **changes)


def remediator(settings: dict[str, str] | None, **changes: Any) -> DeployedRemediator:
    found = DeployedRemediator(site_id=f"/subscriptions/{SUB}/resourceGroups/rg-first/providers/Microsoft.Web/sites/"
                                       "func-remediator-first", subscription_id=SUB, resource_group="rg-first",
                               name="func-remediator-first", environment="first", settings=settings)
    return replace(found, **changes)


def codes(report: preflight.Report, status: Status | None = None) -> list[str]:
    return [f.code for f in report.findings if status is None or f.status == status]


# ---------------------------------------------------------------- reading the deployment


def test_the_deployment_is_read_as_main_bicepparam_reads_it():
    found = deployment(REMEDIATOR_EXTRA_SUBSCRIPTION_IDS=f" {OTHER_SUB.upper()} , {SUB}",
                       REMEDIATOR_ALLOW_RESOURCE_GROUPS="rg-a, RG-B", REMEDIATOR_MODE="observe")
    assert found.subscriptions == (SUB, OTHER_SUB)  # the primary once, extras lower-cased
    assert found.resource_group == "rg-second"
    assert found.scope.resource_groups == frozenset({"rg-a", "rg-b"})
    assert found.mode == "observe"
    assert found.assignable_roles() == ([NETWORK, "7f951dda-4ed3-4680-a7ca-43fe172d538d",
                                         "b12aa53e-6015-4669-85d0-8515ebb3ae7f"], [])
    assert deployment(AZURE_RESOURCE_GROUP="my-group").resource_group == "my-group"


@pytest.mark.parametrize(("env", "code"), [
    ({"AZURE_SUBSCRIPTION_ID": ""}, "MissingDeployment"),
    ({"AZURE_SUBSCRIPTION_ID": "not-a-subscription"}, "InvalidSubscriptionId"),
    ({"REMEDIATOR_EXTRA_SUBSCRIPTION_IDS": "x/../y"}, "InvalidSubscriptionId"),
    ({"GRANT_GRAPH_PERMISSION": "yes"}, "InvalidOption"),
    ({"REMEDIATOR_MODE": "sometimes"}, "InvalidOption"),
])
def test_a_malformed_deployment_is_refused_with_its_reason(env: dict[str, str], code: str):
    with pytest.raises(InvalidInputError) as refused:
        deployment(**env)
    assert refused.value.code == code


def test_the_defaults_are_main_bicepparams():
    # The preflight checks what the template will deploy: its defaults must be the parameter file's.
    from tests.support import bicep

    root = bicep.parse(bicep.INFRA / "main.bicepparam")
    names = bicep.variables(root)

    def default(param: str) -> Any:  # with nothing set, readEnvironmentVariable(name, default) is its default
        return bicep.evaluate(names[param], {"readEnvironmentVariable()": lambda name, fallback="": fallback}, names)

    found = deployment()
    assert default("assignableRoleIds") == list(preflight.DEFAULT_ASSIGNABLE_ROLE_IDS) == found.assignable_roles()[0]
    assert default("mode") == found.mode and default("replaceDeleted") == found.replace_deleted
    assert default("grantGraphPermission") == found.grant_graph_permission == ""
    assert default("createApiApplication") == found.create_api_application == ""


# ---------------------------------------------------------------- the checks


def test_a_public_cloud_deployment_by_an_administrator_passes():
    report = preflight.run(deployment(), facts())
    assert not report.failed and report.exit_status == 0
    assert codes(report) == ["PublicCloud", "FlexAvailable", "EntraRolesHeld", "NoOtherRemediator", "RolesValid"]


def test_outside_the_public_cloud_the_graph_modules_are_off_and_the_manual_steps_are_named():
    gov = facts(cloud="AzureUSGovernment")
    asked = preflight.run(deployment(GRANT_GRAPH_PERMISSION="true"), gov)
    assert "GraphExtensionUnsupported" in codes(asked, Status.FAILED)
    (refusal,) = [f for f in asked.findings if f.code == "GraphExtensionUnsupported"]
    assert "GRANT_GRAPH_PERMISSION false" in refusal.fix and "infra/README.md" in refusal.fix
    # Unset: off by default; the API application must then be given.
    off = preflight.run(deployment(), gov)
    assert "GraphModulesOff" in codes(off, Status.WARNING) and codes(off, Status.FAILED) == ["ApiApplicationMissing"]
    given_app = preflight.run(deployment(REMEDIATOR_EXISTING_API_CLIENT_ID="22222222-2222-2222-2222-222222222222"),
                              gov)
    assert not given_app.failed and "EntraRolesHeld" not in codes(given_app)  # no Graph module: no role needed


def test_a_region_without_flex_consumption_is_refused_and_an_unknown_one_warns():
    refused = preflight.run(deployment(AZURE_LOCATION="West Central US"), facts())
    assert codes(refused, Status.FAILED) == ["FlexUnavailable"]
    assert "westeurope" in refused.findings[1].message
    assert preflight.run(deployment(AZURE_LOCATION="Sweden Central"), facts()).failed is False  # either spelling
    unknown = preflight.run(deployment(), facts(flex_regions=None, unknown={"region": "403 AuthorizationFailed"}))
    assert codes(unknown, Status.WARNING) == ["FlexRegionsUnknown"] and not unknown.failed


@pytest.mark.parametrize(("held", "env", "missing"), [
    (frozenset(), {}, ["grant", "create"]),
    (frozenset({APPLICATION_ADMINISTRATOR}), {}, ["grant"]),
    (frozenset({PRIVILEGED_ROLE_ADMINISTRATOR}), {}, ["create"]),
    (frozenset(), {"GRANT_GRAPH_PERMISSION": "false", "REMEDIATOR_CREATE_API_APP": "false",
                   "REMEDIATOR_EXISTING_API_CLIENT_ID": "22222222-2222-2222-2222-222222222222"}, []),
])
def test_the_deployer_must_hold_what_the_graph_modules_need(held: frozenset[str], env: dict[str, str],
                                                            missing: list[str]):
    user = Deployer("11111111-1111-1111-1111-111111111111", "user", directory_roles=held)
    report = preflight.run(deployment(**env), facts(deployer=user))
    refusals = [f for f in report.findings if f.code == "MissingEntraRole"]
    assert [("grant" if "Graph permissions" in f.message else "create") for f in refusals] == missing
    for refusal in refusals:
        assert "azd env set" in refusal.fix and "infra/README.md" in refusal.fix


def test_a_pipelines_service_principal_may_hold_graph_permissions_instead():
    pipeline = Deployer("33333333-3333-3333-3333-333333333333", "servicePrincipal",
                        graph_permissions=frozenset({APP_ROLE_ASSIGNMENT_READWRITE_ALL}))
    report = preflight.run(deployment(), facts(deployer=pipeline))
    (refusal,) = [f for f in report.findings if f.code == "MissingEntraRole"]
    assert "create the API application" in refusal.message
    assert "AppRoleAssignment.ReadWrite.All + Application.ReadWrite.All" in refusal.message
    assert refusal.message.endswith("it holds AppRoleAssignment.ReadWrite.All.")


def test_unreadable_entra_roles_warn_rather_than_pass_or_fail():
    report = preflight.run(deployment(), facts(deployer=None, unknown={"entra-roles": "403 Forbidden"}))
    assert codes(report, Status.WARNING) == ["EntraRolesUnknown"] and not report.failed


def test_another_remediator_on_the_same_clusters_is_refused():
    other = remediator({"REMEDIATOR_SUBSCRIPTION_IDS": SUB, "REMEDIATOR_MODE": "remediate"})
    report = preflight.run(deployment(), facts(remediators=(other,)))
    (refusal,) = [f for f in report.findings if f.status == Status.FAILED]
    assert refusal.code == "OverlappingRemediator"
    assert "func-remediator-first" in refusal.message and f"subscription {SUB}" in refusal.message
    assert "REMEDIATOR_MODE observe" in refusal.fix


@pytest.mark.parametrize(("mine", "theirs"), [
    ({"REMEDIATOR_MODE": "observe"}, {}),  # this one writes nothing
    ({}, {"REMEDIATOR_MODE": "observe"}),  # the other one writes nothing
    ({"REMEDIATOR_ALLOW_RESOURCE_GROUPS": "rg-team-b"}, {"REMEDIATOR_ALLOW_RESOURCE_GROUPS": "rg-team-a"}),
    ({"REMEDIATOR_DENY_RESOURCE_GROUPS": "rg-team-a"}, {"REMEDIATOR_ALLOW_RESOURCE_GROUPS": f"{SUB}/rg-team-a"}),
    ({}, {"REMEDIATOR_SUBSCRIPTION_IDS": OTHER_SUB}),  # it manages another subscription only
    ({}, {"REMEDIATOR_DENY_SUBSCRIPTION_IDS": SUB}),
])
def test_another_remediator_is_accepted_when_one_observes_or_the_scopes_are_disjoint(mine: dict[str, str],
                                                                                     theirs: dict[str, str]):
    other = remediator({"REMEDIATOR_SUBSCRIPTION_IDS": SUB, **theirs})
    report = preflight.run(deployment(**mine), facts(remediators=(other,)))
    assert not report.failed, report.findings


def test_a_remediator_whose_settings_cannot_be_read_counts_as_overlapping():
    hidden = remediator(None, unreadable="403 AuthorizationFailed: Microsoft.Web/sites/config/list/action")
    refused = preflight.run(deployment(), facts(remediators=(hidden,)))
    assert codes(refused, Status.FAILED) == ["RemediatorScopeUnreadable"]
    observing = preflight.run(deployment(REMEDIATOR_MODE="observe"), facts(remediators=(hidden,)))
    assert codes(observing, Status.WARNING) == ["RemediatorScopeUnreadable"] and not observing.failed


def test_assignable_roles_must_be_guids_of_existing_roles_that_cannot_grant():
    owner = RoleDefinition(OWNER, "Owner", ("*",))
    unknown = "99999999-9999-9999-9999-999999999999"
    raw = f" {NETWORK} , ,not-a-guid,{OWNER},{unknown},"
    report = preflight.run(deployment(REMEDIATOR_ASSIGNABLE_ROLE_IDS=raw),
                           facts(role_definitions={NETWORK: facts().role_definitions[NETWORK], OWNER: owner,
                                                   unknown: None}))
    assert codes(report, Status.FAILED) == ["InvalidRoleId", "RoleTooBroad", "RoleDefinitionNotFound"]
    # A trailing comma and spaces alone are not an error: main.bicep drops them too.
    assert not preflight.run(deployment(REMEDIATOR_ASSIGNABLE_ROLE_IDS=f"{NETWORK}, "), facts()).failed


@pytest.mark.parametrize(("actions", "not_actions", "writes"), [
    (("*",), (), True), (("Microsoft.Authorization/*",), (), True), (("*/write",), (), True),
    (("*",), ("Microsoft.Authorization/*/Write",), False),  # Contributor
    (("*/read",), (), False), (("Microsoft.Network/*",), (), False),
    (("Microsoft.Authorization/roleAssignments/write",), (), True),
])
def test_a_role_writes_role_assignments_through_its_wildcards(actions, not_actions, writes: bool):
    assert RoleDefinition("id", "role", actions, not_actions).writes_role_assignments() is writes


# ---------------------------------------------------------------- the command


def test_the_report_renders_each_finding_with_its_fix_and_a_verdict():
    other = remediator({"REMEDIATOR_SUBSCRIPTION_IDS": SUB})
    text = preflight.render(preflight.run(deployment(), facts(remediators=(other,))))
    assert "FAIL other-remediators:" in text and "fix: Make the scopes disjoint" in text
    assert text.rstrip().endswith("1 check(s) failed: nothing was deployed.")
    assert preflight.render(preflight.run(deployment(), facts())).rstrip().endswith("Ready to deploy.")


def run_preflight(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(["preflight", *args])
    assert "Traceback" not in err.getvalue()
    return status, out.getvalue(), err.getvalue()


def test_without_a_deployment_the_command_cannot_run(monkeypatch: pytest.MonkeyPatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    status, _, err = run_preflight("--cloud", "AzureCloud")
    assert status == 2 and "AZURE_ENV_NAME" in err


def test_an_unknown_cloud_is_a_usage_error(monkeypatch: pytest.MonkeyPatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    status, _, err = run_preflight("--cloud", "AzureGermanCloud")
    assert status == 2 and "AzureUSGovernment" in err


# ---------------------------------------------------------------- against the sandbox, as a deployer runs it


@pytest.fixture
def tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tenant]:
    """A sandbox tenant to deploy a second environment into, its info file, and the azd environment for it."""
    with Sandbox(scenario="healthy") as sandbox:
        monkeypatch.setenv("AZURE_ENV_NAME", "second")
        monkeypatch.setenv("AZURE_LOCATION", "westeurope")
        monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", sandbox.subscription_id)
        for name in ("REMEDIATOR_MODE", "GRANT_GRAPH_PERMISSION", "REMEDIATOR_CREATE_API_APP",
                     "REMEDIATOR_ASSIGNABLE_ROLE_IDS", "REMEDIATOR_ALLOW_RESOURCE_GROUPS", "AZURE_RESOURCE_GROUP",
                     "REMEDIATOR_EXTRA_SUBSCRIPTION_IDS", "REMEDIATOR_DENY_RESOURCE_GROUPS"):
            monkeypatch.delenv(name, raising=False)
        yield Tenant(sandbox, sandbox_info_file(sandbox, tmp_path), monkeypatch)


@dataclass
class Tenant:
    sandbox: Sandbox
    info: Path
    env: pytest.MonkeyPatch

    def preflight(self, *args: str) -> tuple[int, dict[str, Any]]:
        """`python -m remediation preflight --sandbox INFO --json`: (exit status, the report)."""
        before = self.writes()
        status, out, _ = run_preflight("--sandbox", str(self.info), "--json", *args)
        assert self.writes() == before, "the preflight wrote to Azure"
        secrets = (self.sandbox.operator.client_secret, self.sandbox.remediator.client_secret)
        assert not any(secret in out for secret in secrets)
        return status, json.loads(out)

    def writes(self) -> int:
        """Requests that could change the tenant: every PUT, PATCH, DELETE, and each POST but the reads that are
        POSTs (a Resource Graph query, an app settings list, a token)."""
        reads = ("Microsoft.ResourceGraph/resources", "config/appsettings/list", "POST token")
        requests = self.sandbox.snapshot()["requests"]
        return sum(n for routes in requests.values() for route, n in routes.items()
                   if route.split()[0] in ("PUT", "PATCH", "DELETE", "POST") and not any(r in route for r in reads))

    def plant(self, **body: Any) -> None:
        planted = Wire(self.sandbox).admin("remediators", {"location": "westeurope", **body})
        assert planted.status_code in (200, 201), planted.text


def findings(report: dict[str, Any], status: str | None = None) -> list[str]:
    return [f["code"] for f in report["findings"] if status is None or f["status"] == status]


def first_environment(tenant: Tenant, **settings: str) -> dict[str, Any]:
    """The first environment's remediator, as its Bicep leaves it in the subscription."""
    return {"resourceGroup": "rg-first", "name": "func-remediator-first",
            "tags": {"azd-env-name": "first", REMEDIATOR_TAG: "first"},
            "appSettings": {"REMEDIATOR_SUBSCRIPTION_IDS": tenant.sandbox.subscription_id,
                            "REMEDIATOR_MODE": "remediate", **settings}}


def test_a_fresh_tenant_is_ready_to_deploy(tenant: Tenant):
    status, report = tenant.preflight()
    assert status == 0 and report["passed"] is True
    assert findings(report) == ["PublicCloud", "FlexAvailable", "EntraRolesHeld", "NoOtherRemediator", "RolesValid"]
    _, out, _ = run_preflight("--sandbox", str(tenant.info))
    assert out.rstrip().endswith("Ready to deploy.")


def test_a_second_remediator_on_the_same_subscription_is_refused(tenant: Tenant):
    tenant.plant(**first_environment(tenant))
    status, report = tenant.preflight()
    assert status == 1 and findings(report, "failed") == ["OverlappingRemediator"]
    (refusal,) = [f for f in report["findings"] if f["status"] == "failed"]
    assert "func-remediator-first" in refusal["message"] and "REMEDIATOR_MODE observe" in refusal["fix"]
    # Observe-only, or scopes that share no cluster, are accepted.
    tenant.env.setenv("REMEDIATOR_MODE", "observe")
    assert tenant.preflight()[0] == 0
    tenant.env.delenv("REMEDIATOR_MODE")
    tenant.env.setenv("REMEDIATOR_ALLOW_RESOURCE_GROUPS", "rg-team-b")
    tenant.plant(**first_environment(tenant, REMEDIATOR_ALLOW_RESOURCE_GROUPS="rg-team-a"))
    assert tenant.preflight()[0] == 0


def test_a_remediator_found_only_through_the_system_topic_is_refused_too(tenant: Tenant):
    # One deployed before the tag existed: the event subscription to its on_resource_failure function names it.
    tenant.plant(**{**first_environment(tenant), "tags": {"azd-env-name": "first"}})
    status, report = tenant.preflight()
    assert status == 1 and findings(report, "failed") == ["OverlappingRemediator"]


def test_this_environments_own_function_app_from_an_earlier_up_is_not_another(tenant: Tenant):
    own = first_environment(tenant)
    tenant.plant(**{**own, "resourceGroup": "rg-second", "name": "func-remediator-second",
                    "tags": {"azd-env-name": "second", REMEDIATOR_TAG: "second"}})
    status, report = tenant.preflight()
    assert status == 0 and "NoOtherRemediator" in findings(report)


def test_a_remediator_whose_settings_the_deployer_cannot_read_is_refused(tenant: Tenant):
    from remediation.adapters.deployment import AzureDeploymentReader

    tenant.plant(**first_environment(tenant))
    sandbox = tenant.sandbox
    deployer = reader(sandbox, f"/subscriptions/{sandbox.subscription_id}")
    read_only = AzureDeploymentReader(sandbox.credential(deployer), arm_endpoint=sandbox.endpoints["arm"],
                                      graph_endpoint=sandbox.endpoints["graph"], connection_verify=sandbox.ca_path)
    deployment = Deployment.from_environment(os.environ)
    facts_read = preflight.gather(deployment, read_only)
    (other,) = facts_read.remediators
    assert other.settings is None and "AuthorizationFailed" in other.unreadable
    report = preflight.run(deployment, facts_read)
    assert "RemediatorScopeUnreadable" in codes(report, Status.FAILED)


def test_outside_the_public_cloud_an_explicit_graph_module_is_refused(tenant: Tenant):
    assert Wire(tenant.sandbox).admin("cloud", {"name": "AzureUSGovernment"}).status_code == 200
    tenant.env.setenv("GRANT_GRAPH_PERMISSION", "true")
    status, report = tenant.preflight("--cloud", "AzureUSGovernment")
    assert status == 1 and "GraphExtensionUnsupported" in findings(report, "failed")
    tenant.env.setenv("GRANT_GRAPH_PERMISSION", "")
    tenant.env.setenv("REMEDIATOR_EXISTING_API_CLIENT_ID", tenant.sandbox.api_client_id)
    status, report = tenant.preflight("--cloud", "AzureUSGovernment")
    assert status == 0 and "GraphModulesOff" in findings(report, "warning")


def test_a_region_without_flex_consumption_is_refused(tenant: Tenant):
    assert Wire(tenant.sandbox).admin("flexregions", {"regions": ["Sweden Central"]}).status_code == 200
    status, report = tenant.preflight()
    assert status == 1 and findings(report, "failed") == ["FlexUnavailable"]


def test_a_deployer_without_the_entra_roles_is_told_which_and_how_to_do_without(tenant: Tenant):
    operator = tenant.sandbox.operator.client_id
    taken = Wire(tenant.sandbox).http.patch(
        f"{tenant.sandbox.endpoints['admin']}/_sandbox/applications/{operator}",
        json={"directoryRoles": [], "graphPermissions": ["Application.ReadWrite.All"]})
    assert taken.status_code == 200, taken.text
    status, report = tenant.preflight()
    assert status == 1 and findings(report, "failed") == ["MissingEntraRole", "MissingEntraRole"]
    messages = " ".join(f["message"] for f in report["findings"] if f["code"] == "MissingEntraRole")
    assert "Privileged Role Administrator" in messages and "it holds Application.ReadWrite.All" in messages
    for name, value in (("GRANT_GRAPH_PERMISSION", "false"), ("REMEDIATOR_CREATE_API_APP", "false"),
                        ("REMEDIATOR_EXISTING_API_CLIENT_ID", tenant.sandbox.api_client_id)):
        tenant.env.setenv(name, value)
    assert tenant.preflight()[0] == 0


def test_assignable_roles_are_looked_up_in_the_tenant(tenant: Tenant):
    unknown = "99999999-9999-4999-8999-999999999999"
    tenant.env.setenv("REMEDIATOR_ASSIGNABLE_ROLE_IDS", f"{NETWORK}, {OWNER},{unknown},")
    status, report = tenant.preflight()
    assert status == 1 and findings(report, "failed") == ["RoleTooBroad", "RoleDefinitionNotFound"]
