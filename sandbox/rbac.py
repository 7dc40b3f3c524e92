"""Azure RBAC as the sandbox knows it: the built-in role definitions it serves, and the one kind of ABAC condition it
evaluates, Microsoft's documented template for constraining a Role Based Access Control Administrator's delegation.

The template (azure-docs `role-based-access-control/delegate-role-assignments-examples.md`, "Example: Constrain
roles"; the PrincipalType clause from `delegate-role-assignments-overview.md`, reference pair
`tests/reference/authorization_RoleAssignments_Create_RBACAdminConstrainedDelegation_docs.json`):

    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR
     (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {g1, g2}
      [AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType]
           ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}]))
    AND
    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR
     (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {g1, g2}
      [AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ...]))

A write is checked against the request (`@Request`), a delete against the assignment being deleted (`@Resource`).
A condition that tests PrincipalType fails a request that names no principalType (terraform-provider-azurerm
PR #25175). Anything else is not parsed: `ValueError`, so a condition the sandbox cannot evaluate is never ignored.

Pure functions: no state, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Built-in role definitions, name -> GUID (the built-in roles reference, learn.microsoft.com
# /azure/role-based-access-control/built-in-roles; each GUID also checked against public templates that assign it).
BUILT_IN_ROLES = {
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Network Contributor": "4d97b98b-1d4f-4787-a291-c67834d212e7",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "Private DNS Zone Contributor": "b12aa53e-6015-4669-85d0-8515ebb3ae7f",
    "Storage Account Contributor": "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
}
_NAMES = {guid: name for name, guid in BUILT_IN_ROLES.items()}
WRITE_ACTION = "Microsoft.Authorization/roleAssignments/write"
DELETE_ACTION = "Microsoft.Authorization/roleAssignments/delete"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def is_guid(text: str) -> bool:
    return bool(_GUID.match(text))


def role_definition_guid(role: str) -> str | None:
    """The GUID of a built-in role given by name (case-insensitive), GUID or role definition id; None if unknown."""
    text = role.strip().rstrip("/").split("/")[-1]
    if is_guid(text):
        return text.lower() if text.lower() in _NAMES else None
    return next((guid for name, guid in BUILT_IN_ROLES.items() if name.lower() == role.strip().lower()), None)


def role_name(guid: str) -> str | None:
    return _NAMES.get(guid.lower())


@dataclass(frozen=True)
class Branch:
    """One half of the template: the roles (and, if tested, principal types) an action is allowed for."""

    role_ids: frozenset[str]
    principal_types: frozenset[str] | None  # None: not tested

    def allows(self, role_id: str, principal_type: str | None) -> bool:
        if role_id.lower() not in self.role_ids:
            return False
        return self.principal_types is None or (principal_type or "").lower() in self.principal_types


@dataclass(frozen=True)
class DelegationCondition:
    write: Branch
    delete: Branch

    def allows_write(self, role_id: str, principal_type: str | None) -> bool:
        """@Request: the role and principalType the PUT asks for."""
        return self.write.allows(role_id, principal_type)

    def allows_delete(self, role_id: str, principal_type: str | None) -> bool:
        """@Resource: the role and principal type of the assignment being deleted."""
        return self.delete.allows(role_id, principal_type)


_BRANCH = (r"\(\(!\(ActionMatches\{'Microsoft\.Authorization/roleAssignments/(?P<KEYaction>write|delete)'\}\)\) OR "
           r"\((?P<KEYclauses>[^()]*)\)\)")
_TEMPLATE = re.compile("^" + _BRANCH.replace("KEY", "a") + " AND " + _BRANCH.replace("KEY", "b") + "$", re.IGNORECASE)
_CLAUSE = re.compile(r"^@(?P<source>Request|Resource)\[Microsoft\.Authorization/roleAssignments:"
                     r"(?P<attribute>RoleDefinitionId|PrincipalType)\] ForAnyOfAnyValues:"
                     r"(?P<operator>GuidEquals|StringEqualsIgnoreCase) \{(?P<values>[^{}]*)\}$", re.IGNORECASE)


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


def delegation_condition(role_ids: Iterable[str], *, principal_types: Iterable[str] = ()) -> str:
    """The documented template for these roles (and, if given, these principal types), one line."""
    guids = ", ".join(role_ids)
    types = ", ".join(f"'{t}'" for t in principal_types)

    def branch(action: str, source: str) -> str:
        clauses = f"@{source}[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals " \
                  f"{{{guids}}}"
        if types:
            clauses += (f" AND @{source}[Microsoft.Authorization/roleAssignments:PrincipalType] "
                        f"ForAnyOfAnyValues:StringEqualsIgnoreCase {{{types}}}")
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
    role_ids: frozenset[str] | None = None
    principal_types: frozenset[str] | None = None
    for clause in re.split(r" AND ", clauses, flags=re.IGNORECASE):
        match = _CLAUSE.match(clause.strip())
        if not match or match.group("source").lower() != source:
            raise ValueError(f"cannot evaluate the clause {clause.strip()!r} (a write is tested with @Request, a "
                             "delete with @Resource)")
        values = [v.strip().strip("'").strip() for v in match.group("values").split(",") if v.strip()]
        attribute, operator = match.group("attribute").lower(), match.group("operator").lower()
        if attribute == "roledefinitionid" and operator == "guidequals" and role_ids is None:
            if not values or not all(is_guid(v) for v in values):
                raise ValueError(f"GuidEquals wants role definition GUIDs, got {match.group('values')!r}")
            role_ids = frozenset(v.lower() for v in values)
        elif attribute == "principaltype" and operator == "stringequalsignorecase" and principal_types is None:
            principal_types = frozenset(v.lower() for v in values)
        else:
            raise ValueError(f"cannot evaluate the clause {clause.strip()!r}")
    if role_ids is None:
        raise ValueError("each branch must test RoleDefinitionId")
    return Branch(role_ids, principal_types)
