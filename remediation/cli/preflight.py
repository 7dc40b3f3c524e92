"""`python -m remediation preflight`: what would make `azd up` fail late, or deploy more power than intended, checked
in seconds with the deployer's own sign-in, before anything is created (azure.yaml's preprovision hook runs it).

The deployment is read from the environment the way infra/main.bicepparam reads it (`Deployment.from_environment`:
the azd environment's values, which azd hands its hooks as environment variables). What Azure says is gathered once
through a `DeploymentReader` (remediation/adapters/deployment.py) into `Facts`; the checks are pure functions of the
two, in order, each returning `Finding`s with a reason code, a message and what to do:

1. `cloud`: the Microsoft Graph Bicep extension exists in the public cloud only (Microsoft Learn, Microsoft Graph
   Bicep "known issues"): elsewhere the Graph modules are off by default, an explicit 'true' is refused, and the
   manual steps are printed. Without the API application module, its client id must be given.
2. `region`: the region offers Flex Consumption (`az functionapp list-flexconsumption-locations`' source).
3. `entra-roles`: the deployer holds the Entra roles (a user) or Microsoft Graph application permissions (a service
   principal) the Graph modules need; else which is missing, and how to deploy with them off.
4. `other-remediators`: no other remediator acts on the same clusters. Two environments in one subscription both
   receive every failure, both sweep, both rotate, each under its own lock: one application gets two secrets and a
   cluster two resets. Refused unless their scopes are disjoint or this one is observe-only. The others are found
   from what the template leaves in Azure (the subscription's system topic's event subscriptions to an
   `on_resource_failure` function; the function app's REMEDIATOR_TAG), never from local files, and their scope is
   read from their app settings.
5. `assignable-roles`: REMEDIATOR_ASSIGNABLE_ROLE_IDS are GUIDs of existing role definitions that cannot write role
   assignments themselves (a replacement given one could grant anything).

A fact that could not be read is a warning, not a pass, except where it hides a conflict: a remediator whose settings
cannot be read is assumed to overlap. Exit status, as the Azure CLI's: 0 nothing failed (warnings allowed), 1 a check
failed or the checks could not run (no sign-in), 2 a usage error (the options, or the deployment's environment); the
CLI (remediation/cli/commands.py) renders it, as a table or in any of az's output formats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum

from remediation.decide.guardrails import ANY, Mode, Replacement, Scope, names
from remediation.errors import AuthenticationUnavailableError, InvalidInputError, RemediationError
from remediation.model import DeployedRemediator, Deployer, RoleDefinition
from remediation.ports import DeploymentReader

PUBLIC_CLOUD = "AzureCloud"
# On the function app only (infra/main.bicep remediatorTag): marks a deployed remediator, valued its environment.
# The Event Grid trigger every remediator's event subscription delivers to (function_app.py).
# infra/main.bicep's assignableRoleIds default: Network Contributor, AcrPull, Private DNS Zone Contributor.
DEFAULT_ASSIGNABLE_ROLE_IDS = ("4d97b98b-1d4f-4787-a291-c67834d212e7", "7f951dda-4ed3-4680-a7ca-43fe172d538d",
                               "b12aa53e-6015-4669-85d0-8515ebb3ae7f")

# Entra built-in roles by template id (Microsoft Entra built-in roles reference).
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
APPLICATION_ADMINISTRATOR = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
CLOUD_APPLICATION_ADMINISTRATOR = "158c047a-c907-4556-b7ef-446551a6b5f7"
ENTRA_ROLE_NAMES = {GLOBAL_ADMINISTRATOR: "Global Administrator",
                    PRIVILEGED_ROLE_ADMINISTRATOR: "Privileged Role Administrator",
                    APPLICATION_ADMINISTRATOR: "Application Administrator",
                    CLOUD_APPLICATION_ADMINISTRATOR: "Cloud Application Administrator"}
# Microsoft Graph application permissions by app role id (Microsoft Graph permissions reference).
APP_ROLE_ASSIGNMENT_READWRITE_ALL = "06b708a9-e830-4db3-a914-8e69da51d44f"
APPLICATION_READWRITE_ALL = "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"
APPLICATION_READWRITE_OWNEDBY = "18a4783c-866b-4cc7-a460-3d5e5662c884"
GRAPH_PERMISSION_NAMES = {APP_ROLE_ASSIGNMENT_READWRITE_ALL: "AppRoleAssignment.ReadWrite.All",
                          APPLICATION_READWRITE_ALL: "Application.ReadWrite.All",
                          APPLICATION_READWRITE_OWNEDBY: "Application.ReadWrite.OwnedBy"}
# What each Graph module needs, as any one of these sets of Entra roles (a user, or a service principal holding a
# directory role), or all of one set of Graph permissions (a service principal). Granting a Microsoft Graph app role
# needs Privileged Role Administrator (Cloud and Application Administrators may grant any app role except Microsoft
# Graph's: "Grant tenant-wide admin consent to an application"); creating an application, its service principal and
# the assignments of its own app roles needs Application or Cloud Application Administrator.
GRANT_ROLES = frozenset({GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR})
GRANT_PERMISSIONS = (frozenset({APP_ROLE_ASSIGNMENT_READWRITE_ALL}),)
CREATE_ROLES = frozenset({GLOBAL_ADMINISTRATOR, APPLICATION_ADMINISTRATOR, CLOUD_APPLICATION_ADMINISTRATOR})
CREATE_PERMISSIONS = (frozenset({APPLICATION_READWRITE_ALL, APP_ROLE_ASSIGNMENT_READWRITE_ALL}),
                      frozenset({APPLICATION_READWRITE_OWNEDBY, APP_ROLE_ASSIGNMENT_READWRITE_ALL}))
MANUAL_GRAPH_STEPS = "infra/README.md, \"When the Graph Bicep extension cannot be used\""
MANUAL_API_STEPS = "infra/README.md, \"When the API application cannot be created with Bicep\""
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    code: str
    message: str
    fix: str = ""

    def view(self) -> dict[str, str]:
        return {"check": self.check, "status": str(self.status), "code": self.code, "message": self.message,
                "fix": self.fix}


# ------------------------------------------------------------------------------------------ what is deployed


@dataclass(frozen=True)
class Deployment:
    """What `azd up` would deploy, as infra/main.bicepparam reads it from the azd environment."""

    environment_name: str
    location: str
    subscription_id: str
    resource_group: str
    extra_subscription_ids: tuple[str, ...] = ()
    mode: Mode = Mode.REMEDIATE
    deny_subscription_ids: frozenset[str] = frozenset()
    allow_resource_groups: frozenset[str] = frozenset()
    deny_resource_groups: frozenset[str] = frozenset()
    grant_graph_permission: str = ""  # '', 'true' or 'false' (main.bicep's grantGraphPermission)
    create_api_application: str = ""  # '', 'true' or 'false' (main.bicep's createApiApplication)
    existing_api_client_id: str = ""
    replace_deleted: Replacement = Replacement.PLAN
    assignable_role_ids: str = ",".join(DEFAULT_ASSIGNABLE_ROLE_IDS)  # as given: checked by `assignable-roles`
    cloud: str = PUBLIC_CLOUD  # the cloud azd deploys to (azd config cloud.name), until ARM says otherwise

    @classmethod
    def from_environment(cls, env: Mapping[str, str], *, cloud: str | None = None) -> Deployment:
        """Read the deployment; InvalidInputError naming what is missing or malformed."""
        def get(name: str, default: str = "") -> str:
            return (env.get(name) or default).strip()

        missing = [n for n in ("AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_SUBSCRIPTION_ID") if not get(n)]
        if missing:
            raise InvalidInputError(f"missing {', '.join(missing)}: run inside `azd` (a hook, or `azd env get-values`"
                                    " exported), or export them", code="MissingDeployment")
        subscription = get("AZURE_SUBSCRIPTION_ID").lower()
        extras = tuple(s for s in names(get("REMEDIATOR_EXTRA_SUBSCRIPTION_IDS")) if s != subscription)
        for sub in (subscription, *extras):
            if not _GUID.match(sub):
                raise InvalidInputError(f"{sub!r} is not a subscription id", code="InvalidSubscriptionId")
        for name in ("GRANT_GRAPH_PERMISSION", "REMEDIATOR_CREATE_API_APP"):
            if get(name).lower() not in ("", "true", "false"):
                raise InvalidInputError(f"{name} is true, false or unset; got {get(name)!r}", code="InvalidOption")
        try:
            mode, replace = Mode(get("REMEDIATOR_MODE", "remediate")), Replacement(
                get("REMEDIATOR_REPLACE_DELETED", "plan"))
        except ValueError as err:
            raise InvalidInputError(str(err), code="InvalidOption") from err
        return cls(
            environment_name=get("AZURE_ENV_NAME"), location=get("AZURE_LOCATION"), subscription_id=subscription,
            resource_group=get("AZURE_RESOURCE_GROUP") or f"rg-{get('AZURE_ENV_NAME')}",
            extra_subscription_ids=tuple(sorted(extras)), mode=mode,
            deny_subscription_ids=names(get("REMEDIATOR_DENY_SUBSCRIPTION_IDS")),
            allow_resource_groups=names(get("REMEDIATOR_ALLOW_RESOURCE_GROUPS")),
            deny_resource_groups=names(get("REMEDIATOR_DENY_RESOURCE_GROUPS")),
            grant_graph_permission=get("GRANT_GRAPH_PERMISSION").lower(),
            create_api_application=get("REMEDIATOR_CREATE_API_APP").lower(),
            existing_api_client_id=get("REMEDIATOR_EXISTING_API_CLIENT_ID"), replace_deleted=replace,
            assignable_role_ids=env.get("REMEDIATOR_ASSIGNABLE_ROLE_IDS") or ",".join(DEFAULT_ASSIGNABLE_ROLE_IDS),
            cloud=(cloud or PUBLIC_CLOUD).strip().strip('"') or PUBLIC_CLOUD)

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return (self.subscription_id, *self.extra_subscription_ids)

    @property
    def scope(self) -> Scope:
        return Scope(subscriptions=frozenset(self.subscriptions), deny_subscriptions=self.deny_subscription_ids,
                     resource_groups=self.allow_resource_groups, deny_resource_groups=self.deny_resource_groups)

    def graph_modules(self, cloud: str) -> tuple[bool, bool]:
        """(grant the Graph permissions, create the API application) as main.bicep decides them in `cloud`."""
        def on(given: str) -> bool:
            return cloud == PUBLIC_CLOUD if not given else given == "true"
        return on(self.grant_graph_permission), on(self.create_api_application)

    def assignable_roles(self) -> tuple[list[str], list[str]]:
        """(GUIDs, entries that are not GUIDs), trimmed and lower-cased, empty entries dropped (as main.bicep)."""
        entries = [e.strip().lower() for e in self.assignable_role_ids.split(",") if e.strip()]
        return [e for e in entries if _GUID.match(e)], [e for e in entries if not _GUID.match(e)]


# ------------------------------------------------------------------------------------------ what Azure says


@dataclass(frozen=True)
class Facts:
    cloud: str | None = None
    flex_regions: frozenset[str] | None = None  # normalized names ("westeurope"); None: unknown
    deployer: Deployer | None = None
    remediators: tuple[DeployedRemediator, ...] = ()
    role_definitions: Mapping[str, RoleDefinition | None] = field(default_factory=dict)  # None: does not exist
    unknown: Mapping[str, str] = field(default_factory=dict)  # fact -> why it could not be read


def scope_of(remediator: DeployedRemediator) -> Scope:
    """Where another remediator acts, from its app settings."""
    settings = remediator.settings or {}
    return Scope(subscriptions=names(settings.get("REMEDIATOR_SUBSCRIPTION_IDS", "")),
                 deny_subscriptions=names(settings.get("REMEDIATOR_DENY_SUBSCRIPTION_IDS", "")),
                 resource_groups=names(settings.get("REMEDIATOR_ALLOW_RESOURCE_GROUPS", "")),
                 deny_resource_groups=names(settings.get("REMEDIATOR_DENY_RESOURCE_GROUPS", "")))


def _observes(remediator: DeployedRemediator) -> bool:
    return (remediator.settings or {}).get("REMEDIATOR_MODE", "remediate").strip().lower() == Mode.OBSERVE


def region_name(name: str) -> str:
    """A region as ARM's `location` spells it: "West Europe" and "westeurope" are the same region."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def gather(deployment: Deployment, reader: DeploymentReader) -> Facts:
    """Every fact the checks need, read side by side (they are independent, and each is a few round trips); a read
    that fails leaves its fact unknown, with why. A sign-in that fails is raised (AuthenticationUnavailableError):
    with nothing readable, the preflight has not run."""
    unknown: dict[str, str] = {}
    role_ids = deployment.assignable_roles()[0]

    def read(fact: str, call: Callable[[], object]) -> object:
        try:
            return call()
        except AuthenticationUnavailableError:
            raise
        except RemediationError as err:
            unknown[fact] = str(err)
            return None

    def remediators() -> tuple[DeployedRemediator, ...]:
        found = read("other-remediators", lambda: reader.list_remediators(deployment.subscriptions)) or []
        return tuple(_with_settings(r, reader) for r in found if not _is_this_deployment(r, deployment))

    reads: dict[str, Callable[[], object]] = {
        "cloud": lambda: read("cloud", reader.get_cloud_name),
        "region": lambda: read("region", lambda: reader.list_flex_regions(deployment.subscription_id)),
        "deployer": lambda: read("entra-roles", reader.get_deployer),
        "remediators": remediators,
        **{f"role {r}": (lambda r=r: read(f"role {r}", lambda: reader.get_role_definition(
            deployment.subscription_id, r))) for r in role_ids}}
    with ThreadPoolExecutor(max_workers=len(reads)) as pool:
        futures = {name: pool.submit(call) for name, call in reads.items()}
        got = {name: future.result() for name, future in futures.items()}
    cloud, regions, deployer = got["cloud"], got["region"], got["deployer"]
    return Facts(cloud=cloud if isinstance(cloud, str) else None,
                 flex_regions=frozenset(region_name(r) for r in regions) if isinstance(regions, list) else None,
                 deployer=deployer if isinstance(deployer, Deployer) else None,
                 remediators=got["remediators"],  # type: ignore[arg-type]
                 role_definitions={r: got[f"role {r}"] for r in role_ids  # type: ignore[misc]
                                   if f"role {r}" not in unknown},
                 unknown=unknown)


