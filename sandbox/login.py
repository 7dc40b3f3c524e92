"""Entra ID: OpenID discovery, the tenant's signing keys and the v2.0 token endpoint, client
credentials grant only. Access tokens are RS256 JWTs in the version the resource accepts, whichever
endpoint issued them ("The version of the access token is determined by the resource's
accessTokenAcceptedVersion", learn.microsoft.com/entra/identity-platform/access-tokens;
`SandboxState.token_version`): v1.0 for ARM, Graph, Key Vault and Event Grid (`iss`
`https://sts.windows.net/{tid}/`, `appid`, `appidacr`, `aud` the resource as requested), v2.0 for the
remediator's API application, whose manifest asks for it (`requestedAccessTokenVersion: 2`, infra/); a token
for an API registered as an application carries the caller's app roles.

Errors carry Entra ID's real AADSTS texts (see `SandboxState.sign_in`), which MSAL and
azure-identity surface in `ClientAuthenticationError`.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox.server import Api, Request, Response
from sandbox.state import ApiError, utc_iso


class LoginApi(Api):
    name = "login"
    counted = False  # sign-ins are reported as tokens issued, per audience

    def __init__(self, state) -> None:
        super().__init__(state)
        tenant = r"(?P<tenant>[^/]+)"
        self.route("GET", f"/{tenant}/v2.0/.well-known/openid-configuration", "GET openid-configuration",
                   self.discovery)
        self.route("GET", f"/{tenant}/.well-known/openid-configuration", "GET openid-configuration", self.discovery)
        self.route("POST", f"/{tenant}/oauth2/v2.0/token", "POST token", self.token)
        self.route("GET", f"/{tenant}/discovery/v2.0/keys", "GET keys", self.keys)

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes, *,
                 skip_faults: tuple[str, ...] = ()) -> tuple[Response, bool]:
        if method == "GET" and urlsplit(target).path.lower().endswith("/discovery/v2.0/keys"):
            with self.state.lock:
                self.state.key_fetches += 1  # every fetch of the signing keys, whatever a fault makes of it
        return super().dispatch(method, target, headers, body, skip_faults=skip_faults)

    def error_body(self, err: ApiError) -> Any:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        number = err.message.split(":", 1)[0].removeprefix("AADSTS")
        return {"error": err.code,
                "error_description": f"{err.message}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                                     f"Timestamp: {utc_iso(self.state.now())[:19]}Z",
                "error_codes": [int(number)] if number.isdigit() else [],
                "timestamp": utc_iso(self.state.now())[:19] + "Z", "trace_id": trace, "correlation_id": correlation,
                "error_uri": f"{self.base_url}/error?code={number}"}

    def fault_response(self, kind: str, status: int, retry_after: float) -> ApiError:
        if kind == "throttle":
            return ApiError(429, "temporarily_unavailable", "AADSTS50196: The server terminated an operation "
                            "because it encountered a client request loop.", {"Retry-After": f"{retry_after:g}"})
        return ApiError(status, "temporarily_unavailable", "AADSTS90033: A transient error has occurred. "
                        "Please try again.")

    def _tenant(self, request: Request) -> str:
        tenant = request.params["tenant"]
        if tenant.lower() not in (self.state.tenant_id, "organizations", "common"):
            raise ApiError(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure "
                           "you have the correct tenant ID and are signing into the correct cloud.")
        return self.state.tenant_id

    def discovery(self, request: Request) -> Response:
        tenant = self._tenant(request)
        base = f"{self.base_url}/{tenant}"
        return Response(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
        })

    def token(self, request: Request) -> Response:
        self._tenant(request)
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant "
                           "type; only client_credentials is supported here.")
        scope = form.get("scope", "")
        requested = scope.removesuffix("/.default")  # v1.0 tokens carry it as is (`.../`: trailing slash kept)
        audience = requested.rstrip("/")
        if not scope.endswith("/.default") or not self.state.known_audience(audience):
            raise ApiError(400, "invalid_scope", f"AADSTS1002012: The provided value for scope {scope} is not "
                           "valid. Client credential flows must have a scope value with /.default suffixed to the "
                           "resource identifier (application ID URI).")
        if "client_secret" not in form:
            raise ApiError(401, "invalid_client", "AADSTS7000218: The request body must contain the following "
                           "parameter: 'client_assertion' or 'client_secret'.")
        app = self.state.sign_in(form.get("client_id", ""), form["client_secret"])
        token, lifetime = self.state.issue_token(app, audience, requested=requested)
        return Response(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                              "access_token": token})

    def keys(self, request: Request) -> Response:
        self._tenant(request)
        return Response(200, self.state.signing_keys())
