"""Microsoft Graph v1.0: applications (with their passwords, owners, api and app roles), service principals (the
tenant's and Microsoft Graph's own), their app role assignments and directory roles, deleted items.

Shapes follow the official examples in tests/reference/ (graph_application_addPassword_v1.0, _removePassword_,
graph_application_create_v1.0, graph_application_upsert_v1.0, graph_servicePrincipal_create_v1.0,
graph_servicePrincipal_list_appRoleAssignments_v1.0, graph_directoryRole_get_v1.0,
graph_directory_deletedItems_list_v1.0). JSON batching (`POST /$batch`) is sandbox/batching.py; a throttled request
answers Graph's sample 429 (graph_throttling_429_v1.0).

Permissions as Microsoft documents them (permissions reference, serviceprincipal-get, application-get):
every one of Application.Read.All, Application.ReadWrite.OwnedBy and Application.ReadWrite.All reads every
application and service principal in the tenant ("The Application.ReadWrite.OwnedBy permission allows an app to
call GET /applications and GET /servicePrincipals to list all applications and service principals in the
tenant"); AppRoleAssignment.ReadWrite.All alone reads none. Writes (addPassword, removePassword, PATCH, DELETE,
POST /servicePrincipals for an application) need ReadWrite.All, or OwnedBy on an application the caller owns:
otherwise 403 Authorization_RequestDenied. Creating an application (POST, or the upsert that creates) needs OwnedBy
or ReadWrite.All. Deleted items (directory-deleteditems-list/-get), a service principal's app role assignments
(serviceprincipal-list-approleassignments) and its transitive memberships (serviceprincipal-list-transitivememberof)
need Application.Read.All (the least privileged) or ReadWrite.All; OwnedBy alone is refused.

Writing applications as the Microsoft Graph Bicep extension, `az` and the SDKs do:

- `PATCH /applications(uniqueName='{name}')` (application-upsert): with `Prefer: create-if-missing` it creates a
  missing application (201 and the application, which is assigned the uniqueName; the body must hold displayName),
  without it a missing one is 404; an existing one is updated (204). `uniqueName` is the client-provided alternate
  key: set on create, immutable after (the application resource: "Immutable").
- `POST /applications`, `PATCH /applications/{id}` and the upsert store displayName, uniqueName (create only),
  identifierUris, signInAudience, appRoles and api; other properties are accepted and ignored.
- Graph refuses a pre-authorization of a scope the application does not have yet: an id in
  `api.preAuthorizedApplications[*].delegatedPermissionIds` that is not among the `api.oauth2PermissionScopes` ids of
  the application as stored before the request (so a scope added by the same request does not count, and on create
  nothing does) is 400 InvalidValue, "Property api.preAuthorizedApplications.delegatedPermissionIds has a Permission
  Id that cannot be found in the AppPermissions sets.", `details: [{"target":
  "api.preAuthorizedApplications.delegatedPermissionIds", "code": "InvalidValue"}]` (Graph's answer, quoted in
  microsoftgraph/microsoft-graph-docs#12675; the two-step fix, microsoftgraph/microsoft-graph-docs-contrib#1395).
  Nothing is written when a request is refused.

Assumed (Graph documents PATCH as "update the properties given", not how a complex property merges): top-level
properties given replace the stored ones; within `api`, the sub-properties given replace the stored ones and the others
are kept, arrays (oauth2PermissionScopes, preAuthorizedApplications, ...) being replaced whole. That is what an
idempotent re-deploy of the full `api` needs, and what a later PATCH of `api.preAuthorizedApplications` alone (the
two-step fix) needs to keep its scopes. Also assumed: the wording of refusals of a uniqueName change or clash (400
Request_BadRequest, 409 Request_MultipleObjectsWithSameKeyValue), and that uniqueName is matched case-sensitively.

Reads of a principal's grants: `GET /servicePrincipals/{id}/appRoleAssignments` lists the app roles it holds, Graph's
application permissions (resource: Microsoft Graph's service principal) and the roles of the tenant's own APIs;
`GET /servicePrincipals/{id}/transitiveMemberOf[/microsoft.graph.directoryRole]` its directory roles (the sandbox has
no groups), `$select` honoured (it does not require `ConsistencyLevel: eventual` here: assumed). Assumed: an
assignment's id (base64url of the principal's and the assignment's GUIDs, 43 characters as Graph's are) and its
createdDateTime (the principal's creation: the sandbox does not keep when a grant was made). `/me` with an app-only
token is Graph's 400 BadRequest, "/me request is only valid with delegated authentication flow." (quoted in
microsoftgraph/msgraph-sdk-php#1163).

What the Azure CLI's `az ad app|sp` and `az role assignment list --assignee` send (azure-cli 2.91.0,
role/_msgrpah/_graph_client.py):

- `$filter` on `GET /applications`, `/servicePrincipals` and the deleted items: sandbox/graphfilter.py (the clauses
  supported, and Graph's `Request_UnsupportedQuery` for the others). Lists are paged, 100 objects a page or `$top`
  (1-999), with an `@odata.nextLink` that carries the request's other options; the skip token is an offset (Graph's
  is opaque: assumed). `$select` on service principals picks their properties, as on applications.
- A service principal has passwords of its own (graph_servicePrincipal_addPassword_v1.0; removePassword alike): they
  are its `passwordCredentials`, not its application's, they sign in as the application, and writing them needs
  Application.ReadWrite.All, or OwnedBy on a service principal the caller owns (its creator). `DELETE
  /servicePrincipals/{id}` removes the service principal with its passwords and owners; the application stays.
- `POST /directoryObjects/getByIds` (graph_directoryObject_getByIds_v1.0, see get_by_ids).
- A path Graph does not serve is 400 BadRequest, "Resource not found for the segment '<segment>'." (Graph's answer,
  quoted in microsoftgraph/msgraph-beta-sdk-python#764 and microsoftgraph/microsoft-graph-docs#1914; 400 in
  microsoftgraph/microsoft-graph-docs#4052). Assumed: which segment it names when several are unknown (the first).
  A method a path does not take is 405 Request_BadRequest (graph_json_batching_v1.0, request 4).
"""

from __future__ import annotations

import base64
import copy
import re
import uuid
from typing import Any
from urllib.parse import urlencode

