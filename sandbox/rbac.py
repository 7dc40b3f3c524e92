"""Azure RBAC as the sandbox knows it: the built-in role definitions it serves, and the one kind of ABAC condition it
evaluates, Microsoft's documented template for constraining a Role Based Access Control Administrator's delegation.

The template (azure-docs `role-based-access-control/delegate-role-assignments-examples.md`, "Example: Constrain
roles"; the PrincipalType clause from `delegate-role-assignments-overview.md`, reference pair
`tests/reference/authorization_RoleAssignments_Create_RBACAdminConstrainedDelegation_docs.json`):

    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR
     (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {g1, g2}
      [AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType]
           ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}]
      [AND @Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAllValues:GuidNotEquals {p1, p2}]))
    AND
    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR
     (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {g1, g2}
      [AND @Resource[...:PrincipalType] ...] [AND @Resource[...:PrincipalId] ...]))

A write is checked against the request (`@Request`), a delete against the assignment being deleted (`@Resource`).
Each branch tests RoleDefinitionId first; the PrincipalType and PrincipalId clauses follow in either order, each at
most once, joined by ` AND `. A condition that tests PrincipalType fails a request that names no principalType
(terraform-provider-azurerm PR #25175). The PrincipalId clause excludes principals: "Authorization actions and
attributes" (learn.microsoft.com/azure/role-based-access-control/conditions-authorization-actions-attributes,
"Principal ID": attribute `Microsoft.Authorization/roleAssignments:PrincipalId`, sources Request and Resource, type
GUID, operators GuidEquals, GuidNotEquals, ForAnyOfAnyValues:GuidEquals, ForAnyOfAllValues:GuidNotEquals), and
"Conditions format" (ForAnyOfAllValues: true when every value on the left satisfies the comparison with every value
on the right; a role assignment has one principal, so its principal is none of the set). Anything else is not
parsed: `ValueError`, so a condition the sandbox cannot evaluate is never ignored.

The built-in role definitions (`BUILT_IN_ROLE_DEFINITIONS`): names, GUIDs, descriptions, Actions and NotActions as
the built-in roles reference lists them (MicrosoftDocs/azure-docs, articles/role-based-access-control/built-in-roles/
general.md, privileged.md, networking.md, containers.md, storage.md, identity.md; each GUID also checked against
public templates that assign it). None of them has DataActions.

Pure functions: no state, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class RoleDefinition:
    """A built-in role definition: what GET roleDefinitions/{guid} serves."""

    name: str
    guid: str
    description: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()


WRITE_ACTION = "Microsoft.Authorization/roleAssignments/write"
DELETE_ACTION = "Microsoft.Authorization/roleAssignments/delete"
_READ_ROLES_AND_ALERTS = ("Microsoft.Authorization/*/read", "Microsoft.Insights/alertRules/*")
BUILT_IN_ROLE_DEFINITIONS = {d.guid: d for d in (
    RoleDefinition("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c",
                   "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, "
                   "manage assignments in Azure Blueprints, or share image galleries.", ("*",), (
                       "Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
                       "Microsoft.Authorization/elevateAccess/Action", "Microsoft.Blueprint/blueprintAssignments/write",
                       "Microsoft.Blueprint/blueprintAssignments/delete", "Microsoft.Compute/galleries/share/action",
                       "Microsoft.Purview/consents/write", "Microsoft.Purview/consents/delete",
                       "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                       "Microsoft.Subscription/cancel/action", "Microsoft.Subscription/enable/action")),
    RoleDefinition("Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                   "View all resources, but does not allow you to make any changes.", ("*/read",)),
    RoleDefinition("Network Contributor", "4d97b98b-1d4f-4787-a291-c67834d212e7",
                   "Lets you manage networks, but not access to them.", (
                       *_READ_ROLES_AND_ALERTS, "Microsoft.Network/*",
                       "Microsoft.ResourceHealth/availabilityStatuses/read", "Microsoft.Resources/deployments/*",
                       "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.Support/*")),
    RoleDefinition("AcrPull", "7f951dda-4ed3-4680-a7ca-43fe172d538d", "acr pull",
                   ("Microsoft.ContainerRegistry/registries/pull/read",)),
    RoleDefinition("Private DNS Zone Contributor", "b12aa53e-6015-4669-85d0-8515ebb3ae7f",
                   "Lets you manage private DNS zone resources, but not the virtual networks they are linked to.", (
                       "Microsoft.Insights/alertRules/*", "Microsoft.Resources/deployments/*",
                       "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.Support/*",
                       "Microsoft.Network/privateDnsZones/*", "Microsoft.Network/privateDnsOperationResults/*",
                       "Microsoft.Network/privateDnsOperationStatuses/*", "Microsoft.Network/virtualNetworks/read",
                       "Microsoft.Network/virtualNetworks/join/action", "Microsoft.Authorization/*/read")),
    RoleDefinition("Storage Account Contributor", "17d1049b-9a84-46fb-8f53-869881c3d3ab",
                   "Lets you manage storage accounts, including accessing storage account keys which provide full "
                   "access to storage account data.", (
                       *_READ_ROLES_AND_ALERTS, "Microsoft.Insights/diagnosticSettings/*",
                       "Microsoft.Network/virtualNetworks/subnets/joinViaServiceEndpoint/action",
                       "Microsoft.ResourceHealth/availabilityStatuses/read", "Microsoft.Resources/deployments/*",
                       "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.Storage/storageAccounts/*",
                       "Microsoft.Support/*")),
    RoleDefinition("Managed Identity Operator", "f1a07417-d97a-45cb-824c-7a7467783830",
                   "Read and Assign User Assigned Identity", (
                       "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
                       "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
                       *_READ_ROLES_AND_ALERTS, "Microsoft.Resources/subscriptions/resourceGroups/read",
                       "Microsoft.Resources/deployments/*", "Microsoft.Support/*")),
    RoleDefinition("Role Based Access Control Administrator", "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
                   "Manage access to Azure resources by assigning roles using Azure RBAC. This role does not allow you "
                   "to manage access using other ways, such as Azure Policy.", (
                       WRITE_ACTION, DELETE_ACTION, "*/read", "Microsoft.Support/*")),
    RoleDefinition("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
                   "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
                   ("*",)),
    RoleDefinition("User Access Administrator", "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
                   "Lets you manage user access to Azure resources.",
                   ("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*")),
)}
# Built-in role definitions, name -> GUID.
BUILT_IN_ROLES = {d.name: d.guid for d in BUILT_IN_ROLE_DEFINITIONS.values()}
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def is_guid(text: str) -> bool:
    return bool(_GUID.match(text))


def role_definition_guid(role: str) -> str | None:
    """The GUID of a built-in role given by name (case-insensitive), GUID or role definition id; None if unknown."""
    text = role.strip().rstrip("/").split("/")[-1]
    if is_guid(text):
        return text.lower() if text.lower() in BUILT_IN_ROLE_DEFINITIONS else None
    return next((guid for name, guid in BUILT_IN_ROLES.items() if name.lower() == role.strip().lower()), None)


def role_name(guid: str) -> str | None:
    found = BUILT_IN_ROLE_DEFINITIONS.get(guid.lower())
    return found.name if found else None


@dataclass(frozen=True)
class Branch:
    """One half of the template: the roles (and, if tested, principal types) an action is allowed for, and the
    principals it is never allowed for."""

    role_ids: frozenset[str]
    principal_types: frozenset[str] | None  # None: not tested
    excluded_principals: frozenset[str] = frozenset()  # lower-case GUIDs; empty: not tested

    def allows(self, role_id: str, principal_type: str | None, principal_id: str) -> bool:
        if role_id.lower() not in self.role_ids or principal_id.lower() in self.excluded_principals:
            return False
        return self.principal_types is None or (principal_type or "").lower() in self.principal_types


@dataclass(frozen=True)
class DelegationCondition:
    write: Branch
    delete: Branch

    def allows_write(self, role_id: str, principal_type: str | None, principal_id: str) -> bool:
        """@Request: the role, principalType and principalId the PUT asks for."""
        return self.write.allows(role_id, principal_type, principal_id)

    def allows_delete(self, role_id: str, principal_type: str | None, principal_id: str) -> bool:
        """@Resource: the role, principal type and principal of the assignment being deleted."""
        return self.delete.allows(role_id, principal_type, principal_id)


_BRANCH = (r"\(\(!\(ActionMatches\{'Microsoft\.Authorization/roleAssignments/(?P<KEYaction>write|delete)'\}\)\) OR "
           r"\((?P<KEYclauses>[^()]*)\)\)")
_TEMPLATE = re.compile("^" + _BRANCH.replace("KEY", "a") + " AND " + _BRANCH.replace("KEY", "b") + "$", re.IGNORECASE)
_CLAUSE = re.compile(r"^@(?P<source>Request|Resource)\[Microsoft\.Authorization/roleAssignments:"
                     r"(?P<attribute>RoleDefinitionId|PrincipalType|PrincipalId)\] "
                     r"(?P<operator>ForAnyOf(?:Any|All)Values:\w+) \{(?P<values>[^{}]*)\}$", re.IGNORECASE)
# The one operator the sandbox evaluates for each attribute (lower case).
_OPERATORS = {"roledefinitionid": "foranyofanyvalues:guidequals",
              "principaltype": "foranyofanyvalues:stringequalsignorecase",
              "principalid": "foranyofallvalues:guidnotequals"}


def parse_condition(condition: str) -> DelegationCondition:
    """The documented constrained-delegation condition, parsed; ValueError for anything else."""
    text = _normalized(condition)
    match = _TEMPLATE.match(text)
    if not match:
        raise ValueError("not the documented role-assignment delegation condition: expected ((!(ActionMatches{"
                         "'.../write'})) OR (...)) AND ((!(ActionMatches{'.../delete'})) OR (...))")
    branches: dict[str, Branch] = {}
    for key in ("a", "b"):
        action = match.group(f"{key}action").lower()
        if action in branches:
            raise ValueError(f"the condition constrains {action} twice and the other action not at all")
        branches[action] = _branch(match.group(f"{key}clauses"), "request" if action == "write" else "resource")
    return DelegationCondition(write=branches["write"], delete=branches["delete"])


def allowed_role_ids(condition: str) -> frozenset[str]:
    """The role definition GUIDs (lower case) a holder of `condition` may assign; ValueError if it cannot be parsed."""
    return parse_condition(condition).write.role_ids


def condition_excluded_principals(condition: str) -> frozenset[str]:
    """The principal object ids (lower case) a holder of `condition` may never assign a role to; ValueError if it
    cannot be parsed."""
    return parse_condition(condition).write.excluded_principals


def delegation_condition(role_ids: Iterable[str], *, principal_types: Iterable[str] = (),
                         excluded_principals: Iterable[str] = ()) -> str:
    """The documented template for these roles (and, if given, these principal types, and never these principals),
    one line, its clauses in the order RoleDefinitionId, PrincipalType, PrincipalId."""
    guids = ", ".join(role_ids)
    types = ", ".join(f"'{t}'" for t in principal_types)
    excluded = ", ".join(excluded_principals)

    def branch(action: str, source: str) -> str:
        attribute = f"@{source}[Microsoft.Authorization/roleAssignments:"
        clauses = f"{attribute}RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{guids}}}"
        if types:
            clauses += f" AND {attribute}PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{{types}}}"
        if excluded:
            clauses += f" AND {attribute}PrincipalId] ForAnyOfAllValues:GuidNotEquals {{{excluded}}}"
        return f"((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/{action}'}})) OR ({clauses}))"

    return f"{branch('write', 'Request')} AND {branch('delete', 'Resource')}"


def _normalized(condition: str) -> str:
    """One space between tokens, none inside parentheses: Bicep and the portal wrap conditions over lines."""
    text = re.sub(r"\s+", " ", condition).strip()
    text = re.sub(r"\(\s+", "(", text)
    text = re.sub(r"\s+\)", ")", text)
    # The outer parentheses some writers add around the whole condition change nothing.
    while text.startswith("(((") and text.endswith(")))") and _balanced(text[1:-1]):
        text = text[1:-1]
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _branch(clauses: str, source: str) -> Branch:
    """One branch's clauses: RoleDefinitionId first, then PrincipalType and PrincipalId in either order, each once."""
    tested: dict[str, frozenset[str]] = {}
    for clause in re.split(r" AND ", clauses, flags=re.IGNORECASE):
        match = _CLAUSE.match(clause.strip())
        if not match or match.group("source").lower() != source:
            raise ValueError(f"cannot evaluate the clause {clause.strip()!r} (a write is tested with @Request, a "
                             "delete with @Resource)")
        attribute, operator = match.group("attribute").lower(), match.group("operator").lower()
        if _OPERATORS[attribute] != operator or attribute in tested or (attribute == "roledefinitionid") != (
                not tested):
            raise ValueError(f"cannot evaluate the clause {clause.strip()!r} (each branch tests RoleDefinitionId "
                             "with ForAnyOfAnyValues:GuidEquals first, then at most once PrincipalType with "
                             "ForAnyOfAnyValues:StringEqualsIgnoreCase and PrincipalId with "
                             "ForAnyOfAllValues:GuidNotEquals)")
        tested[attribute] = _values(attribute, match.group("values"))
    if "roledefinitionid" not in tested:
        raise ValueError("each branch must test RoleDefinitionId")
    return Branch(tested["roledefinitionid"], tested.get("principaltype"), tested.get("principalid", frozenset()))


def _values(attribute: str, text: str) -> frozenset[str]:
    """A clause's set of values, lower case; GUIDs where the attribute is one."""
    values = [v.strip().strip("'").strip() for v in text.split(",") if v.strip()]
    if attribute != "principaltype" and (not values or not all(is_guid(v) for v in values)):
        raise ValueError(f"{attribute} is compared with GUIDs, got {text!r}")
    return frozenset(v.lower() for v in values)