def _is_this_deployment(remediator: DeployedRemediator, deployment: Deployment) -> bool:
    """This environment's own function app, from an earlier `azd up`: in its subscription and resource group, and
    tagged with its environment when the tag could be read."""
    return (remediator.subscription_id.lower() == deployment.subscription_id
            and remediator.resource_group.lower() == deployment.resource_group.lower()
            and remediator.environment in ("", deployment.environment_name))


def _with_settings(remediator: DeployedRemediator, reader: DeploymentReader) -> DeployedRemediator:
    try:
        return replace(remediator, settings=reader.list_app_settings(remediator.site_id), unreadable="")
    except AuthenticationUnavailableError:
        raise
    except RemediationError as err:
        return replace(remediator, settings=None, unreadable=str(err))


# ------------------------------------------------------------------------------------------ the checks

Check = Callable[[Deployment, Facts], list[Finding]]


def check_cloud(deployment: Deployment, facts: Facts) -> list[Finding]:
    cloud = facts.cloud or deployment.cloud
    grant, create = deployment.graph_modules(cloud)
    found: list[Finding] = []
    if facts.cloud and facts.cloud != deployment.cloud:
        found.append(Finding("cloud", Status.WARNING, "CloudMismatch", (
            f"ARM says this is {facts.cloud}, the deployment was told {deployment.cloud}: checking for {cloud}"),
            "azd config set cloud.name " + cloud))
    if cloud != PUBLIC_CLOUD and "true" in (deployment.grant_graph_permission, deployment.create_api_application):
        found.append(Finding("cloud", Status.FAILED, "GraphExtensionUnsupported", (
            f"The Microsoft Graph Bicep extension is supported only in the public cloud, and this is {cloud}: "
            "GRANT_GRAPH_PERMISSION or REMEDIATOR_CREATE_API_APP is 'true'."),
            "azd env set GRANT_GRAPH_PERMISSION false; azd env set REMEDIATOR_CREATE_API_APP false; then do those "
            f"steps by hand: {MANUAL_GRAPH_STEPS} and {MANUAL_API_STEPS}"))
    elif cloud != PUBLIC_CLOUD:
        found.append(Finding("cloud", Status.WARNING, "GraphModulesOff", (
            f"{cloud}: the Microsoft Graph Bicep extension is supported only in the public cloud, so the template "
            "grants the identity no Graph permission and creates no API application."),
            f"After `azd up`, grant the permissions by hand ({MANUAL_GRAPH_STEPS}); create the API application "
            f"before it ({MANUAL_API_STEPS})."))
    if not create and not deployment.existing_api_client_id:
        found.append(Finding("cloud", Status.FAILED, "ApiApplicationMissing", (
            "The API application will not be created by the template and REMEDIATOR_EXISTING_API_CLIENT_ID is "
            "empty: the HTTP API would accept no token."),
            f"Create it ({MANUAL_API_STEPS}) and azd env set REMEDIATOR_EXISTING_API_CLIENT_ID <client id>"))
    if not found:
        found.append(Finding("cloud", Status.OK, "PublicCloud", f"{cloud}: the Microsoft Graph Bicep extension is "
                             "available" + ("" if grant or create else " (both Graph modules are off)")))
    return found