from sandbox.batching import JsonBatch
from sandbox.directory import (
    DIRECTORY_ROLES,
    GRAPH_APPLICATION_PERMISSIONS,
    MICROSOFT_GRAPH_APP_ID,
    MICROSOFT_TENANT_ID,
    DirectoryRoleTemplate,
    directory_role_object_id,
)
from sandbox.graphfilter import APPLICATION, SERVICE_PRINCIPAL, Filter, Filterable, parse_filter
from sandbox.server import Api, Request, Response
from sandbox.state import (
    GRAPH_APPLICATION_READERS,
    GRAPH_OWNED_BY,
    GRAPH_READ_ALL,
    GRAPH_READ_WRITE_ALL,
    MEMBER_USER,
    ApiError,
    Application,
    MemberUser,
    SandboxState,
    default_api,
    parse_time,
    utc_iso,
)

_OWNERS_EXPAND = re.compile(r"^owners(?:\(\$select=(?P<select>[A-Za-z,\s]+)\))?$", re.IGNORECASE)
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
OWNED_OBJECTS_PAGE = 100  # Graph's default page for directory objects; $top may ask for 1-999
CREATED_LONG_AGO = "2025-01-01T00:00:00Z"  # createdDateTime of the applications a scenario starts with
ME_REFUSAL = "/me request is only valid with delegated authentication flow."
PREAUTHORIZED_TARGET = "api.preAuthorizedApplications.delegatedPermissionIds"
SIGN_IN_AUDIENCES = ("AzureADMyOrg", "AzureADMultipleOrgs", "AzureADandPersonalMicrosoftAccount",
                     "PersonalMicrosoftAccount")
DIRECTORY_ROLE_FIELDS = ("id", "deletedDateTime", "description", "displayName", "roleTemplateId")


