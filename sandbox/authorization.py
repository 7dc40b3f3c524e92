"""ARM role assignments: Microsoft.Authorization/roleAssignments, api-version 2022-04-01, at any scope of the world
(a subscription, a resource group, or any resource id under one: a subnet, a registry, a private DNS zone...); and
the built-in role definitions (`RoleDefinitions`).

URLs, bodies and status codes follow tests/reference/authorization_RoleAssignments_* (Create, Get, Delete,
ListForScope; the docs' list with `$filter`). Errors in ARM's words where Microsoft or field reports show them:

- 400 PrincipalNotFound for a principal ARM's directory replica does not know (Troubleshoot Azure RBAC; the id
  printed without hyphens, Azure/avdaccelerator#76). A new service principal reaches ARM's replica
  `principal_replication_seconds` after it was made; a request that names `principalType` skips that wait
  (Microsoft's documented fix), unless the world fault says it does not help (field reports of that too). The
  sandbox assumes principalType skips only the replication wait: a principal no replica has (never made, or
  deleted) is PrincipalNotFound with or without it.
- 400 UnmatchedPrincipalType when principalType names another type (field reports, Azure/azure-dev#3581, ARM's
  typo "PrinciaplType" included).
- 409 RoleAssignmentExists for the same (scope, principal, role) under another name; 400
  RoleAssignmentUpdateNotPermitted for a name that exists with another scope, principal or role (Troubleshoot
  Azure RBAC: "Tenant ID, application ID, principal ID, and scope are not allowed to be updated."; a deployment
  reports it as BadRequest).
- 403 AuthorizationFailed without the action, and in its ABAC wording when the caller's condition (sandbox/rbac.py)
  is not fulfilled (microsoft/AzureTRE#4278): the role, principal type or principal (an excluded one, the
  remediator itself) the condition does not allow.
- 400 UnsupportedQuery for a `$filter` ARM does not take (its words: Azure/azure-rest-api-specs#28255).

Undocumented, chosen as most plausible: a PUT with the same name and the same content answers 201 again (the
2015-07-01 spec described no other answer; Azure/azure-rest-api-specs#5226), one that only changes description or
condition answers 200; a missing assignment is 404 RoleAssignmentNotFound; an unknown role definition is 400
RoleDefinitionDoesNotExist (its message from field reports); pages hold `role_assignment_page_size` assignments;
resources below a resource group are not checked for existence (the sandbox has no subnets or registries).
Deleted principals' assignments stay, with their principalId and principalType (ARM's enum has no "Unknown";
the portal's "Identity not found" is drawn from a failed Graph lookup, Troubleshoot Azure RBAC).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from sandbox.rbac import (
    BUILT_IN_ROLE_DEFINITIONS,
    DELETE_ACTION,
    WRITE_ACTION,
    is_guid,
    parse_condition,
    role_definition_guid,
)
from sandbox.server import Request, Response
from sandbox.state import ApiError, Application, RoleAssignment, utc_iso

if TYPE_CHECKING:
    from sandbox.arm import ArmApi

READ_ACTION = "Microsoft.Authorization/roleAssignments/read"
# The api-versions the routes take (checked by ArmApi._authorize): the ones whose examples tests/reference holds;
# azure-cli 2.91 and the remediator send 2022-04-01 for assignments, azure-cli 2022-05-01-preview for definitions.
ASSIGNMENT_API_VERSIONS = ("2020-04-01-preview", "2020-10-01-preview", "2022-04-01")
DEFINITION_API_VERSIONS = ("2022-04-01", "2022-05-01-preview")
_ROLE_NAME_FILTER = re.compile(r"^roleName\s+eq\s+'(?P<name>(?:[^']|'')*)'$", re.IGNORECASE)
ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup")  # the 2022-04-01 enum
# A scope: a subscription, a resource group, or a resource (provider, type, name, then child type/name pairs).
_SCOPE = (r"(?P<scope>/subscriptions/(?P<sub>[^/]+)(?:/resourceGroups/(?P<rg>[^/]+)"
          r"(?:/providers/[^/]+/[^/]+/[^/]+(?:/[^/]+/[^/]+)*)?)?)")
_ASSIGNMENTS = rf"{_SCOPE}/providers/Microsoft\.Authorization/roleAssignments"
_PRINCIPAL_FILTER = re.compile(r"^principalId\s+eq\s+'(?P<id>[^']*)'$", re.IGNORECASE)
_ASSIGNED_TO = re.compile(r"^(?P<at>atScope\(\)\s+and\s+)?assignedTo\('(?P<id>[^']*)'\)$", re.IGNORECASE)
_AT_SCOPE = re.compile(r"^atScope\(\)$", re.IGNORECASE)


class RoleAssignments:
    """The role assignment routes of the ARM API (registered on it: they share its port, checks and paging)."""

    def __init__(self, arm: ArmApi) -> None:
        self.arm, self.state = arm, arm.state
        one = rf"{_ASSIGNMENTS}/(?P<name>[^/]+)"
        arm.route("PUT", one, "PUT roleAssignments/{name}", self.put)
        arm.route("GET", one, "GET roleAssignments/{name}", self.get)
        arm.route("DELETE", one, "DELETE roleAssignments/{name}", self.delete)
        arm.route("GET", _ASSIGNMENTS, "GET roleAssignments", self.list)

    # ------------------------------------------------------------------ checks

    def _checked(self, request: Request, action: str) -> tuple[Application, str]:
        """(the caller, the scope): authorized for `action` at the request's path, in a subscription and resource
        group the world has."""
        caller = self.arm._authorize(request, action, request.path)
        if request.params.get("rg") is not None:
            self.arm._group(request)
        return caller, request.params["scope"]

    def _abac_refusal(self, caller: Application, action: str, scope: str) -> ApiError:
        return ApiError(403, "AuthorizationFailed", (
            f"The client '{caller.app_id}' with object id '{caller.sp_object_id}' has an authorization with ABAC "
            f"condition that is not fulfilled to perform action '{action}' over scope '{scope}' or the scope is "
            "invalid. If access was recently granted, please refresh your credentials."))

    def _principal_not_found(self, principal_id: str) -> ApiError:
        return ApiError(400, "PrincipalNotFound", (
            f"Principal {principal_id.replace('-', '')} does not exist in the directory {self.state.tenant_id}. "
            "Check that you have the correct principal ID. If you are creating this principal and then immediately "
            "assigning a role, this error might be related to a replication delay. In this case, set the role "
            "assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See "
            "https://aka.ms/docs-principaltype"))

    def _resolved_principal_type(self, principal_id: str, principal_type: str | None) -> str:
        """The principal's type as ARM's directory replica knows it (service principals are the sandbox's only
        principals)."""
        app = self.state.service_principal(principal_id)
        if app is None or not self.state.principal_visible_to_arm(app, principal_type_given=principal_type is not None):
            raise self._principal_not_found(principal_id)
        if principal_type is not None and principal_type != "ServicePrincipal":
            raise ApiError(400, "UnmatchedPrincipalType", (
                f"The PrincipalId '{principal_id.replace('-', '')}' has type 'ServicePrincipal' , which is different "
                f"from specified PrinciaplType '{principal_type}'."))
        return "ServicePrincipal"

    # ------------------------------------------------------------------ routes

    def put(self, request: Request) -> Response:
        caller, scope = self._checked(request, WRITE_ACTION)
        name = request.params["name"]
        if not is_guid(name):
            raise ApiError(400, "InvalidRoleAssignmentId", f"The role assignment ID '{name}' is not valid. The role "
                           "assignment ID must be a GUID.")
        wanted = _wanted(request)
        if caller.role_assignment_condition and not parse_condition(caller.role_assignment_condition).allows_write(
                wanted["role"], wanted["principalType"], wanted["principalId"]):
            raise self._abac_refusal(caller, WRITE_ACTION, request.path)
        principal_type = self._resolved_principal_type(wanted["principalId"], wanted["principalType"])
        with self.state.lock:
            existing = self.state.role_assignments.get(name.lower())
            if existing is not None:
                return self._put_again(existing, scope, wanted, caller)
            twin = self.state.role_assignment_like(scope, wanted["principalId"], wanted["role"])
            if twin is not None:
                raise ApiError(409, "RoleAssignmentExists", "The role assignment already exists.")
            now = self.state.now()
            created = self.state.add_role_assignment(RoleAssignment(
                name=name.lower(), scope=scope, role_definition_id=wanted["role"], principal_id=wanted["principalId"],
                principal_type=principal_type, created_on=now, updated_on=now, created_by=caller.sp_object_id,
                updated_by=caller.sp_object_id, description=wanted["description"], condition=wanted["condition"],
                condition_version=wanted["conditionVersion"]))
            return Response(201, self.body(created))

    def _put_again(self, existing: RoleAssignment, scope: str, wanted: dict[str, Any],
                   caller: Application) -> Response:
        """A PUT to a name that exists: only description and condition may change (conditions-role-assignments-rest:
        "You must specify the other properties to match the existing role assignment")."""
        if (existing.scope.lower(), existing.principal_id, existing.role_definition_id) != (
                scope.lower(), wanted["principalId"], wanted["role"]):
            raise ApiError(400, "RoleAssignmentUpdateNotPermitted", "Tenant ID, application ID, principal ID, and "
                           "scope are not allowed to be updated.")
        edits = {"description": wanted["description"], "condition": wanted["condition"],
                 "condition_version": wanted["conditionVersion"]}
        if all(getattr(existing, k) == v for k, v in edits.items()):
            return Response(201, self.body(existing))
        for key, value in edits.items():
            setattr(existing, key, value)
        existing.updated_on, existing.updated_by = self.state.now(), caller.sp_object_id
        return Response(200, self.body(existing))

    def get(self, request: Request) -> Response:
        _, scope = self._checked(request, READ_ACTION)
        found = self._at(scope, request.params["name"])
        if found is None:
            raise ApiError(404, "RoleAssignmentNotFound", f"The role assignment '{request.params['name']}' is not "
                           "found.")
        return Response(200, self.body(found))

    def delete(self, request: Request) -> Response:
        """200 with the assignment it deleted; 204 when there is none ("already deleted or does not exist")."""
        caller, scope = self._checked(request, DELETE_ACTION)
        with self.state.lock:
            found = self._at(scope, request.params["name"])
            if found is None:
                return Response(204)
            if caller.role_assignment_condition and not parse_condition(
                    caller.role_assignment_condition).allows_delete(found.role_definition_id, found.principal_type,
                                                                    found.principal_id):
                raise self._abac_refusal(caller, DELETE_ACTION, request.path)
            self.state.remove_role_assignment(found.name)
            return Response(200, self.body(found))

    def list(self, request: Request) -> Response:
        """The assignments `$filter` asks for, relative to the scope, `role_assignment_page_size` a page."""
        _, scope = self._checked(request, READ_ACTION)
        reach, principal_id = _parse_filter(request.query.get("$filter", ""))
        start = _skip(request.query.get("$skipToken", "0"))
        with self.state.lock:
            size = self.state.role_assignment_page_size
            # ARM promises no order: a seeded permutation, the same on every page (SandboxState.unordered).
            found = [a for a in self.state.unordered(self.state.role_assignments.values(), key=lambda a: a.name)
                     if _reaches(a.scope, scope, reach) and (principal_id is None or a.principal_id == principal_id)]
            body: dict[str, Any] = {"value": [self.body(a) for a in found[start:start + size]]}
        if start + size < len(found):
            query = {k: v for k, v in request.query.items() if k != "$skipToken"} | {"$skipToken": str(start + size)}
            body["nextLink"] = f"{self.arm.base_url}{request.path}?{urlencode(query, quote_via=quote)}"
        return Response(200, body)

    def _at(self, scope: str, name: str) -> RoleAssignment | None:
        found = self.state.role_assignments.get(name.lower())
        return found if found is not None and found.scope.lower() == scope.lower() else None

    def body(self, assignment: RoleAssignment) -> dict[str, Any]:
        """An assignment as 2022-04-01 answers it (shape of the docs' list example, which has every property)."""
        return {"properties": {
            "roleDefinitionId": (f"/subscriptions/{assignment.subscription_id}/providers/Microsoft.Authorization/"
                                 f"roleDefinitions/{assignment.role_definition_id}"),
            "principalId": assignment.principal_id, "principalType": assignment.principal_type,
            "scope": assignment.scope, "condition": assignment.condition,
            "conditionVersion": assignment.condition_version, "createdOn": utc_iso(assignment.created_on),
            "updatedOn": utc_iso(assignment.updated_on), "createdBy": assignment.created_by,
            "updatedBy": assignment.updated_by, "delegatedManagedIdentityResourceId": None,
            "description": assignment.description},
            "id": assignment.id, "type": ASSIGNMENT_TYPE, "name": assignment.name}


def _wanted(request: Request) -> dict[str, Any]:
    """The PUT's properties, checked: role (a GUID the sandbox knows), principalId, principalType or None,
    description, condition, conditionVersion."""
    body = request.json()
    properties = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(properties, dict):
        raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       "deserialized: 'properties' is required.")
    definition, principal_id = properties.get("roleDefinitionId"), properties.get("principalId")
    if not isinstance(definition, str) or not definition:
        raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       "deserialized: 'properties.roleDefinitionId' is required.")
    role = role_definition_guid(definition) if "/roleDefinitions/" in definition else None
    if role is None:
        raise ApiError(400, "RoleDefinitionDoesNotExist", "The specified role definition with ID "
                       f"'{definition.rstrip('/').split('/')[-1]}' does not exist.")
    if not isinstance(principal_id, str) or not is_guid(principal_id):
        raise ApiError(400, "InvalidPrincipalId", f"The Principal ID '{principal_id}' is not valid. Principal ID "
                       "must be a GUID.")
    principal_type = properties.get("principalType")
    if principal_type is not None and principal_type not in PRINCIPAL_TYPES:
        raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       f"deserialized: principalType must be one of {', '.join(PRINCIPAL_TYPES)}.")
    condition = properties.get("condition")
    version = properties.get("conditionVersion")
    for field, value in (("description", properties.get("description")), ("condition", condition),
                         ("conditionVersion", version)):
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                           f"deserialized: '{field}' must be a string.")
    # "If condition is specified without conditionVersion, the version is set to the default value of 2.0."
    return {"role": role, "principalId": principal_id.lower(), "principalType": principal_type,
            "description": properties.get("description"), "condition": condition,
            "conditionVersion": version or ("2.0" if condition else None)}


