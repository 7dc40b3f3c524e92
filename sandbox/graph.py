"""Microsoft Graph v1.0: applications (with their passwords and owners), service principals, deleted items.

Shapes follow the official examples in tests/reference/ (graph_application_addPassword_v1.0, _removePassword_,
graph_application_create_v1.0, graph_servicePrincipal_create_v1.0, graph_directory_deletedItems_list_v1.0).
JSON batching (`POST /$batch`) is sandbox/batching.py; a throttled request answers Graph's sample 429
(graph_throttling_429_v1.0).

Permissions as Microsoft documents them (permissions reference, serviceprincipal-get, application-get):
every one of Application.Read.All, Application.ReadWrite.OwnedBy and Application.ReadWrite.All reads every
application and service principal in the tenant ("The Application.ReadWrite.OwnedBy permission allows an app to
call GET /applications and GET /servicePrincipals to list all applications and service principals in the
tenant"). Writes (addPassword, removePassword, PATCH, DELETE, POST /servicePrincipals for an application) need
ReadWrite.All, or OwnedBy on an application the caller owns: otherwise 403 Authorization_RequestDenied. Creating
an application needs OwnedBy or ReadWrite.All. Deleted items need Application.Read.All (the least privileged
permission, directory-deleteditems-list/-get) or ReadWrite.All; OwnedBy alone is refused.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sandbox.batching import JsonBatch
from sandbox.server import Api, Request, Response
from sandbox.state import (
    GRAPH_OWNED_BY,
    GRAPH_PERMISSIONS,
    GRAPH_READ_ALL,
    GRAPH_READ_WRITE_ALL,
    ApiError,
    Application,
    SandboxState,
    parse_time,
    utc_iso,
)

_APP_ID_FILTER = re.compile(r"^\s*appId\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
_OWNERS_EXPAND = re.compile(r"^owners(?:\(\$select=(?P<select>[A-Za-z,\s]+)\))?$", re.IGNORECASE)
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
OWNED_OBJECTS_PAGE = 100  # Graph's default page for directory objects; $top may ask for 1-999
CREATED_LONG_AGO = "2025-01-01T00:00:00Z"  # createdDateTime of the applications a scenario starts with


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
        self.route("GET", app, "GET /applications/{id}", self.get_application)
        self.route("PATCH", app, "PATCH /applications/{id}", self.update_application)
        self.route("DELETE", app, "DELETE /applications/{id}", self.delete_application)
        self.route("POST", rf"{app}/addPassword", "POST /applications/{id}/addPassword", self.add_password)
        self.route("POST", rf"{app}/removePassword", "POST /applications/{id}/removePassword", self.remove_password)
        self.route("GET", r"/v1\.0/servicePrincipals", "GET /servicePrincipals", self.list_service_principals)
        self.route("POST", r"/v1\.0/servicePrincipals", "POST /servicePrincipals", self.create_service_principal)
        self.route("GET", r"/v1\.0/servicePrincipals\(appId='(?P<appid>[^']*)'\)", "GET /servicePrincipals(appId=)",
                   self.get_service_principal)
        self.route("GET", principal, "GET /servicePrincipals/{id}", self.get_service_principal)
        self.route("GET", rf"{principal}/ownedObjects(?P<cast>/microsoft\.graph\.application)?",
                   "GET /servicePrincipals/{id}/ownedObjects", self.owned_objects)
        self.route("GET", rf"{deleted}/microsoft\.graph\.(?P<type>application|servicePrincipal)",
                   "GET /directory/deletedItems/{type}", self.list_deleted)
        self.route("GET", rf"{deleted}/(?P<id>{_GUID})", "GET /directory/deletedItems/{id}", self.get_deleted)
        self.json_batch = JsonBatch(self)

    def error_body(self, err: ApiError) -> Any:
        inner = {"date": utc_iso(self.state.now())[:19], "request-id": str(uuid.uuid4()),
                 "client-request-id": str(uuid.uuid4())}
        if err.status == 429:  # the throttling page's sample response
            inner = {"code": "429", **inner, "message": "Please retry after", "status": "429"}
        return {"error": {"code": err.code, "message": err.message, "innerError": inner}}

    def fault_response(self, kind: str, status: int, retry_after: float) -> ApiError:
        if kind == "throttle":  # Graph's words (throttling page, "Sample response")
            return ApiError(429, "TooManyRequests", "Please retry again later.", {"Retry-After": f"{retry_after:g}"})
        return ApiError(status, "serviceNotAvailable" if status == 503 else "generalException",
                        "The service is temporarily unavailable.", {"Retry-After": f"{retry_after:g}"})

    def _context(self, what: str) -> str:
        return f"{self.base_url}/v1.0/$metadata#{what}"

    # ------------------------------------------------------------------ who may do what

    def _caller(self, request: Request) -> Application:
        """The calling application, which must hold one of the Graph permissions the sandbox knows."""
        caller = self.state.caller(request.headers.get("authorization"), "graph")
        if caller is None:
            raise ApiError(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        if not caller.graph_permissions & GRAPH_PERMISSIONS:
            raise _denied()
        return caller

    def _may_write(self, caller: Application, app: Application) -> None:
        if GRAPH_READ_WRITE_ALL in caller.graph_permissions:
            return
        if GRAPH_OWNED_BY in caller.graph_permissions and caller.app_id in app.owners:
            return
        raise _denied()

    def _may_create(self, caller: Application) -> None:
        if not caller.graph_permissions & {GRAPH_OWNED_BY, GRAPH_READ_WRITE_ALL}:
            raise _denied()

    def _may_read_deleted(self, caller: Application) -> None:
        if not caller.graph_permissions & {GRAPH_READ_ALL, GRAPH_READ_WRITE_ALL}:
            raise _denied()

    def _by_object_id(self, request: Request) -> Application:
        app = self.state.application_by_object_id(request.params["id"])
        if app is None:
            raise _not_found(request.params["id"])
        return app

    # ------------------------------------------------------------------ bodies

    def application_body(self, app: Application) -> dict[str, Any]:
        """An application with the properties graph_application_create_v1.0.json shows."""
        return {
            "id": app.object_id, "deletedDateTime": utc_iso(app.deleted_at) if app.deleted_at else None,
            "isFallbackPublicClient": None, "appId": app.app_id, "applicationTemplateId": None,
            "identifierUris": list(app.identifier_uris),
            "createdDateTime": utc_iso(app.created_at) if app.created_at else CREATED_LONG_AGO,
            "displayName": app.display_name, "isDeviceOnlyAuthSupported": None, "groupMembershipClaims": None,
            "optionalClaims": None, "addIns": [], "publisherDomain": "sandbox.onmicrosoft.com",
            "samlMetadataUrl": None, "signInAudience": "AzureADMyOrg", "tags": [], "tokenEncryptionKeyId": None,
            "api": {"requestedAccessTokenVersion": 2, "acceptMappedClaims": None, "knownClientApplications": [],
                    "oauth2PermissionScopes": [], "preAuthorizedApplications": []},
            "appRoles": [_app_role(value, role_id) for value, role_id in app.app_roles.items()],
            "publicClient": {"redirectUris": []}, "info": _INFO, "keyCredentials": [],
            "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
            "passwordCredentials": [p.graph() for p in app.passwords], "requiredResourceAccess": [],
            "web": {"redirectUris": [], "homePageUrl": None, "logoutUrl": None,
                    "implicitGrantSettings": {"enableIdTokenIssuance": False, "enableAccessTokenIssuance": False}},
        }

    def service_principal_body(self, app: Application) -> dict[str, Any]:
        """An application's service principal with the properties graph_servicePrincipal_create_v1.0.json shows."""
        return {
            "id": app.sp_object_id, "deletedDateTime": utc_iso(app.deleted_at) if app.deleted_at else None,
            "accountEnabled": True, "appDisplayName": app.display_name, "appId": app.app_id,
            "appOwnerOrganizationId": self.state.tenant_id, "appRoleAssignmentRequired": False,
            "displayName": app.display_name, "homepage": None, "logoutUrl": None, "publisherName": "sandbox",
            "replyUrls": [], "servicePrincipalNames": [app.app_id, *app.identifier_uris],
            "servicePrincipalType": "Application", "tags": [], "addIns": [],
            "appRoles": [_app_role(value, role_id) for value, role_id in app.app_roles.items()], "info": _INFO,
            "keyCredentials": [], "oauth2PermissionScopes": [], "passwordCredentials": [],
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
        """The owners' service principals (owners are kept as the owning identities' appIds)."""
        with self.state.lock:
            owners = [self.state.applications[a] for a in sorted(app.owners) if a in self.state.applications
                      and self.state.applications[a].has_service_principal]
        return [{"@odata.type": "#microsoft.graph.servicePrincipal",
                 **{k: v for k, v in self.service_principal_body(o).items() if not fields or k in fields}}
                for o in owners]

    # ------------------------------------------------------------------ applications

    def list_applications(self, request: Request) -> Response:
        self._caller(request)
        select = _select(request)
        wanted = _app_id_filter(request, "Application")
        with self.state.lock:
            found = [self._shaped(a, request) for a in self.state.applications.values()
                     if wanted is None or a.app_id == wanted]
        suffix = f"({','.join(sorted(select))})" if select else ""
        return Response(200, {"@odata.context": self._context("applications" + suffix), "value": found})

    def get_application(self, request: Request) -> Response:
        self._caller(request)
        return Response(200, self._shaped(self._by_object_id(request), request))

    def get_by_app_id(self, request: Request) -> Response:
        self._caller(request)
        app = self.state.applications.get(request.params["appid"].lower())
        if app is None:
            raise _not_found(request.params["appid"])
        return Response(200, self._shaped(app, request))

    def create_application(self, request: Request) -> Response:
        """POST /applications: a new application with no service principal. Its creator becomes an owner: Graph's
        pages do not say so, field reports do (msgraph-sdk-powershell#829: "the owner is automatically set to the
        ServicePrincipal of the main application"), and OwnedBy's "apps that this app creates or owns" implies it."""
        caller = self._caller(request)
        self._may_create(caller)
        body = request.json(code="BadRequest")
        name = body.get("displayName") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "Request_BadRequest", "Invalid value specified for property 'displayName' of "
                           "resource 'Application'.")
        app = self.state.add_application(name, owners={caller.app_id}, with_service_principal=False,
                                         created_at=self.state.now())
        return Response(201, {"@odata.context": self._context("applications/$entity"), **self.application_body(app)})

    def update_application(self, request: Request) -> Response:
        """PATCH: the sandbox changes displayName only (other properties are accepted and ignored)."""
        caller = self._caller(request)
        app = self._by_object_id(request)
        self._may_write(caller, app)
        body = request.json(code="BadRequest")
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "Empty Payload. JSON content expected.")
        name = body.get("displayName", app.display_name)
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "Request_BadRequest", "Invalid value specified for property 'displayName' of "
                           "resource 'Application'.")
        with self.state.lock:
            app.display_name = name
        return Response(204)

    def delete_application(self, request: Request) -> Response:
        """The application and its service principal go to the deleted items for 30 days; its passwords stop
        signing in at once."""
        caller = self._caller(request)
        app = self._by_object_id(request)
        self._may_write(caller, app)
        self.state.delete_application(app)
        return Response(204)

    def add_password(self, request: Request) -> Response:
        caller = self._caller(request)
        app = self._by_object_id(request)
        self._may_write(caller, app)
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
        password, text = self.state.add_password(app, str(credential.get("displayName") or ""), end=end_time)
        created = password.graph()
        created["secretText"] = text  # Graph returns the text once, here
        return Response(200, {"@odata.context": self._context("microsoft.graph.passwordCredential"), **created})

    def remove_password(self, request: Request) -> Response:
        caller = self._caller(request)
        app = self._by_object_id(request)
        self._may_write(caller, app)
        body = request.json(code="BadRequest")
        key_id = body.get("keyId") if isinstance(body, dict) else None
        if not isinstance(key_id, str) or not self.state.remove_password(app, key_id):
            raise ApiError(400, "Request_BadRequest", f"No password credential with keyId '{key_id}' exists on "
                           "the application.")
        return Response(204)

    # ------------------------------------------------------------------ service principals

    def list_service_principals(self, request: Request) -> Response:
        self._caller(request)
        wanted = _app_id_filter(request, "ServicePrincipal")
        with self.state.lock:
            found = [self.service_principal_body(a) for a in self.state.applications.values()
                     if a.has_service_principal and (wanted is None or a.app_id == wanted)]
        return Response(200, {"@odata.context": self._context("servicePrincipals"), "value": found})

    def _principal(self, request: Request) -> Application:
        """The application whose service principal the URL names, by object id or by appId."""
        if "appid" in request.params:
            app = self.state.applications.get(request.params["appid"].lower())
            found = app if app is not None and app.has_service_principal else None
        else:
            found = self.state.service_principal(request.params["id"])
        if found is None:
            raise _not_found(request.params.get("appid") or request.params["id"])
        return found

    def get_service_principal(self, request: Request) -> Response:
        self._caller(request)
        return Response(200, self.service_principal_body(self._principal(request)))

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
        return Response(201, {"@odata.context": self._context("servicePrincipals/$entity"),
                              **self.service_principal_body(app)})

    def owned_objects(self, request: Request) -> Response:
        """The applications the service principal owns, 100 a page (`$top`: 1-999), with `@odata.nextLink`."""
        self._caller(request)
        principal = self._principal(request)
        size, start = _page_size(request), _skip_token(request)
        with self.state.lock:
            owned = [a for a in self.state.applications.values() if principal.app_id in a.owners]
            page = [{"@odata.type": "#microsoft.graph.application", **self.application_body(a)}
                    for a in owned[start:start + size]]
        context = "applications" if request.params.get("cast") else "directoryObjects"
        body: dict[str, Any] = {"@odata.context": self._context(context), "value": page}
        if start + size < len(owned):
            body["@odata.nextLink"] = (f"{self.base_url}{request.path}?$top={size}&$skiptoken={start + size}")
        return Response(200, body)

    # ------------------------------------------------------------------ deleted items

    def list_deleted(self, request: Request) -> Response:
        """GET /directory/deletedItems/microsoft.graph.application (or .servicePrincipal), `$filter=appId eq`."""
        self._may_read_deleted(self._caller(request))
        kind = request.params["type"].lower()
        wanted = _app_id_filter(request, "Application" if kind == "application" else "ServicePrincipal")
        self.state.purge_deleted()
        with self.state.lock:
            deleted = [a for a in self.state.deleted_applications.values()
                       if (wanted is None or a.app_id == wanted) and (kind == "application" or a.has_service_principal)]
            found = [self.application_body(a) if kind == "application" else self.service_principal_body(a)
                     for a in deleted]
        context = "applications" if kind == "application" else "servicePrincipals"
        return Response(200, {"@odata.context": self._context(context), "value": found})

    def get_deleted(self, request: Request) -> Response:
        """One deleted application or service principal, by its object id."""
        self._may_read_deleted(self._caller(request))
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