class GraphApi(Api):
    name = "graph"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        app = rf"/v1\.0/applications/(?P<id>{_GUID})"
        principal = rf"/v1\.0/servicePrincipals/(?P<id>{_GUID})"
        deleted = r"/v1\.0/directory/deletedItems"
        self.route("GET", r"/v1\.0/applications", "GET /applications", self.list_applications)
        self.route("POST", r"/v1\.0/applications", "POST /applications", self.create_application)
        self.route("GET", r"/v1\.0/applications\(appId='(?P<appid>[^']*)'\)", "GET /applications(appId=)",
                   self.get_by_app_id)
        unique = r"/v1\.0/applications\(uniqueName='(?P<unique>[^']*)'\)"
        self.route("GET", unique, "GET /applications(uniqueName=)", self.get_by_unique_name)
        self.route("PATCH", unique, "PATCH /applications(uniqueName=)", self.upsert_application)
        self.route("GET", app, "GET /applications/{id}", self.get_application)
        self.route("PATCH", app, "PATCH /applications/{id}", self.update_application)
        self.route("DELETE", app, "DELETE /applications/{id}", self.delete_application)
        self.route("POST", rf"{app}/addPassword", "POST /applications/{id}/addPassword", self.add_password)
        self.route("POST", rf"{app}/removePassword", "POST /applications/{id}/removePassword", self.remove_password)
        for owned, label in ((app, "applications"), (principal, "servicePrincipals")):
            self.route("GET", rf"{owned}/owners", f"GET /{label}/{{id}}/owners", self.list_owners)
            self.route("POST", rf"{owned}/owners/\$ref", f"POST /{label}/{{id}}/owners/$ref", self.add_owner)
            self.route("DELETE", rf"{owned}/owners/(?P<owner>{_GUID})/\$ref", f"DELETE /{label}/{{id}}/owners/$ref",
                       self.remove_owner)
        self.route("GET", rf"{app}/federatedIdentityCredentials", "GET /applications/{id}/federatedIdentityCredentials",
                   self.list_federated_credentials)
        self.route("POST", rf"{app}/federatedIdentityCredentials",
                   "POST /applications/{id}/federatedIdentityCredentials", self.add_federated_credential)
        self.route("GET", r"/v1\.0/servicePrincipals", "GET /servicePrincipals", self.list_service_principals)
        self.route("POST", r"/v1\.0/servicePrincipals", "POST /servicePrincipals", self.create_service_principal)
        self.route("GET", r"/v1\.0/servicePrincipals\(appId='(?P<appid>[^']*)'\)", "GET /servicePrincipals(appId=)",
                   self.get_service_principal)
        self.route("GET", principal, "GET /servicePrincipals/{id}", self.get_service_principal)
        self.route("DELETE", principal, "DELETE /servicePrincipals/{id}", self.delete_service_principal)
        self.route("POST", rf"{principal}/addPassword", "POST /servicePrincipals/{id}/addPassword",
                   self.add_password)
        self.route("POST", rf"{principal}/removePassword", "POST /servicePrincipals/{id}/removePassword",
                   self.remove_password)
        self.route("POST", r"/v1\.0/directoryObjects/getByIds", "POST /directoryObjects/getByIds", self.get_by_ids)
        self.route("GET", rf"{principal}/ownedObjects(?P<cast>/microsoft\.graph\.application)?",
                   "GET /servicePrincipals/{id}/ownedObjects", self.owned_objects)
        self.route("GET", rf"{principal}/appRoleAssignments", "GET /servicePrincipals/{id}/appRoleAssignments",
                   self.app_role_assignments)
        self.route("GET", rf"{principal}/transitiveMemberOf(?P<cast>/microsoft\.graph\.directoryRole)?",
                   "GET /servicePrincipals/{id}/transitiveMemberOf", self.transitive_member_of)
        for method in ("GET", "POST", "PATCH", "DELETE"):
            self.route(method, r"/v1\.0/me(?:/.*)?", f"{method} /me", self.me)
        self.route("GET", rf"{deleted}/microsoft\.graph\.(?P<type>application|servicePrincipal)",
                   "GET /directory/deletedItems/{type}", self.list_deleted)
        self.route("GET", rf"{deleted}/(?P<id>{_GUID})", "GET /directory/deletedItems/{id}", self.get_deleted)
        self.json_batch = JsonBatch(self)

    def error_body(self, err: ApiError) -> Any:
        inner = {"date": utc_iso(self.state.now())[:19], "request-id": str(uuid.uuid4()),
                 "client-request-id": str(uuid.uuid4())}
        if err.status == 429:  # the throttling page's sample response
            inner = {"code": "429", **inner, "message": "Please retry after", "status": "429"}
        details = {"details": err.details} if err.details is not None else {}
        return {"error": {"code": err.code, "message": err.message, **details, "innerError": inner}}

    def fault_response(self, kind: str, status: int, retry_after: float) -> ApiError:
        if kind == "throttle":  # Graph's words (throttling page, "Sample response")
            return ApiError(429, "TooManyRequests", "Please retry again later.", {"Retry-After": f"{retry_after:g}"})
        return ApiError(status, "serviceNotAvailable" if status == 503 else "generalException",
                        "The service is temporarily unavailable.", {"Retry-After": f"{retry_after:g}"})

    def no_route(self, method: str, path: str) -> ApiError:
        """Graph's 400 BadRequest, "Resource not found for the segment '<x>'." (module docstring), naming the first
        segment it does not know."""
        return ApiError(400, "BadRequest", f"Resource not found for the segment '{self._unknown_segment(path)}'.")

    def no_method(self, method: str, path: str) -> ApiError:
        """Graph's 405 for a method the path does not take (graph_json_batching_v1.0, its request 4)."""
        return ApiError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")

    def _unknown_segment(self, path: str) -> str:
        """The first segment of `path` that no route has (a key, a GUID or `name(...)`, counts by its name); the last
        one when each is known but not in that order. A version other than v1.0 is itself the unknown segment."""
        segments = [s for s in path.split("/") if s]
        if not segments or segments[0].lower() != "v1.0":
            return segments[0] if segments else ""
        known = {s.split("(")[0].lower() for r in self.routes for s in r.label.split(" ", 1)[1].split("/")}
        names = [s.split("(")[0] for s in segments[1:] if not re.fullmatch(_GUID, s)]
        return next((s for s in names if s.lower() not in known), segments[-1])

    def _context(self, what: str) -> str:
        return f"{self.base_url}/v1.0/$metadata#{what}"

    # ------------------------------------------------------------------ who may do what

    def _authenticated(self, request: Request) -> Application | MemberUser:
        """The calling application, or member user, whose token Graph accepts."""
        authorization = request.headers.get("authorization")
        caller = self.state.caller(authorization, "graph") or self.state.user_caller(authorization, "graph")
        if caller is None:
            raise ApiError(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        return caller

    def _caller(self, request: Request) -> Application | MemberUser:
        """The caller, which must hold a Graph permission that reads applications (a member user reads them all)."""
        caller = self._authenticated(request)
        if not caller.graph_permissions & (GRAPH_APPLICATION_READERS | {MEMBER_USER}):
            raise _denied()
        return caller

    def _may_write(self, caller: Application | MemberUser, app: Application) -> None:
        if GRAPH_READ_WRITE_ALL in caller.graph_permissions:
            return
        if caller.graph_permissions & {GRAPH_OWNED_BY, MEMBER_USER} and caller.app_id in app.owners:
            return
        raise _denied()

    def _may_create(self, caller: Application | MemberUser) -> None:
        """OwnedBy and ReadWrite.All create applications; so does a member user (Users can register applications)."""
        if not caller.graph_permissions & {GRAPH_OWNED_BY, GRAPH_READ_WRITE_ALL, MEMBER_USER}:
            raise _denied()

    def _may_read_all(self, caller: Application) -> None:
        """Application.Read.All or ReadWrite.All: deleted items, app role assignments, memberships."""
        if not caller.graph_permissions & {GRAPH_READ_ALL, GRAPH_READ_WRITE_ALL}:
            raise _denied()

    def _by_object_id(self, request: Request) -> Application:
        app = self.state.application_by_object_id(request.params["id"])
        if app is None:
            raise _not_found(request.params["id"])
        return app

    # ------------------------------------------------------------------ bodies

    def application_body(self, app: Application) -> dict[str, Any]:
        """An application with the properties graph_application_create_v1.0.json and the upsert example show."""
        return {
            "id": app.object_id, "deletedDateTime": utc_iso(app.deleted_at) if app.deleted_at else None,
            "isFallbackPublicClient": None, "appId": app.app_id, "applicationTemplateId": None,
            "identifierUris": list(app.identifier_uris),
            "createdDateTime": utc_iso(app.created_at) if app.created_at else CREATED_LONG_AGO,
            "displayName": app.display_name, "isDeviceOnlyAuthSupported": None, "groupMembershipClaims": None,
            "optionalClaims": None, "addIns": [], "publisherDomain": "sandbox.onmicrosoft.com",
            "samlMetadataUrl": None, "signInAudience": app.sign_in_audience, "tags": [], "tokenEncryptionKeyId": None,
            "api": copy.deepcopy(app.api), "appRoles": copy.deepcopy(app.app_role_objects),
            "publicClient": {"redirectUris": []}, "info": _INFO, "keyCredentials": [],
            "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
            "passwordCredentials": [p.graph() for p in app.passwords], "requiredResourceAccess": [],
            "uniqueName": app.unique_name, "notes": app.notes,
            "web": {"redirectUris": [], "homePageUrl": None, "logoutUrl": None,
                    "implicitGrantSettings": {"enableIdTokenIssuance": False, "enableAccessTokenIssuance": False}},
            "windows": None,
        }

    def service_principal_body(self, app: Application) -> dict[str, Any]:
        """An application's service principal with the properties graph_servicePrincipal_create_v1.0.json shows."""
        return {
            "id": app.sp_object_id, "deletedDateTime": utc_iso(app.deleted_at) if app.deleted_at else None,
            "accountEnabled": True, "appDisplayName": app.display_name, "appId": app.app_id,
            "appOwnerOrganizationId": MICROSOFT_TENANT_ID if app.app_id == MICROSOFT_GRAPH_APP_ID
            else self.state.tenant_id, "appRoleAssignmentRequired": False,
            "displayName": app.display_name, "homepage": None, "logoutUrl": None, "publisherName": "sandbox",
            "replyUrls": [], "servicePrincipalNames": [app.app_id, *app.identifier_uris],
            "servicePrincipalType": "Application", "tags": [], "addIns": [],
            "appRoles": copy.deepcopy(app.app_role_objects), "info": _INFO,
            "keyCredentials": [], "oauth2PermissionScopes": [],
            "passwordCredentials": [p.graph() for p in app.sp_passwords],
        }

    def _shaped(self, app: Application, request: Request) -> dict[str, Any]:
        """The application as `$select` and `$expand=owners` ask for it."""
        select, expand = _select(request), self._owners_select(request)
        body = {k: v for k, v in self.application_body(app).items() if select is None or k in select}
        if expand is not None:
            body["owners"] = self._owners(app, expand)
        return body

    def _owners_select(self, request: Request) -> set[str] | None:
        """The owner fields `$expand=owners` or `$expand=owners($select=id)` asks for; None without $expand."""
        if "$expand" not in request.query:
            return None
        match = _OWNERS_EXPAND.match(request.query["$expand"].strip())
        if not match:
            raise ApiError(400, "Request_BadRequest", "Parsing OData Select and Expand failed: Could not find a "
                           f"property named '{request.query['$expand'].split('(')[0]}' on type "
                           "'microsoft.graph.application'.")
        return {f.strip() for f in match.group("select").split(",") if f.strip()} if match.group("select") else set()

    def _owners(self, app: Application, fields: set[str]) -> list[dict[str, Any]]:
        """The application's owners' service principals (owners are kept as the owning identities' appIds)."""
        return self._owner_bodies(app.owners, fields)

    def _owner_bodies(self, owners: set[str], fields: set[str]) -> list[dict[str, Any]]:
        """Owners are service principals (kept by their appIds) and member users (by their object ids)."""
        with self.state.lock:
            principals = [(o.sp_object_id, "servicePrincipal", self.service_principal_body(o))
                          for o in (self.state.applications.get(a) for a in owners) if o and o.has_service_principal]
            users = [(u.object_id, "user", {"id": u.object_id, "displayName": u.display_name,
                                            "userPrincipalName": u.user_principal_name})
                     for u in (self.state.users.get(a) for a in owners) if u]
            found = self.state.unordered(principals + users, key=lambda o: o[0])
        return [{"@odata.type": f"#microsoft.graph.{kind}",
                 **{k: v for k, v in body.items() if not fields or k in fields}} for _, kind, body in found]

    # ------------------------------------------------------------------ applications

    def list_applications(self, request: Request) -> Response:
        """GET /applications with `$filter` (graphfilter.py), `$select`, paged (`$top`)."""
        self._caller(request)
        select = _select(request)
        wanted = _filter(request, APPLICATION)
        with self.state.lock:
            found = [self._shaped(a, request) for a in self.state.unordered(self.state.applications.values(),
                                                                             key=lambda a: a.object_id)
                     if wanted.matches(self.application_body(a))]
        suffix = f"({','.join(sorted(select))})" if select else ""
        return self._page(request, found, "applications" + suffix)

    def _page(self, request: Request, items: list[dict[str, Any]], context: str) -> Response:
        """One page of a list: 100 objects (`$top`: 1-999), with `@odata.nextLink` to the next while there is one,
        which carries the request's other query options (Graph's paging: a client follows the link as it is)."""
        size, start = _page_size(request), _skip_token(request)
        body: dict[str, Any] = {"@odata.context": self._context(context), "value": items[start:start + size]}
        if start + size < len(items):
            query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = str(start + size)
            body["@odata.nextLink"] = f"{self.base_url}{request.path}?{urlencode(query)}"
        return Response(200, body)

    def get_application(self, request: Request) -> Response:
        self._caller(request)
        return Response(200, self._shaped(self._by_object_id(request), request))

    def get_by_app_id(self, request: Request) -> Response:
        self._caller(request)
        app = self.state.applications.get(request.params["appid"].lower())
        if app is None:
            raise _not_found(request.params["appid"])
        return Response(200, self._shaped(app, request))

    def get_by_unique_name(self, request: Request) -> Response:
        self._caller(request)
        app = self.state.application_by_unique_name(request.params["unique"])
        if app is None:
            raise _not_found(request.params["unique"])
        return Response(200, self._shaped(app, request))

    def create_application(self, request: Request) -> Response:
        """POST /applications: a new application with no service principal. Its creator becomes an owner: Graph's
        pages do not say so, field reports do (msgraph-sdk-powershell#829: "the owner is automatically set to the
        ServicePrincipal of the main application"), and OwnedBy's "apps that this app creates or owns" implies it."""
        caller = self._caller(request)
        self._may_create(caller)
        changes = application_changes(request.json(code="BadRequest"), None)
        return self._created(caller, changes)

    def update_application(self, request: Request) -> Response:
        """PATCH /applications/{id}: the properties given (see the module's docstring for how `api` merges)."""
        caller = self._caller(request)
        app = self._by_object_id(request)
        self._may_write(caller, app)
        body = request.json(code="BadRequest")
        with self.state.lock:  # checked against the application as stored, and written, as one step
            self._apply(app, application_changes(body, app))
        return Response(204)

    def upsert_application(self, request: Request) -> Response:
        """PATCH /applications(uniqueName='...'): updates the application of that uniqueName (204), or, with
        `Prefer: create-if-missing`, creates it when there is none (201); without the header a missing one is 404."""
        caller = self._caller(request)
        unique_name = request.params["unique"]
        body = request.json(code="BadRequest")
        if isinstance(body, dict) and body.get("uniqueName", unique_name) != unique_name:
            raise _invalid("uniqueName")
        with self.state.lock:
            app = self.state.application_by_unique_name(unique_name)
            if app is not None:
                self._may_write(caller, app)
                self._apply(app, application_changes(body, app))
                return Response(204)
            if "create-if-missing" not in request.headers.get("prefer", "").lower():
                raise _not_found(unique_name)
            self._may_create(caller)
            changes = application_changes(body, None)
            return self._created(caller, {**changes, "uniqueName": unique_name})

    def _created(self, caller: Application, changes: dict[str, Any]) -> Response:
        """A new application with these properties, owned by its creator: 201 and its body."""
        with self.state.lock:
            if changes.get("uniqueName") and self.state.application_by_unique_name(changes["uniqueName"]):
                raise ApiError(409, "Request_MultipleObjectsWithSameKeyValue", "Another object with the same value "
                               f"for property uniqueName already exists: '{changes['uniqueName']}'.")
            app = self.state.add_application(changes["displayName"], owners={caller.app_id},
                                             with_service_principal=False, created_at=self.state.now())
            self._apply(app, changes)
        return Response(201, {"@odata.context": self._context("applications/$entity"), **self.application_body(app)})

    def _apply(self, app: Application, changes: dict[str, Any]) -> None:
        """Write checked changes (application_changes) to the stored application."""
        with self.state.lock:
            app.display_name = changes.get("displayName", app.display_name)
            app.unique_name = changes.get("uniqueName", app.unique_name)
            app.identifier_uris = changes.get("identifierUris", app.identifier_uris)
            app.sign_in_audience = changes.get("signInAudience", app.sign_in_audience)
            app.app_role_objects = changes.get("appRoles", app.app_role_objects)
            app.api = changes.get("api", app.api)
            app.notes = changes.get("notes", app.notes)

    def delete_application(self, request: Request) -> Response:
        """The application and its service principal go to the deleted items for 30 days; its passwords stop
        signing in at once."""
        caller = self._caller(request)
        app = self._by_object_id(request)
        self._may_write(caller, app)
        self.state.delete_application(app)
        return Response(204)

    def add_password(self, request: Request) -> Response:
        """POST .../addPassword on an application or on its service principal: each keeps passwords of its own (the
        service principal's are in its `passwordCredentials`, not the application's), and either signs in."""
        caller = self._caller(request)
        app, on_principal = self._credential_holder(request, caller)
        body = request.json(code="BadRequest")
        credential = body.get("passwordCredential") if isinstance(body, dict) else None
        if credential is None:
            credential = {}
        if not isinstance(credential, dict):
            raise ApiError(400, "BadRequest", "Invalid passwordCredential: expected an object.")
        end = credential.get("endDateTime")
        try:
            end_time = parse_time(end) if end else None
        except (ValueError, AttributeError) as err:
            raise ApiError(400, "BadRequest", f"Invalid value for endDateTime: {end!r}.") from err
        if end_time is not None and end_time <= self.state.now():
            raise ApiError(400, "InvalidRequest", "The endDateTime must be in the future.")
        password, text = self.state.add_password(app, str(credential.get("displayName") or ""), end=end_time,
                                                 service_principal=on_principal)
        created = password.graph()
        created["secretText"] = text  # Graph returns the text once, here
        return Response(200, {"@odata.context": self._context("microsoft.graph.passwordCredential"), **created})

    def remove_password(self, request: Request) -> Response:
        caller = self._caller(request)
        app, on_principal = self._credential_holder(request, caller)
        body = request.json(code="BadRequest")
        key_id = body.get("keyId") if isinstance(body, dict) else None
        if not isinstance(key_id, str) or not self.state.remove_password(app, key_id, service_principal=on_principal):
            holder = "service principal" if on_principal else "application"
            raise ApiError(400, "Request_BadRequest", f"No password credential with keyId '{key_id}' exists on "
                           f"the {holder}.")
        return Response(204)

    def _credential_holder(self, request: Request, caller: Application | MemberUser) -> tuple[Application, bool]:
        """(the application, whether the URL names its service principal), once the caller may write it."""
        if "/servicePrincipals/" in request.path:
            principal = self._principal(request)
            self._may_write_principal(caller, principal)
            return principal, True
        app = self._by_object_id(request)
        self._may_write(caller, app)
        return app, False

    # ------------------------------------------------------------------ service principals

    def list_service_principals(self, request: Request) -> Response:
        """GET /servicePrincipals with `$filter` (graphfilter.py), `$select`, paged (`$top`)."""
        self._caller(request)
        select = _select(request, _PRINCIPAL_SELECTABLE, "servicePrincipal")
        wanted = _filter(request, SERVICE_PRINCIPAL)
        with self.state.lock:
            bodies = [self.service_principal_body(a) for a in self.state.unordered(self.state.service_principals(),
                                                                                    key=lambda a: a.sp_object_id)]
        found = [{k: v for k, v in b.items() if select is None or k in select} for b in bodies if wanted.matches(b)]
        suffix = f"({','.join(sorted(select))})" if select else ""
        return self._page(request, found, "servicePrincipals" + suffix)

    def _principal(self, request: Request) -> Application:
        """The application whose service principal the URL names, by object id or by appId."""
        if "appid" in request.params:
            found = self.state.service_principal_by_app_id(request.params["appid"])
        else:
            found = self.state.service_principal(request.params["id"])
        if found is None:
            raise _not_found(request.params.get("appid") or request.params["id"])
        return found

    def get_service_principal(self, request: Request) -> Response:
        """The service principal as `$select` and `$expand=owners` ask for it (its own owners, not its
        application's)."""
        self._caller(request)
        principal = self._principal(request)
        select, expand = _select(request, _PRINCIPAL_SELECTABLE, "servicePrincipal"), self._owners_select(request)
        body = {k: v for k, v in self.service_principal_body(principal).items() if select is None or k in select}
        if expand is not None:
            body["owners"] = self._owner_bodies(principal.sp_owners, expand)
        return Response(200, body)

    def delete_service_principal(self, request: Request) -> Response:
        """DELETE /servicePrincipals/{id}: the service principal goes, with its own passwords and owners; the
        application stays, and cannot sign in until it has a service principal again (AADSTS7000229)."""
        caller = self._caller(request)
        principal = self._principal(request)
        self._may_write_principal(caller, principal)
        self.state.delete_service_principal(principal)
        return Response(204)

    def _may_write_principal(self, caller: Application | MemberUser, principal: Application) -> None:
        """ReadWrite.All, or OwnedBy (a member user) on a service principal it owns (serviceprincipal-addpassword,
        serviceprincipal-delete). Microsoft Graph's own is never written (assumed: it is Microsoft's)."""
        if principal is self.state.microsoft_graph:
            raise _denied()
        if GRAPH_READ_WRITE_ALL in caller.graph_permissions:
            return
        if caller.graph_permissions & {GRAPH_OWNED_BY, MEMBER_USER} and caller.app_id in principal.sp_owners:
            return
        raise _denied()

    def get_by_ids(self, request: Request) -> Response:
        """POST /directoryObjects/getByIds {"ids", "types"} (directoryobject-getbyids): the objects among those ids
        of those types (every type without `types`), each with its `@odata.type`, in the order asked; ids found
        nowhere are left out. What the caller may not read comes with limited information, `@odata.type` and `id`
        and the rest null (the page's "Limited information returned for inaccessible member objects"): here a user,
        to an application, since the sandbox grants applications no permission that reads users. Assumed: any
        permission that reads applications suffices (the page names Directory.Read.All, which the sandbox has not)."""
        caller = self._caller(request)
        body = request.json(code="BadRequest")
        ids = body.get("ids") if isinstance(body, dict) else None
        types = body.get("types") if isinstance(body, dict) else None
        if not ids or not _strings(ids) or not (types is None or _strings(types)):
            raise ApiError(400, "Request_BadRequest", "Invalid value specified for property 'ids' of resource "
                           "'DirectoryObject'.")
        wanted = {t.rsplit(".", 1)[-1].lower() for t in types or ("application", "servicePrincipal", "user")}
        value = [found for i in ids if (found := self._directory_object(i.lower(), wanted, caller)) is not None]
        return Response(200, {"@odata.context": self._context("directoryObjects"), "value": value})

    def _directory_object(self, object_id: str, types: set[str], caller: Application | MemberUser
                          ) -> dict[str, Any] | None:
        with self.state.lock:
            principal = self.state.service_principal(object_id)
            if principal is not None and "serviceprincipal" in types:
                return {"@odata.type": "#microsoft.graph.servicePrincipal", **self.service_principal_body(principal)}
            app = self.state.application_by_object_id(object_id)
            if app is not None and "application" in types:
                return {"@odata.type": "#microsoft.graph.application", **self.application_body(app)}
            user = self.state.users.get(object_id)
            if user is not None and "user" in types:
                readable = MEMBER_USER in caller.graph_permissions
                return {"@odata.type": "#microsoft.graph.user", "id": user.object_id,
                        "displayName": user.display_name if readable else None,
                        "userPrincipalName": user.user_principal_name if readable else None}
        return None

    def create_service_principal(self, request: Request) -> Response:
        """POST /servicePrincipals {"appId"}: OwnedBy may make one only for an application it owns (Microsoft's
        psignoret, microsoft-graph-docs#16138); a second one for the same application is a conflict."""
        caller = self._caller(request)
        self._may_create(caller)
        body = request.json(code="BadRequest")
        app_id = body.get("appId") if isinstance(body, dict) else None
        if not isinstance(app_id, str) or not app_id:
            raise ApiError(400, "Request_BadRequest", "Invalid value specified for property 'appId' of resource "
                           "'ServicePrincipal'.")
        with self.state.lock:
            app = self.state.applications.get(app_id.lower())
            if app is None:  # Graph's words (field reports: Azure/azure-cli tests, hashicorp/go-azure-sdk)
                raise ApiError(400, "Request_BadRequest", f"The appId '{app_id}' of the service principal does not "
                               "reference a valid application object.")
            self._may_write(caller, app)
            if app.has_service_principal:
                # 409 with Graph's words; the service principal name in use is the appId (field report:
                # Azure/reliable-web-app-pattern-java#185; KelvinTegelaar/CIPP#1142 for the code).
                raise ApiError(409, "Request_MultipleObjectsWithSameKeyValue", "The service principal cannot be "
                               f"created, updated, or restored because the service principal name {app.app_id} is "
                               "already in use.")
            self.state.add_service_principal(app)
            app.sp_owners = {caller.app_id}
        return Response(201, {"@odata.context": self._context("servicePrincipals/$entity"),
                              **self.service_principal_body(app)})

    def owned_objects(self, request: Request) -> Response:
        """The applications the service principal owns, 100 a page (`$top`: 1-999), with `@odata.nextLink`."""
        self._caller(request)
        principal = self._principal(request)
        size, start = _page_size(request), _skip_token(request)
        with self.state.lock:
            owned = self.state.unordered((a for a in self.state.applications.values() if principal.app_id in a.owners),
                                         key=lambda a: a.object_id)
            page = [{"@odata.type": "#microsoft.graph.application", **self._shaped(a, request)}
                    for a in owned[start:start + size]]
        context = "applications" if request.params.get("cast") else "directoryObjects"
        body: dict[str, Any] = {"@odata.context": self._context(context), "value": page}
        if start + size < len(owned):
            body["@odata.nextLink"] = (f"{self.base_url}{request.path}?$top={size}&$skiptoken={start + size}")
        return Response(200, body)

    # ------------------------------------------------------------------ owners and federated credentials

    def _owned(self, request: Request) -> tuple[Application, set[str]]:
        """(the application, the owner set the URL names): the application's, or its service principal's."""
        if "/servicePrincipals/" in request.path:
            principal = self._principal(request)
            return principal, principal.sp_owners
        app = self._by_object_id(request)
        return app, app.owners

    def list_owners(self, request: Request) -> Response:
        self._caller(request)
        _, owners = self._owned(request)
        return Response(200, {"@odata.context": self._context("directoryObjects"),
                              "value": self._owner_bodies(owners, set())})

    def add_owner(self, request: Request) -> Response:
        """POST .../owners/$ref {"@odata.id": ".../directoryObjects/{id}"} (application-post-owners): a member user who
        owns it, or ReadWrite.All, may add any user or service principal as another owner ("Application.ReadWrite.
        OwnedBy isn't sufficient to add another owner"). Ownership is not exclusive: that is how anyone who owns an
        application can make the remediator its co-owner."""
        caller = self._caller(request)
        app, owners = self._owned(request)
        self._may_write_owned(caller, app, owners)
        body = request.json(code="BadRequest")
        reference = body.get("@odata.id") if isinstance(body, dict) else None
        if not isinstance(reference, str) or not re.search(rf"/(?:directoryObjects|servicePrincipals|users)/{_GUID}$",
                                                           reference):
            raise ApiError(400, "Request_BadRequest", "Invalid object identifier '" + str(reference) + "'.")
        object_id = reference.rsplit("/", 1)[1].lower()
        new_owner = self.state.service_principal(object_id) or self.state.users.get(object_id)
        if new_owner is None:
            raise _not_found(object_id)
        with self.state.lock:
            if new_owner.app_id in owners:
                raise ApiError(400, "Request_BadRequest", "One or more added object references already exist for "
                               "the following modified properties: 'owners'.")
            owners.add(new_owner.app_id)
        return Response(204)

    def remove_owner(self, request: Request) -> Response:
        caller = self._caller(request)
        app, owners = self._owned(request)
        self._may_write_owned(caller, app, owners)
        gone = self.state.service_principal(request.params["owner"]) or self.state.users.get(
            request.params["owner"].lower())
        with self.state.lock:
            if gone is None or gone.app_id not in owners:
                raise _not_found(request.params["owner"])
            owners.discard(gone.app_id)
        return Response(204)

    def _may_write_owned(self, caller: Application | MemberUser, app: Application, owners: set[str]) -> None:
        """Who may change the owners: ReadWrite.All, or a member user who owns it. An application's OwnedBy is "not
        sufficient to add another owner" (application-post-owners)."""
        if GRAPH_READ_WRITE_ALL in caller.graph_permissions:
            return
        if MEMBER_USER in caller.graph_permissions and caller.app_id in owners | app.owners:
            return
        raise _denied()

    def list_federated_credentials(self, request: Request) -> Response:
        self._caller(request)
        app = self._by_object_id(request)
        with self.state.lock:
            found = [dict(c) for c in app.federated_credentials]
        return Response(200, {"@odata.context": self._context(f"applications('{app.object_id}')/"
                                                              "federatedIdentityCredentials"), "value": found})

    def add_federated_credential(self, request: Request) -> Response:
        """POST .../federatedIdentityCredentials {"name", "issuer", "subject", "audiences"} by an owner: a way to
        sign in as the application with another issuer's token, no secret needed."""
        caller = self._caller(request)
        app = self._by_object_id(request)
        self._may_write(caller, app)
        body = request.json(code="BadRequest")
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) and body[k]
                                                 for k in ("name", "issuer", "subject")):
            raise ApiError(400, "Request_BadRequest", "name, issuer and subject are required.")
        created = {"id": str(uuid.uuid4()), "name": body["name"], "issuer": body["issuer"],
                   "subject": body["subject"], "audiences": list(body.get("audiences") or ["api://AzureADTokenExchange"]),
                   "description": body.get("description")}
        with self.state.lock:
            app.federated_credentials.append(created)
        return Response(201, created)

    # ------------------------------------------------------------------ what a principal holds

    def app_role_assignments(self, request: Request) -> Response:
        """The app roles granted to the service principal: Microsoft Graph's application permissions, then the roles
        of the tenant's APIs (appRoleAssignment objects, serviceprincipal-list-approleassignments)."""
        self._may_read_all(self._caller(request))
        principal = self._principal(request)
        with self.state.lock:
            graph = self.state.microsoft_graph
            granted = [(graph, GRAPH_APPLICATION_PERMISSIONS[p].id) for p in sorted(principal.graph_permissions)]
            for api_app_id, roles in sorted(principal.granted_roles.items()):
                api = self.state.service_principal_by_app_id(api_app_id)
                granted += [(api, api.app_roles[role]) for role in sorted(roles) if api and role in api.app_roles]
            value = [self._assignment(principal, resource, role_id) for resource, role_id in granted]
        return Response(200, {"@odata.context": self._context("appRoleAssignments"), "value": value})

    def _assignment(self, principal: Application, resource: Application, role_id: str) -> dict[str, Any]:
        key = uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:app-role-assignment:{principal.sp_object_id}:"
                                             f"{resource.sp_object_id}:{role_id}")
        raw = uuid.UUID(principal.sp_object_id).bytes_le + key.bytes_le
        return {"id": base64.urlsafe_b64encode(raw).decode().rstrip("="), "deletedDateTime": None,
                "appRoleId": role_id,
                "createdDateTime": utc_iso(principal.created_at) if principal.created_at else CREATED_LONG_AGO,
                "principalDisplayName": principal.display_name, "principalId": principal.sp_object_id,
                "principalType": "ServicePrincipal", "resourceDisplayName": resource.display_name,
                "resourceId": resource.sp_object_id}

    def transitive_member_of(self, request: Request) -> Response:
        """The directory roles the service principal holds (the sandbox has no groups), as directoryRole objects;
        `$select` picks their properties. Cast to microsoft.graph.directoryRole or not, the same objects."""
        self._may_read_all(self._caller(request))
        principal = self._principal(request)
        fields = _role_fields(request)
        with self.state.lock:
            roles = [DIRECTORY_ROLES[t] for t in sorted(principal.directory_roles) if t in DIRECTORY_ROLES]
        value = [{"@odata.type": "#microsoft.graph.directoryRole",
                  **{k: v for k, v in self._directory_role(role).items() if k in fields}} for role in roles]
        what = "directoryRoles" if request.params.get("cast") else "directoryObjects"
        if "$select" in request.query:
            what += f"({','.join(f for f in DIRECTORY_ROLE_FIELDS if f in fields)})"
        return Response(200, {"@odata.context": self._context(what), "value": value})

    def _directory_role(self, role: DirectoryRoleTemplate) -> dict[str, Any]:
        """A built-in role activated in the tenant (directoryrole-get)."""
        return {"id": directory_role_object_id(self.state.tenant_id, role.template_id), "deletedDateTime": None,
                "description": role.description, "displayName": role.display_name,
                "roleTemplateId": role.template_id}

    def me(self, request: Request) -> Response:
        """`/me` has no signed-in user with an application's token (every token the sandbox issues)."""
        self._authenticated(request)
        raise ApiError(400, "BadRequest", ME_REFUSAL)

    # ------------------------------------------------------------------ deleted items

    def list_deleted(self, request: Request) -> Response:
        """GET /directory/deletedItems/microsoft.graph.application (or .servicePrincipal), with `$filter`."""
        self._may_read_all(self._caller(request))
        kind = request.params["type"].lower()
        wanted = _filter(request, APPLICATION if kind == "application" else SERVICE_PRINCIPAL)
        self.state.purge_deleted()
        with self.state.lock:
            deleted = [a for a in self.state.unordered(self.state.deleted_applications.values(),
                                                       key=lambda a: a.object_id)
                       if kind == "application" or a.has_service_principal]
            bodies = [self.application_body(a) if kind == "application" else self.service_principal_body(a)
                      for a in deleted]
        found = [b for b in bodies if wanted.matches(b)]
        context = "applications" if kind == "application" else "servicePrincipals"
        return Response(200, {"@odata.context": self._context(context), "value": found})

    def get_deleted(self, request: Request) -> Response:
        """One deleted application or service principal, by its object id."""
        self._may_read_all(self._caller(request))
        object_id = request.params["id"].lower()
        self.state.purge_deleted()
        with self.state.lock:
            for app in self.state.deleted_applications.values():
                if app.object_id == object_id:
                    body = {"@odata.type": "#microsoft.graph.application", **self.application_body(app)}
                    break
                if app.has_service_principal and app.sp_object_id == object_id:
                    body = {"@odata.type": "#microsoft.graph.servicePrincipal", **self.service_principal_body(app)}
                    break
            else:
                raise _not_found(request.params["id"])
        return Response(200, {"@odata.context": self._context("directory/deletedItems/$entity"), **body})