def _parse_filter(text: str) -> tuple[str, str | None]:
    """(reach, principal id): "all" (at, above and below the scope), "at_or_above"; a principal's are at, above or
    below, or with atScope() at or above."""
    text = text.strip()
    if not text:
        return "all", None
    if _AT_SCOPE.match(text):
        return "at_or_above", None
    principal = _PRINCIPAL_FILTER.match(text)
    if principal and is_guid(principal.group("id")):
        return "all", principal.group("id").lower()
    assigned = _ASSIGNED_TO.match(text)
    if assigned and is_guid(assigned.group("id")):
        return "at_or_above" if assigned.group("at") else "all", assigned.group("id").lower()
    raise ApiError(400, "UnsupportedQuery", f"The filter '{text}' is not supported. Supported filters are either "
                   "'atScope()' or 'principalId eq '{value}' or assignedTo('{value}')'.")


def _reaches(assignment_scope: str, scope: str, reach: str) -> bool:
    """Whether an assignment at `assignment_scope` is at or above `scope`, or (reach "all") below it."""
    outer, inner = assignment_scope.lower(), scope.lower()
    at_or_above = inner == outer or inner.startswith(outer + "/")
    return at_or_above or (reach == "all" and outer.startswith(inner + "/"))


def _skip(token: str) -> int:
    if not token.isdigit():
        raise ApiError(400, "BadRequest", "The $skipToken is invalid.")
    return int(token)