def check_region(deployment: Deployment, facts: Facts) -> list[Finding]:
    if facts.flex_regions is None:
        return [Finding("region", Status.WARNING, "FlexRegionsUnknown", (
            f"Could not tell whether {deployment.location} offers Flex Consumption: "
            f"{facts.unknown.get('region', 'no answer')}"), "az functionapp list-flexconsumption-locations")]
    if region_name(deployment.location) not in facts.flex_regions:
        offered = ", ".join(sorted(facts.flex_regions)[:12])
        return [Finding("region", Status.FAILED, "FlexUnavailable", (
            f"{deployment.location} does not offer Flex Consumption in this subscription; regions that do include "
            f"{offered}"), "azd env set AZURE_LOCATION <one of them>")]
    return [Finding("region", Status.OK, "FlexAvailable", f"{deployment.location} offers Flex Consumption")]


def check_entra_roles(deployment: Deployment, facts: Facts) -> list[Finding]:
    grant, create = deployment.graph_modules(facts.cloud or deployment.cloud)
    if not grant and not create:
        return [Finding("entra-roles", Status.OK, "GraphModulesOff", "Both Graph modules are off: no Entra role "
                        "needed to deploy")]
    deployer = facts.deployer
    if deployer is None:
        return [Finding("entra-roles", Status.WARNING, "EntraRolesUnknown", (
            "Could not read the deployer's Entra roles: "
            f"{facts.unknown.get('entra-roles', 'no answer')}"), "")]
    found = []
    for on, what, roles, permissions, setting, steps in (
            (grant, "grant the identity its Microsoft Graph permissions", GRANT_ROLES, GRANT_PERMISSIONS,
             "GRANT_GRAPH_PERMISSION", MANUAL_GRAPH_STEPS),
            (create, "create the API application and assign its roles", CREATE_ROLES, CREATE_PERMISSIONS,
             "REMEDIATOR_CREATE_API_APP", MANUAL_API_STEPS)):
        if not on:
            continue
        if deployer.directory_roles & roles or any(p <= deployer.graph_permissions for p in permissions):
            continue
        needed = " or ".join(ENTRA_ROLE_NAMES[r] for r in sorted(roles, key=ENTRA_ROLE_NAMES.__getitem__))
        needed += " (an active assignment)"
        if deployer.kind == "servicePrincipal":
            needed += ", or the Microsoft Graph application permissions " + " or ".join(
                " + ".join(sorted(GRAPH_PERMISSION_NAMES[p] for p in s)) for s in permissions)
        held = sorted(ENTRA_ROLE_NAMES.get(r, r) for r in deployer.directory_roles) + sorted(
            GRAPH_PERMISSION_NAMES.get(p, p) for p in deployer.graph_permissions)
        found.append(Finding("entra-roles", Status.FAILED, "MissingEntraRole", (
            f"To {what}, the deployer ({deployer.kind} {deployer.object_id}) needs {needed}; it holds "
            f"{', '.join(held) or 'none of them'}."),
            f"Activate the role (Privileged Identity Management), or azd env set {setting} false and do it by hand: "
            f"{steps}"))
    return found or [Finding("entra-roles", Status.OK, "EntraRolesHeld", "The deployer may run the Graph modules")]