_INFO = {"termsOfServiceUrl": None, "supportUrl": None, "privacyStatementUrl": None, "marketingUrl": None,
         "logoUrl": None}


def application_changes(body: Any, stored: Application | None) -> dict[str, Any]:
    """The properties a POST, PATCH or upsert body sets, checked, `api` already merged with the stored one (None: the
    application is new). ApiError as Graph refuses a body, before anything is written."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "Empty Payload. JSON content expected.")
    changes = copy.deepcopy({k: body[k] for k in _WRITABLE if k in body})
    if stored is None or "displayName" in changes:
        _require(isinstance(changes.get("displayName"), str) and changes["displayName"].strip(), "displayName")
    if "uniqueName" in changes:
        _require(isinstance(changes["uniqueName"], str) and changes["uniqueName"], "uniqueName")
        _require(stored is None or stored.unique_name == changes["uniqueName"], "uniqueName")  # immutable
    _require(_strings(changes.get("identifierUris", [])), "identifierUris")
    _require(changes.get("signInAudience", SIGN_IN_AUDIENCES[0]) in SIGN_IN_AUDIENCES, "signInAudience")
    _require(_objects_with_ids(changes.get("appRoles", [])), "appRoles")
    _require(changes.get("notes") is None or (isinstance(changes["notes"], str) and len(changes["notes"]) <= NOTES_MAX),
             "notes")
    if "api" in changes:
        changes["api"] = _merged_api(changes["api"], stored)
    return changes


_WRITABLE = ("displayName", "uniqueName", "identifierUris", "signInAudience", "appRoles", "api", "notes")
NOTES_MAX = 1024  # application resource type: notes, "maximum length is 1024 characters"


def _merged_api(api: Any, stored: Application | None) -> dict[str, Any]:
    """The stored `api` with the given sub-properties laid over it, checked; a pre-authorization must name scopes
    the application had before this request."""
    _require(isinstance(api, dict), "api")
    _require(_objects_with_ids(api.get("oauth2PermissionScopes", [])), "api")
    preauthorized = api.get("preAuthorizedApplications", [])
    _require(isinstance(preauthorized, list) and all(
        isinstance(p, dict) and isinstance(p.get("appId"), str) and _strings(p.get("delegatedPermissionIds", []))
        for p in preauthorized), "api")
    known = {scope["id"].lower() for scope in (stored.api if stored else default_api())["oauth2PermissionScopes"]}
    if any(i.lower() not in known for p in preauthorized for i in p.get("delegatedPermissionIds", [])):
        raise ApiError(400, "InvalidValue", f"Property {PREAUTHORIZED_TARGET} has a Permission Id that cannot be "
                       "found in the AppPermissions sets.", details=[{"target": PREAUTHORIZED_TARGET,
                                                                      "code": "InvalidValue"}])
    return {**(copy.deepcopy(stored.api) if stored else default_api()), **api}


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _objects_with_ids(value: Any) -> bool:
    """A list of objects, each with a GUID `id` (appRoles, oauth2PermissionScopes)."""
    return isinstance(value, list) and all(
        isinstance(v, dict) and isinstance(v.get("id"), str) and re.fullmatch(_GUID, v["id"]) for v in value)


def _require(ok: Any, field: str) -> None:
    if not ok:
        raise _invalid(field)


def _invalid(field: str) -> ApiError:
    return ApiError(400, "Request_BadRequest", f"Invalid value specified for property '{field}' of resource "
                    "'Application'.")


def _denied() -> ApiError:
    return ApiError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def _not_found(identifier: str) -> ApiError:
    return ApiError(404, "Request_ResourceNotFound", f"Resource '{identifier}' does not exist or one of its queried "
                    "reference-property objects are not present.")


_SELECTABLE = frozenset({"id", "deletedDateTime", "isFallbackPublicClient", "appId", "applicationTemplateId",
                         "uniqueName", "identifierUris", "createdDateTime", "displayName", "isDeviceOnlyAuthSupported",
                         "groupMembershipClaims", "optionalClaims", "addIns", "publisherDomain", "samlMetadataUrl",
                         "signInAudience", "tags", "tokenEncryptionKeyId", "api", "appRoles", "publicClient", "info",
                         "keyCredentials", "parentalControlSettings", "passwordCredentials",
                         "requiredResourceAccess", "web", "notes", "windows"})


_PRINCIPAL_SELECTABLE = frozenset({"id", "deletedDateTime", "accountEnabled", "appDisplayName", "appId",
                                   "appOwnerOrganizationId", "appRoleAssignmentRequired", "displayName", "homepage",
                                   "logoutUrl", "publisherName", "replyUrls", "servicePrincipalNames",
                                   "servicePrincipalType", "tags", "addIns", "appRoles", "info", "keyCredentials",
                                   "oauth2PermissionScopes", "passwordCredentials"})


def _select(request: Request, selectable: frozenset[str] = _SELECTABLE, type_name: str = "application"
            ) -> set[str] | None:
    if "$select" not in request.query:
        return None
    fields = {f.strip() for f in request.query["$select"].split(",") if f.strip()}
    unknown = fields - selectable
    if unknown:
        raise ApiError(400, "Request_BadRequest", f"Could not find a property named '{sorted(unknown)[0]}' on "
                       f"type 'microsoft.graph.{type_name}'.")
    return fields


def _role_fields(request: Request) -> set[str]:
    """The directoryRole properties `$select` asks for; all of them without it."""
    if "$select" not in request.query:
        return set(DIRECTORY_ROLE_FIELDS)
    fields = {f.strip() for f in request.query["$select"].split(",") if f.strip()}
    unknown = sorted(fields - set(DIRECTORY_ROLE_FIELDS))
    if unknown:
        raise ApiError(400, "Request_BadRequest", f"Could not find a property named '{unknown[0]}' on type "
                       "'microsoft.graph.directoryRole'.")
    return fields


def _filter(request: Request, supported: Filterable) -> Filter:
    return parse_filter(request.query.get("$filter"), supported)


def _page_size(request: Request) -> int:
    text = request.query.get("$top", str(OWNED_OBJECTS_PAGE))
    size = int(text) if text.isdigit() else 0
    if not 1 <= size <= 999:  # Graph's words for a page size out of range
        raise ApiError(400, "Request_BadRequest", f"Invalid page size specified: '{text}'. Must be between 1 and 999 "
                       "inclusive.")
    return size


def _skip_token(request: Request) -> int:
    token = request.query.get("$skiptoken", "0")
    if not token.isdigit():
        raise ApiError(400, "Request_BadRequest", f"Invalid $skiptoken '{token}'.")
    return int(token)