class RoleDefinitions:
    """`GET {scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}` (RoleDefinitions_Get, api-version
    2022-04-01; tests/reference/authorization_RoleDefinitions_Get_2022-04-01.json), and the list of them
    (RoleDefinitions_List, `{"value": [...]}`), whole or with `$filter=roleName eq '<name>'` (the filter azure-cli
    sends to resolve `--role "Network Contributor"`; the spec's only documented filter besides type eq
    'BuiltInRole'/'CustomRole', which is taken too; another is 400 UnsupportedQuery, as for assignments), for the
    built-in roles of
    sandbox/rbac.py: `{"id", "type", "name", "properties": {"roleName", "type": "BuiltInRole", "description",
    "assignableScopes": ["/"], "permissions": [{"actions", "notActions", "dataActions", "notDataActions"}]}}`, the id
    under the scope's subscription as ARM answers it there. An unknown GUID is 404 RoleDefinitionDoesNotExist, in the
    words of the assignment routes' 400.

    Assumed: reading a definition needs Microsoft.Authorization/roleDefinitions/read at the scope, checked as every
    ARM read is (Reader's `*/read` has it; a caller with no access to the subscription is 403 AuthorizationFailed, as
    field reports show for the role definition routes); the 404 status for an unknown definition (the spec gives no
    example); an api-version other than 2022-04-01 is 400 NoRegisteredProviderFound."""

    API_VERSIONS = DEFINITION_API_VERSIONS
    READ = "Microsoft.Authorization/roleDefinitions/read"

    def __init__(self, arm: ArmApi) -> None:
        self.arm = arm
        arm.route("GET", rf"{_SCOPE}/providers/Microsoft\.Authorization/roleDefinitions/(?P<name>[^/]+)",
                  "GET roleDefinitions/{name}", self.get)
        arm.route("GET", rf"{_SCOPE}/providers/Microsoft\.Authorization/roleDefinitions", "GET roleDefinitions",
                  self.list)

    def list(self, request: Request) -> Response:
        self.arm._authorize(request, self.READ, request.path)
        if request.params.get("rg") is not None:
            self.arm._group(request)
        text = request.query.get("$filter", "").strip()
        by_name, by_type = _ROLE_NAME_FILTER.match(text), re.match(r"^type\s+eq\s+'(\w+)'$", text, re.IGNORECASE)
        if text and not by_name and not by_type:
            raise ApiError(400, "UnsupportedQuery", f"The filter '{text}' is not supported.")
        wanted = by_name.group("name").replace("''", "'").lower() if by_name else None
        kind = by_type.group(1).lower() if by_type else "builtinrole"
        return Response(200, {"value": [
            self._body(request, guid) for guid, definition in BUILT_IN_ROLE_DEFINITIONS.items()
            if kind == "builtinrole" and (wanted is None or definition.name.lower() == wanted)]})

    def get(self, request: Request) -> Response:
        self.arm._authenticate(request)
        self.arm.require_api_version(request, self.API_VERSIONS, "roleDefinitions")
        self.arm._authorize(request, self.READ, request.path)
        if request.params.get("rg") is not None:
            self.arm._group(request)
        guid = request.params["name"].lower()
        if guid not in BUILT_IN_ROLE_DEFINITIONS:
            raise ApiError(404, "RoleDefinitionDoesNotExist", f"The specified role definition with ID "
                           f"'{request.params['name']}' does not exist.")
        return Response(200, self._body(request, guid))

    def _body(self, request: Request, guid: str) -> dict[str, Any]:
        definition = BUILT_IN_ROLE_DEFINITIONS[guid]
        return {
            "properties": {"roleName": definition.name, "type": "BuiltInRole", "description": definition.description,
                           "assignableScopes": ["/"],
                           "permissions": [{"actions": list(definition.actions),
                                            "notActions": list(definition.not_actions), "dataActions": [],
                                            "notDataActions": []}]},
            "id": f"/subscriptions/{request.params['sub']}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            "type": "Microsoft.Authorization/roleDefinitions", "name": guid}