def check_other_remediators(deployment: Deployment, facts: Facts) -> list[Finding]:
    if "other-remediators" in facts.unknown:
        return [Finding("other-remediators", Status.WARNING, "RemediatorsUnknown", (
            f"Could not look for other remediators: {facts.unknown['other-remediators']}"), "")]
    found: list[Finding] = []
    mine = deployment.scope
    for other in facts.remediators:
        where = f"{other.name} (resource group {other.resource_group}, subscription {other.subscription_id})"
        if other.settings is None:
            status = Status.WARNING if deployment.mode == Mode.OBSERVE else Status.FAILED
            found.append(Finding("other-remediators", status, "RemediatorScopeUnreadable", (
                f"Another remediator, {where}, receives this subscription's cluster failures, and its scope could "
                f"not be read: {other.unreadable}"),
                "Ask for read access to its settings (Microsoft.Web/sites/config/list/action, e.g. Website "
                "Contributor), or azd env set REMEDIATOR_MODE observe"))
            continue
        place = mine.overlap(scope_of(other))
        if place is None:
            found.append(Finding("other-remediators", Status.OK, "DisjointScopes",
                                 f"{where} acts on other clusters (the scopes are disjoint)"))
        elif deployment.mode == Mode.OBSERVE or _observes(other):
            who = "this environment is" if deployment.mode == Mode.OBSERVE else "it is"
            found.append(Finding("other-remediators", Status.OK, "OtherObserves",
                                 f"{where} shares clusters with this environment, but {who} observe-only"))
        else:
            sub, group = place
            found.append(Finding("other-remediators", Status.FAILED, "OverlappingRemediator", (
                f"Another remediator, {where}, acts on the same clusters (for example "
                f"{'any subscription' if sub == ANY else 'subscription ' + sub}, "
                f"{'any resource group' if group == ANY else 'resource group ' + group}): both would rotate one "
                "application's secret and reset one cluster twice."),
                "Make the scopes disjoint (REMEDIATOR_ALLOW_RESOURCE_GROUPS / REMEDIATOR_DENY_RESOURCE_GROUPS here "
                "or there), or azd env set REMEDIATOR_MODE observe"))
    return found or [Finding("other-remediators", Status.OK, "NoOtherRemediator",
                             "No other remediator acts on these subscriptions")]


