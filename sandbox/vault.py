"""Key Vault secrets (data plane, api-version 7.x), with the bearer challenge the SDK expects.

The first request of a `SecretClient` carries no token: the vault answers 401 with
`WWW-Authenticate: Bearer authorization="<authority>/<tenant>", resource="https://vault.azure.net"`
and the client signs in for that resource, then resends. Shapes follow `keyvault_SetSecret_7.4.json`.

The world has one vault (`state.vault_name`), reached two ways: at the server's own address (what the remediator's
REMEDIATOR_KEY_VAULT_URL names in a local run), and by name, `https://{name}.vault.sandbox.invalid`, through the
sandbox's CONNECT proxy (sandbox/vaulthosts.py), as az reaches it from `--vault-name`. The Host header says which: ids
in the answers (`id`, `recoveryId`) carry the vault URL the client used, as Key Vault's carry `https://{name}.vault.
azure.net`.

A path Key Vault serves no route for is answered as Key Vault's front end (IIS) answers it: `404` with IIS's HTML
page "404 - File or directory not found." (the body VirtusLab/crypt#10 quotes for a malformed key URL on
`https://XXXX.vault.azure.net`; its style block left out), not JSON.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.server import Api, Request, Response
from sandbox.state import VAULT_AUDIENCE, ApiError, SandboxState, SecretVersion
from sandbox.vaulthosts import vault_name_of

SECRETS = "Microsoft.KeyVault/vaults/secrets"

_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
MAX_VALUE_BYTES = 25 * 1024
NO_SUCH_PATH = "FileOrDirectoryNotFound"  # IIS's 404, HTML rather than Key Vault's JSON error
IIS_NOT_FOUND_PAGE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\r\n'
    '<html xmlns="http://www.w3.org/1999/xhtml">\r\n<head>\r\n'
    '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>\r\n'
    "<title>404 - File or directory not found.</title>\r\n</head>\r\n<body>\r\n"
    '<div id="header"><h1>Server Error</h1></div>\r\n<div id="content">\r\n'
    ' <div class="content-container"><fieldset>\r\n  <h2>404 - File or directory not found.</h2>\r\n'
    "  <h3>The resource you are looking for might have been removed, had its name changed, or is temporarily "
    "unavailable.</h3>\r\n </fieldset></div>\r\n</div>\r\n</body>\r\n</html>\r\n").encode("iso-8859-1")


class VaultApi(Api):
    name = "vault"

    def __init__(self, state: SandboxState, login_url: str) -> None:
        super().__init__(state)
        self._authority = f"{login_url}/{state.tenant_id}"
        name, version = r"(?P<name>[^/]+)", r"(?P<version>[0-9a-fA-F]{32})"
        self.route("PUT", f"/secrets/{name}", "PUT /secrets/{name}", self.set_secret)
        self.route("GET", r"/secrets", "GET /secrets", self.list_secrets)
        self.route("GET", f"/secrets/{name}/versions", "GET /secrets/{name}/versions", self.list_versions)
        self.route("GET", f"/secrets/{name}/{version}", "GET /secrets/{name}/{version}", self.get_secret)
        self.route("GET", f"/secrets/{name}/?", "GET /secrets/{name}", self.get_secret)
        self.route("PATCH", f"/secrets/{name}/{version}", "PATCH /secrets/{name}/{version}", self.update_secret)
        self.route("DELETE", f"/secrets/{name}", "DELETE /secrets/{name}", self.delete_secret)
        self.route("GET", f"/deletedsecrets/{name}", "GET /deletedsecrets/{name}", self.get_deleted_secret)

    def error_body(self, err: ApiError) -> Any:
        if err.code == NO_SUCH_PATH:
            return IIS_NOT_FOUND_PAGE
        body = super().error_body(err)
        if err.details:  # Key Vault names the RBAC verdict in an inner error
            body["error"]["innererror"] = {"code": err.details[0]["code"]}
        return body

    def no_route(self, method: str, path: str) -> ApiError:
        return ApiError(404, NO_SUCH_PATH, "404 - File or directory not found.",
                        {"Content-Type": "text/html; charset=iso-8859-1"})

    def fault_response(self, kind: str, status: int, retry_after: float) -> ApiError:
        if kind == "throttle":
            return ApiError(429, "Throttled", "Request was not processed because too many requests were received. "
                            "Reason: VaultRequestTypeLimitReached", {"Retry-After": f"{retry_after:g}"})
        return super().fault_response(kind, status, retry_after)

    def _authorize(self, request: Request, data_action: str) -> None:
        """The checks Key Vault makes, in its order: api-version, bearer token, then the RBAC data action."""
        if "api-version" not in request.query:
            raise ApiError(400, "BadParameter", "The api-version parameter is missing.")
        challenge = {"WWW-Authenticate": f'Bearer authorization="{self._authority}", resource="{VAULT_AUDIENCE}"'}
        if "authorization" not in request.headers:
            raise ApiError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", challenge)
        caller = self.state.caller(request.headers["authorization"], "vault")
        if caller is None:
            raise ApiError(401, "Unauthorized", "AKV10022: Invalid audience or expired token.", challenge)
        action = f"{SECRETS}/{data_action}"
        if "*" not in caller.vault_data_actions and action not in caller.vault_data_actions:
            raise ApiError(403, "Forbidden", (
                "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or "
                "role definitions were changed recently, please observe propagation time.\r\n"
                f"Caller: appid={caller.app_id};oid={caller.sp_object_id}\r\nAction: '{action}'\r\n"
                "Assignment: (not found)\r\nDecisionReason: 'DeniedWithNoValidRBAC'\r\n"),
                details=[{"code": "ForbiddenByRbac"}])
        if not _NAME.match(request.params.get("name", "x")):
            raise ApiError(400, "BadParameter", "The request URI contains an invalid name: "
                           f"{request.params.get('name')}")

    def _vault_url(self, request: Request) -> str:
        """The vault's URL as the client addressed it: by name through the proxy, else the server's address."""
        host = request.headers.get("host", "").split(":", 1)[0]  # a name under the suffix has no colon
        return f"https://{host.lower()}" if vault_name_of(host) else self.base_url

    def _not_found(self, name: str) -> ApiError:
        return ApiError(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault. If "
                        "you recently deleted this secret you may be able to recover it using the correct recovery "
                        "command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?"
                        "linkid=2125182")

    def _bundle(self, vault: str, name: str, version: SecretVersion, *, with_value: bool) -> dict[str, Any]:
        attributes: dict[str, Any] = {"enabled": version.enabled, "created": version.created,
                                      "updated": version.updated, "recoveryLevel": "Recoverable+Purgeable",
                                      "recoverableDays": 90}
        if version.expires is not None:
            attributes["exp"] = version.expires
        if version.not_before is not None:
            attributes["nbf"] = version.not_before
        body: dict[str, Any] = {"id": f"{vault}/secrets/{name}/{version.version}", "attributes": attributes,
                                "tags": dict(version.tags)}
        if version.content_type is not None:
            body["contentType"] = version.content_type
        if with_value:
            body["value"] = version._value
        return body

    def set_secret(self, request: Request) -> Response:
        self._authorize(request, "setSecret/action")
        body = request.json(code="BadParameter")
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            raise ApiError(400, "BadParameter", "Property 'value' is required and must be a string.")
        if len(body["value"].encode()) > MAX_VALUE_BYTES:
            raise ApiError(400, "BadParameter", "The secret value exceeds the 25 KB limit.")
        attributes = body.get("attributes") or {}
        tags = body.get("tags") or {}
        if not isinstance(attributes, dict) or not isinstance(tags, dict) or len(tags) > 15:
            raise ApiError(400, "BadParameter", "Invalid attributes or tags (at most 15 tags).")
        version = self.state.set_secret(
            request.params["name"], body["value"], content_type=body.get("contentType"),
            tags={str(k): str(v) for k, v in tags.items()}, enabled=bool(attributes.get("enabled", True)),
            expires=attributes.get("exp"), not_before=attributes.get("nbf"))
        return Response(200, self._bundle(self._vault_url(request), request.params["name"], version, with_value=True))

    def _version(self, request: Request) -> SecretVersion:
        versions = self.state.secret_versions(request.params["name"])
        wanted = request.params.get("version")
        found = next((v for v in versions if v.version == wanted), None) if wanted else \
            (versions[-1] if versions else None)
        if found is None:
            raise self._not_found(request.params["name"])
        return found

    def get_secret(self, request: Request) -> Response:
        self._authorize(request, "getSecret/action")
        version = self._version(request)
        if not version.enabled:
            raise ApiError(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
        return Response(200, self._bundle(self._vault_url(request), request.params["name"], version, with_value=True))

    def update_secret(self, request: Request) -> Response:
        self._authorize(request, "update/action")
        body = request.json(code="BadParameter")
        if not isinstance(body, dict):
            raise ApiError(400, "BadParameter", "The request body must be a JSON object.")
        with self.state.lock:
            version = self._version(request)
            attributes = body.get("attributes") or {}
            if "enabled" in attributes:
                version.enabled = bool(attributes["enabled"])
            if "exp" in attributes:
                version.expires = attributes["exp"]
            if isinstance(body.get("tags"), dict):
                version.tags = {str(k): str(v) for k, v in body["tags"].items()}
            if "contentType" in body:
                version.content_type = body["contentType"]
            self.state.secret_updated(request.params["name"], version)
        return Response(200, self._bundle(self._vault_url(request), request.params["name"], version, with_value=False))

    def list_versions(self, request: Request) -> Response:
        self._authorize(request, "readMetadata/action")
        versions = self.state.secret_versions(request.params["name"])
        if not versions:
            raise self._not_found(request.params["name"])
        vault = self._vault_url(request)
        return Response(200, {"value": [self._bundle(vault, request.params["name"], v, with_value=False)
                                        for v in versions],
                              "nextLink": None})

    def list_secrets(self, request: Request) -> Response:
        self._authorize(request, "readMetadata/action")
        with self.state.lock:
            latest = [(name, versions[-1]) for name, versions in self.state.vault.items()]
        items, vault = [], self._vault_url(request)
        for name, version in latest:
            item = self._bundle(vault, name, version, with_value=False)
            item["id"] = f"{vault}/secrets/{name}"
            items.append(item)
        return Response(200, {"value": items, "nextLink": None})

    def delete_secret(self, request: Request) -> Response:
        self._authorize(request, "delete")
        versions = self.state.delete_secret(request.params["name"])
        if not versions:
            raise self._not_found(request.params["name"])
        return Response(200, self._deleted_bundle(self._vault_url(request), request.params["name"], versions[-1]))

    def get_deleted_secret(self, request: Request) -> Response:
        # SecretClient.begin_delete_secret polls this until the deletion shows.
        self._authorize(request, "readMetadata/action")
        with self.state.lock:
            versions = self.state.deleted_secrets.get(request.params["name"].lower())
        if not versions:
            raise ApiError(404, "SecretNotFound", f"Deleted Secret not found: {request.params['name']}")
        return Response(200, self._deleted_bundle(self._vault_url(request), request.params["name"], versions[-1]))

    def _deleted_bundle(self, vault: str, name: str, version: SecretVersion) -> dict[str, Any]:
        body = self._bundle(vault, name, version, with_value=False)
        body.update(recoveryId=f"{vault}/deletedsecrets/{name}", deletedDate=int(self.state.now().timestamp()),
                    scheduledPurgeDate=int(self.state.now().timestamp()) + 90 * 86400)
        return body
