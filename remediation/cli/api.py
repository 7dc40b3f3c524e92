"""Where and as whom the operator CLI asks the remediator's HTTP API, and the client that asks.

The deployed app: `--api URL --function-key KEY --app-id-uri URI` (or REMEDIATOR_API_URL,
REMEDIATOR_FUNCTION_KEY, REMEDIATOR_API_APP_ID_URI), and a token for `<app id uri>/.default` from
azure-identity: AzureCliCredential (what `az login` gives), or DefaultAzureCredential. The local
sandbox: `--sandbox INFO_FILE`, the JSON line `python -m sandbox serve` prints, which names the
function app, its key, the API's app id URI, the CA and the file holding the sandbox identities'
secrets; the token comes from the sandbox's Entra ID stand-in for its operator (or `--as auditor`).

The function key, the token and client secrets go only into request headers and the token request.
Error messages are built without them; `ApiClient.secrets()` lets the edge scrub them besides.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from remediation.cli import render

if TYPE_CHECKING:
    import argparse

    from azure.core.credentials import TokenCredential

ENV_API = "REMEDIATOR_API_URL"
ENV_KEY = "REMEDIATOR_FUNCTION_KEY"
ENV_APP_ID_URI = "REMEDIATOR_API_APP_ID_URI"
USER_AGENT = "aks-sp-remediator-cli"

logger = logging.getLogger(__name__)


class UsageError(Exception):
    """The command line, its environment or the sandbox's info file does not say where or as whom to ask,
    or what. Exit 2, as az's usage errors."""


class NotAsked(Exception):
    """The API could not be asked: unreachable, or no token. Exit 1, as az's errors."""


class ApiError(Exception):
    """The API answered with an error. Exit 1; 3 when what was asked for does not exist (`not_found`: a 404 the API
    explained, not the host's empty 404 for a route that is not there)."""

    def __init__(self, status: int, code: str, message: str, *, not_found: bool | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.not_found = status == 404 if not_found is None else not_found


# ------------------------------------------------------------------------------------- where, as whom


@dataclass(frozen=True)
class Target:
    """The API to call and how to sign the calls. Its secrets never appear in its repr."""

    base_url: str
    function_key: str = field(repr=False)
    scope: str
    credential: TokenCredential = field(repr=False)
    verify: str | bool = True  # a CA file for the sandbox
    caller: str = ""  # who signs in, for messages
    client_secret: str | None = field(default=None, repr=False)  # the sandbox identity's, to scrub from messages


def resolve_target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    """The target the options name: `--sandbox`, or `--api`/`--function-key`/`--app-id-uri` with their
    environment fallbacks. UsageError saying what is missing or wrong (never echoing a secret)."""
    if args.sandbox is not None:
        given = [flag for flag, value in (("--api", args.api), ("--function-key", args.function_key),
                                          ("--app-id-uri", args.app_id_uri), ("--credential", args.credential))
                 if value is not None]
        if given:
            raise UsageError(f"--sandbox names the API and the identity: drop {', '.join(given)}")
        return _sandbox_target(Path(args.sandbox), args.identity or "operator")
    if args.identity is not None:
        raise UsageError("--as chooses one of the sandbox's identities: it needs --sandbox INFO_FILE")
    api = args.api or environ.get(ENV_API)
    key = args.function_key or environ.get(ENV_KEY)
    app_id_uri = args.app_id_uri or environ.get(ENV_APP_ID_URI)
    missing = [f"{flag} (or {env})" for flag, env, value in (("--api URL", ENV_API, api),
                                                             ("--function-key KEY", ENV_KEY, key),
                                                             ("--app-id-uri URI", ENV_APP_ID_URI, app_id_uri))
               if not value]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}; or --sandbox INFO_FILE for the local sandbox")
    assert api and key and app_id_uri
    return Target(base_url=_base_url(api), function_key=key, scope=_scope(app_id_uri),
                  credential=azure_credential(args.credential or "cli"),
                  caller="DefaultAzureCredential" if args.credential == "default" else "the Azure CLI's account")


def azure_credential(kind: str) -> TokenCredential:
    """cli: the account `az login` signed in; azd: `azd auth login`'s; default: DefaultAzureCredential."""
    from azure.identity import AzureCliCredential, AzureDeveloperCliCredential, DefaultAzureCredential

    if kind == "azd":
        return AzureDeveloperCliCredential()
    return DefaultAzureCredential() if kind == "default" else AzureCliCredential()