def check_assignable_roles(deployment: Deployment, facts: Facts) -> list[Finding]:
    guids, invalid = deployment.assignable_roles()
    found = [Finding("assignable-roles", Status.FAILED, "InvalidRoleId", (
        f"REMEDIATOR_ASSIGNABLE_ROLE_IDS holds {entry!r}, which is not a role definition GUID"),
        "Give role definition GUIDs, comma-separated (az role definition list --name '<role>' --query [].name)")
        for entry in invalid]
    if not guids:
        found.append(Finding("assignable-roles", Status.FAILED, "NoAssignableRoles",
                             "REMEDIATOR_ASSIGNABLE_ROLE_IDS names no role", "Unset it for the defaults"))
    for role_id in guids:
        if role_id not in facts.role_definitions:
            found.append(Finding("assignable-roles", Status.WARNING, "RoleUnknown", (
                f"Could not read role definition {role_id}: {facts.unknown.get(f'role {role_id}', 'no answer')}")))
            continue
        definition = facts.role_definitions[role_id]
        if definition is None:
            found.append(Finding("assignable-roles", Status.FAILED, "RoleDefinitionNotFound", (
                f"REMEDIATOR_ASSIGNABLE_ROLE_IDS names {role_id}, which is no role definition"),
                "Remove it, or give the GUID of an existing role"))
        elif definition.writes_role_assignments():
            found.append(Finding("assignable-roles", Status.FAILED, "RoleTooBroad", (
                f"{definition.name} ({role_id}) can write role assignments: a replacement given it could grant "
                "itself, or anyone, any role"), "Remove it from REMEDIATOR_ASSIGNABLE_ROLE_IDS"))
    if not found:
        listed = ", ".join(d.name for d in facts.role_definitions.values() if d is not None)
        found.append(Finding("assignable-roles", Status.OK, "RolesValid", f"A replacement may be given: {listed}"))
    return found