def _app_role(value: str, role_id: str) -> dict[str, Any]:
    return {"allowedMemberTypes": ["Application"], "description": value, "displayName": value, "id": role_id,
            "isEnabled": True, "origin": "Application", "value": value}


def _denied() -> ApiError:
    return ApiError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def _not_found(identifier: str) -> ApiError:
    return ApiError(404, "Request_ResourceNotFound", f"Resource '{identifier}' does not exist or one of its queried "
                    "reference-property objects are not present.")


_SELECTABLE = frozenset({"id", "deletedDateTime", "isFallbackPublicClient", "appId", "applicationTemplateId",
                         "identifierUris", "createdDateTime", "displayName", "isDeviceOnlyAuthSupported",
                         "groupMembershipClaims", "optionalClaims", "addIns", "publisherDomain", "samlMetadataUrl",
                         "signInAudience", "tags", "tokenEncryptionKeyId", "api", "appRoles", "publicClient", "info",
                         "keyCredentials", "parentalControlSettings", "passwordCredentials",
                         "requiredResourceAccess", "web"})


def _select(request: Request) -> set[str] | None:
    if "$select" not in request.query:
        return None
    fields = {f.strip() for f in request.query["$select"].split(",") if f.strip()}
    unknown = fields - _SELECTABLE
    if unknown:
        raise ApiError(400, "Request_BadRequest", f"Could not find a property named '{sorted(unknown)[0]}' on "
                       "type 'microsoft.graph.application'.")
    return fields


def _app_id_filter(request: Request, resource: str) -> str | None:
    """The appId of `$filter=appId eq '...'`, the one filter the sandbox supports; None without a filter."""
    if "$filter" not in request.query:
        return None
    match = _APP_ID_FILTER.match(request.query["$filter"])
    if not match:
        raise ApiError(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified for "
                       f"property of resource '{resource}'.")
    return match.group(1).lower()


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