def _sandbox_target(path: Path, identity: str) -> Target:
    from azure.identity import ClientSecretCredential

    info = _read_json_line(path, "--sandbox")
    if not isinstance(info, dict):
        raise UsageError(f"--sandbox {path}: not the JSON object `python -m sandbox serve` prints")
    needed = ("functions", "functionKey", "apiAppIdUri", "login", "tenantId", "ca", "identitiesFile")
    absent = [name for name in needed if not isinstance(info.get(name), str) or not info[name]]
    if "functions" in absent and "login" not in absent:
        raise UsageError(f"--sandbox {path}: the sandbox runs without the function app (--no-functions)")
    if absent:
        raise UsageError(f"--sandbox {path}: not `python -m sandbox serve`'s line (no {', '.join(absent)})")
    # serve writes an absolute path; a relative one is taken as relative to the info file.
    identities = _read_json_line(path.parent / info["identitiesFile"], "the sandbox's identities file")
    client_id, secret = field_of(identities, f"{identity}ClientId"), field_of(identities, f"{identity}ClientSecret")
    if not isinstance(client_id, str) or not isinstance(secret, str):
        raise UsageError(f"the sandbox's identities file {info['identitiesFile']} has no {identity} identity")
    credential = ClientSecretCredential(info["tenantId"], client_id, secret, authority=info["login"],
                                        disable_instance_discovery=True, connection_verify=info["ca"])
    return Target(base_url=_base_url(info["functions"]), function_key=info["functionKey"],
                  scope=_scope(info["apiAppIdUri"]), credential=credential, verify=info["ca"],
                  caller=f"the sandbox's {identity} identity", client_secret=secret)


@dataclass(frozen=True)
class SandboxAzure:
    """The local sandbox as Azure: its operator identity's credential, its endpoints and its CA file."""

    credential: TokenCredential = field(repr=False)
    arm: str
    graph: str
    login: str
    tenant_id: str
    ca: str


def sandbox_azure(path: Path) -> SandboxAzure:
    """The sandbox `python -m sandbox serve`'s line describes, signed in as its operator: `doctor` and `preflight`
    read Graph and ARM there instead of Azure."""
    from azure.identity import ClientSecretCredential

    info = _read_json_line(path, "--sandbox")
    needed = ("arm", "graph", "login", "tenantId", "ca", "identitiesFile")
    absent = [n for n in needed if not isinstance(field_of(info, n), str) or not info[n]]
    if absent:
        raise UsageError(f"--sandbox {path}: not `python -m sandbox serve`'s line (no {', '.join(absent)})")
    identities = _read_json_line(path.parent / info["identitiesFile"], "the sandbox's identities file")
    client_id, secret = field_of(identities, "operatorClientId"), field_of(identities, "operatorClientSecret")
    if not isinstance(client_id, str) or not isinstance(secret, str):
        raise UsageError(f"the sandbox's identities file {info['identitiesFile']} has no operator identity")
    credential = ClientSecretCredential(info["tenantId"], client_id, secret, authority=info["login"],
                                        disable_instance_discovery=True, connection_verify=info["ca"])
    return SandboxAzure(credential, info["arm"], info["graph"], info["login"], info["tenantId"], info["ca"])


def token_tenant(credential: TokenCredential, graph_endpoint: str) -> str:
    """The tenant of the signed-in account: the `tid` claim of its Graph token (read, not verified: it only
    names where to sign in)."""
    import base64

    try:
        token = credential.get_token(f"{graph_endpoint}/.default").token
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["tid"])
    except Exception as err:  # noqa: BLE001 - any failure means the same: say how to give the tenant
        raise NotAsked(f"could not tell the signed-in account's tenant ({type(err).__name__}): give --tenant "
                       "or set AZURE_TENANT_ID") from None


def field_of(document: Any, name: str) -> Any:
    return document.get(name) if isinstance(document, dict) else None