CHECKS: tuple[Check, ...] = (check_cloud, check_region, check_entra_roles, check_other_remediators,
                             check_assignable_roles)


@dataclass(frozen=True)
class Report:
    deployment: Deployment
    findings: tuple[Finding, ...]

    @property
    def failed(self) -> bool:
        return any(f.status == Status.FAILED for f in self.findings)

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0

    def view(self) -> dict[str, object]:
        return {"environment": self.deployment.environment_name, "subscriptionIds": list(self.deployment.subscriptions),
                "location": self.deployment.location, "passed": not self.failed,
                "findings": [f.view() for f in self.findings]}


def run(deployment: Deployment, facts: Facts, checks: Iterable[Check] = CHECKS) -> Report:
    return Report(deployment, tuple(finding for check in checks for finding in check(deployment, facts)))


def render(report: Report) -> str:
    """The report as lines for a terminal: one per finding, its fix indented under it, a verdict last."""
    marks = {Status.OK: "ok  ", Status.WARNING: "warn", Status.FAILED: "FAIL"}
    lines = [f"Preflight of environment {report.deployment.environment_name} in {report.deployment.location} "
             f"(subscription {', '.join(report.deployment.subscriptions)}):"]
    for finding in report.findings:
        lines.append(f"  {marks[finding.status]} {finding.check}: {finding.message} [{finding.code}]")
        if finding.fix and finding.status != Status.OK:
            lines.append(f"         fix: {finding.fix}")
    failed = sum(1 for f in report.findings if f.status == Status.FAILED)
    lines.append(f"{failed} check(s) failed: nothing was deployed." if failed else "Ready to deploy.")
    return "\n".join(lines) + "\n"


