"""Microsoft Graph v1.0: applications, their passwords, service principals.

Shapes follow `graph_application_addPassword_v1.0.json` and `..._removePassword_...`.
Permissions as Graph applies them: `Application.ReadWrite.All` sees and changes every
application; `Application.ReadWrite.OwnedBy` only the ones its identity owns (others are
invisible: missing from lists, 404 by id, for reads and writes alike).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sandbox.server import Api, Request, Response
from sandbox.state import ApiError, Application, SandboxState, parse_time, utc_iso

_APP_ID_FILTER = re.compile(r"^\s*appId\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
_SELECTABLE = {"id", "appId", "displayName", "passwordCredentials", "createdDateTime", "keyCredentials"}


class GraphApi(Api):
    name = "graph"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        app = r"/v1\.0/applications/(?P<id>[0-9a-fA-F-]{36})"
        self.route("GET", r"/v1\.0/applications", "GET /applications", self.list_applications)
        self.route("GET", r"/v1\.0/applications\(appId='(?P<appid>[^']*)'\)", "GET /applications(appId=)",
                   self.get_by_app_id)
        self.route("GET", app, "GET /applications/{id}", self.get_application)
        self.route("POST", rf"{app}/addPassword", "POST /applications/{id}/addPassword", self.add_password)
        self.route("POST", rf"{app}/removePassword", "POST /applications/{id}/removePassword", self.remove_password)
        self.route("GET", r"/v1\.0/servicePrincipals", "GET /servicePrincipals", self.list_service_principals)

    def error_body(self, err: ApiError) -> Any:
        return {"error": {"code": err.code, "message": err.message, "innerError": {
            "date": utc_iso(self.state.now())[:19], "request-id": str(uuid.uuid4()),
            "client-request-id": str(uuid.uuid4())}}}

    def fault_response(self, kind: str, status: int, retry_after: float) -> ApiError:
        if kind == "throttle":
            return ApiError(429, "TooManyRequests", "Too many requests.", {"Retry-After": f"{retry_after:g}"})
        return ApiError(status, "serviceNotAvailable" if status == 503 else "generalException",
                        "The service is temporarily unavailable.", {"Retry-After": f"{retry_after:g}"})

    # ------------------------------------------------------------------ checks

    def _caller(self, request: Request) -> Application:
        caller = self.state.caller(request.headers.get("authorization"), "graph")
        if caller is None:
            raise ApiError(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        if caller.graph_permission not in ("Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"):
            raise ApiError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        return caller

    def _visible(self, caller: Application, app: Application) -> bool:
        return caller.graph_permission == "Application.ReadWrite.All" or caller.app_id in app.owners

    def _by_object_id(self, request: Request, caller: Application) -> Application:
        object_id = request.params["id"].lower()
        with self.state.lock:
            app = next((a for a in self.state.applications.values() if a.object_id == object_id), None)
        if app is None or not self._visible(caller, app):
            raise _not_found(object_id)
        return app

    # ------------------------------------------------------------------ applications

    def _body(self, app: Application, select: set[str] | None) -> dict[str, Any]:
        full = {"id": app.object_id, "appId": app.app_id, "displayName": app.display_name,
                "createdDateTime": "2025-01-01T00:00:00Z", "keyCredentials": [],
                "passwordCredentials": [p.graph() for p in app.passwords]}
        return {k: v for k, v in full.items() if select is None or k in select}

    def _select(self, request: Request) -> set[str] | None:
        if "$select" not in request.query:
            return None
        fields = {f.strip() for f in request.query["$select"].split(",") if f.strip()}
        unknown = fields - _SELECTABLE
        if unknown:
            raise ApiError(400, "Request_BadRequest", f"Could not find a property named '{sorted(unknown)[0]}' on "
                           "type 'microsoft.graph.application'.")
        return fields

    def list_applications(self, request: Request) -> Response:
        caller = self._caller(request)
        select = self._select(request)
        wanted = _app_id_filter(request, "Application")
        with self.state.lock:
            found = [self._body(a, select) for a in self.state.applications.values()
                     if self._visible(caller, a) and (wanted is None or a.app_id == wanted)]
        context = f"{self.base_url}/v1.0/$metadata#applications" + (f"({','.join(sorted(select))})" if select else "")
        return Response(200, {"@odata.context": context, "value": found})

    def get_application(self, request: Request) -> Response:
        caller = self._caller(request)
        return Response(200, self._body(self._by_object_id(request, caller), self._select(request)))

    def get_by_app_id(self, request: Request) -> Response:
        caller = self._caller(request)
        with self.state.lock:
            app = self.state.applications.get(request.params["appid"])
        if app is None or not self._visible(caller, app):
            raise _not_found(request.params["appid"])
        return Response(200, self._body(app, self._select(request)))

    def add_password(self, request: Request) -> Response:
        caller = self._caller(request)
        app = self._by_object_id(request, caller)
        body = request.json(code="BadRequest")
        credential = body.get("passwordCredential") if isinstance(body, dict) else None
        if credential is None:
            credential = {}
        if not isinstance(credential, dict):
            raise ApiError(400, "BadRequest", "Invalid passwordCredential: expected an object.")
        end = credential.get("endDateTime")
        try:
            end_time = parse_time(end) if end else None
        except ValueError as err:
            raise ApiError(400, "BadRequest", f"Invalid value for endDateTime: {end!r}.") from err
        if end_time is not None and end_time <= self.state.now():
            raise ApiError(400, "InvalidRequest", "The endDateTime must be in the future.")
        password, text = self.state.add_password(app, str(credential.get("displayName") or ""), end=end_time)
        created = password.graph()
        created["secretText"] = text  # Graph returns the text once, here
        return Response(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata#microsoft.graph.passwordCredential",
                              **created})

    def remove_password(self, request: Request) -> Response:
        caller = self._caller(request)
        app = self._by_object_id(request, caller)
        body = request.json(code="BadRequest")
        key_id = body.get("keyId") if isinstance(body, dict) else None
        if not isinstance(key_id, str) or not self.state.remove_password(app, key_id):
            raise ApiError(400, "Request_BadRequest", f"No password credential with keyId '{key_id}' exists on "
                           "the application.")
        return Response(204)

    def list_service_principals(self, request: Request) -> Response:
        caller = self._caller(request)
        wanted = _app_id_filter(request, "ServicePrincipal")
        with self.state.lock:
            found = [{"id": a.sp_object_id, "appId": a.app_id, "displayName": a.display_name,
                      "servicePrincipalType": "Application", "accountEnabled": True}
                     for a in self.state.applications.values()
                     if self._visible(caller, a) and (wanted is None or a.app_id == wanted)]
        return Response(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata#servicePrincipals", "value": found})


def _not_found(identifier: str) -> ApiError:
    return ApiError(404, "Request_ResourceNotFound", f"Resource '{identifier}' does not exist or one of its queried "
                    "reference-property objects are not present.")


def _app_id_filter(request: Request, resource: str) -> str | None:
    """The appId of `$filter=appId eq '...'`, the one filter the sandbox supports; None without a filter."""
    if "$filter" not in request.query:
        return None
    match = _APP_ID_FILTER.match(request.query["$filter"])
    if not match:
        raise ApiError(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified for "
                       f"property of resource '{resource}'.")
    return match.group(1)