def _read_json_line(path: Path, what: str) -> Any:
    """The first non-blank line of a file, as JSON. The error names the file and the position, never
    the content (it holds a function key or client secrets)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UsageError(f"cannot read {what} {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise UsageError(f"{what} {path} is not UTF-8 text") from err
    line = next((line for line in lines if line.strip()), "")
    try:
        return json.loads(line)
    except ValueError as err:
        raise UsageError(f"{what} {path} does not start with a JSON line (as `python -m sandbox serve` prints "
                         f"one): {type(err).__name__} at column {getattr(err, 'colno', '?')}") from err


def _base_url(raw: str) -> str:
    """The function app's base URL: https (http only to this machine), no query (a key belongs in
    --function-key), no trailing `/api`."""
    try:
        parts = urlsplit(raw.strip())
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as err:
        raise UsageError(f"--api is not a URL: {err}") from err
    if parts.scheme not in ("http", "https") or not host:
        raise UsageError("--api must be the function app's base URL, e.g. https://func-remediator.azurewebsites.net")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UsageError("--api must hold no query, fragment or credentials: give the key with --function-key "
                         f"(or {ENV_KEY})")
    if parts.scheme == "http" and not _loopback(host):
        raise UsageError("--api must use https: a bearer token and a function key are sent with every call "
                         "(http only to 127.0.0.1 or localhost)")
    path = parts.path.rstrip("/")
    path = path[:-4] if path.lower().endswith("/api") else path
    return f"{parts.scheme}://{parts.netloc}{path}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scope(app_id_uri: str) -> str:
    uri = app_id_uri.strip().rstrip("/")
    if uri.endswith("/.default"):
        return uri
    if not uri or any(c.isspace() for c in uri):
        raise UsageError("--app-id-uri must be the API's application ID URI, e.g. api://<tenant>/aks-sp-remediator-…")
    return f"{uri}/.default"


# ------------------------------------------------------------------------------------------ the client


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    location: str | None = None


class ApiClient:
    """GET and POST to the remediator's API over azure-core's pipeline (requests underneath: azure-identity
    needs both already), with the function key and a bearer token on every call. No retries (an operator
    re-runs a command) and no logging policy (nothing logs a header)."""

    def __init__(self, target: Target, *, timeout: float = 60.0) -> None:
        # Imported here, not at the top: `python -m remediation classify` need not load requests.
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import UserAgentPolicy
        from azure.core.pipeline.transport import RequestsTransport

        self.target = target
        self._token: str | None = None
        self._expires_on = 0
        self._client: Any = PipelineClient(
            target.base_url, policies=[UserAgentPolicy(USER_AGENT)],
            transport=RequestsTransport(connection_verify=target.verify, connection_timeout=10,
                                        read_timeout=timeout))

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Answer:
        return self._send("GET", self.url(path), params=params)

    def get_url(self, url: str) -> Answer:
        """GET an absolute URL the API gave (a Location): only on the API's own origin, where the key and
        the token may go."""
        if not self.same_origin(url):
            raise NotAsked("the API pointed to another origin; not followed")
        return self._send("GET", url)

    def post(self, path: str, body: Any) -> Answer:
        return self._send("POST", self.url(path), json_body=body)

    def url(self, path: str) -> str:
        return f"{self.target.base_url}/api/{path}"

    def same_origin(self, url: str) -> bool:
        mine, theirs = urlsplit(self.target.base_url), urlsplit(url)
        return (mine.scheme, mine.netloc.lower()) == (theirs.scheme, theirs.netloc.lower())

    def secrets(self) -> tuple[str, ...]:
        """What must never be printed: the function key, the client secret and any token obtained."""
        # A value too short to be a real secret would only garble the message.
        return tuple(s for s in (self.target.function_key, self.target.client_secret, self._token) if s and len(s) >= 8)

    def close(self) -> None:
        self._client.close()
        close = getattr(self.target.credential, "close", None)
        if callable(close):
            close()

    def _bearer(self) -> str:
        """The token, fetched on first use and kept until a minute before it expires. NotAsked without one."""
        from azure.core.exceptions import ClientAuthenticationError

        if self._token is None or self._expires_on - 60 < time.time():
            try:
                access = self.target.credential.get_token(self.target.scope)
            except ClientAuthenticationError as err:
                raise NotAsked(f"cannot get a token for {self.target.scope} as {self.target.caller}: "
                               f"{_one_line(str(err))}") from err
            self._token, self._expires_on = access.token, access.expires_on
            logger.info("signed in as %s for %s", self.target.caller, self.target.scope)
        return self._token

    def _send(self, method: str, url: str, *, params: Mapping[str, str] | None = None,
              json_body: Any = None) -> Answer:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError
        from azure.core.rest import HttpRequest

        headers = {"Accept": "application/json", "x-functions-key": self.target.function_key,
                   "Authorization": f"Bearer {self._bearer()}"}
        request = HttpRequest(method, url, params=dict(params or {}), json=json_body, headers=headers)
        started = time.monotonic()
        try:
            response = self._client.send_request(request)
            raw = response.read()
        except (ServiceRequestError, ServiceResponseError) as err:
            raise NotAsked(f"cannot reach the API at {self.target.base_url}: {_one_line(str(err))}") from err
        # The method, the path and the query (never a header: the key and the token travel there), the answer.
        logger.debug("%s %s: %s, %d bytes in %.0f ms", method, urlsplit(request.url)._replace(
            scheme="", netloc="").geturl(), response.status_code, len(raw), (time.monotonic() - started) * 1000)
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            body = None
        status = response.status_code
        if status >= 400:
            raise _api_error(status, body, response.headers.get("Retry-After"))
        if body is None:
            raise ApiError(status, "NotJson", f"the answer to {method} {urlsplit(url).path} is not JSON: is --api "
                                              "the function app's base URL?")
        return Answer(status, body, response.headers.get("Location"))


def _api_error(status: int, body: Any, retry_after: str | None) -> ApiError:
    error = field_of(body, "error")
    code, message = field_of(error, "code"), field_of(error, "message")
    if isinstance(code, str) and isinstance(message, str):
        if retry_after and retry_after.isdigit():
            message += f" (retry after {retry_after} s)"
        return ApiError(status, render.text(code), render.text(message))
    # The Functions host answers a wrong key or an unknown route with an empty body.
    hints = {401: ("Unauthorized", "the function key was refused (the host answers a wrong or missing key with an "
                                   "empty 401): check --function-key"),
             404: ("NotFound", "no such route: is --api the function app's base URL?"),
             405: ("MethodNotAllowed", "the route does not take this method: is --api the function app's base URL?")}
    code, message = hints.get(status, (f"HTTP{status}", "the API answered with an error and no JSON body"))
    return ApiError(status, code, message, not_found=False)


def _one_line(message: str, most: int = 600) -> str:
    return render.truncate(" ".join(message.split()), most)


