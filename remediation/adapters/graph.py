"""Applications, their passwords and service principals in Microsoft Graph, through msgraph-sdk.

Permissions (application): `Application.ReadWrite.OwnedBy`, which reads every application and
service principal in the tenant but changes only those the remediator's identity owns, and
creates applications it then owns; and `Application.Read.All`, the least that reads Entra ID's
deleted items (a deleted application's service principal, whose role assignments a
replacement carries over). The broad `Application.ReadWrite.All` also works.

Fleet reads use Graph's JSON batching (`POST /$batch`, 20 requests per call), a few calls in flight at
once. msgraph-core's own batch classes are not used: in msgraph-core 1.3 they send absolute URLs and
`depends_on` (Graph wants relative URLs and `dependsOn`), replace the caller's request ids with
random ones, drop JSON response bodies, and import a module (`deprecated`) the package does not
declare. A throttled request inside a batch gets its own 429 and `Retry-After` while the others
succeed: only those are sent again, after the longest wait Graph asked for.

Requests go through msgraph-sdk's `GraphRequestAdapter` (its middleware: retry with
Retry-After, redirects, telemetry) as raw `RequestInformation` sent with
`send_primitive_async(..., "bytes")`. The typed request builders would import about
1,300 model modules on first use (+1.3 s, +47 MB) for three calls whose JSON is small.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from collections.abc import Coroutine, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

import httpx
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.api_client_builder import register_default_deserializer
from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from kiota_http.middleware.options import RetryHandlerOption
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph_core import GraphClientFactory

from remediation.adapters.azure_errors import TRANSIENT_STATUS, authentication_error, retry_after_seconds
from remediation.adapters.odata import literal
from remediation.errors import ConflictError, NotFoundError, PermanentError, RemediationError, TransientError
from remediation.ids import is_guid
from remediation.model import Application, DeletedPrincipal, NewPassword, PasswordInfo, SecretText, ServicePrincipal

T = TypeVar("T")
log = logging.getLogger(__name__)
_ERROR_MAP = {"XXX": ODataError}
_APPLICATION_FIELDS = "id,appId,displayName,passwordCredentials"
# An application a replacement may adopt after a crash: its notes carry the creation nonce; owners and every kind of
# credential say whether anyone else could sign in as it.
_OWNED_APPLICATION_FIELDS = "id,appId,displayName,notes,passwordCredentials,keyCredentials"
MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's own application, in every tenant
BATCH_SIZE = 20  # Graph's most requests per $batch
# Batch calls at once (a 20,000-cluster fleet is 1,000 calls). Graph meters directory reads per application and
# tenant in ResourceUnits: a GET of an application costs 2, 1 with $select, against 3,500 (tenants under 50 users),
# 5,000 (up to 500) or 8,000 (above) per 10 seconds, each request of a batch counted alone (learn.microsoft.com/graph/
# throttling-limits#identity-and-access-service-limits). A fleet of up to 3,500 applications fits any tenant's budget
# whatever the concurrency; above it the budget, not the concurrency, sets the pace, and what Graph throttles is asked
# again after its Retry-After. Against the sandbox (50 ms a call, 2,000 clusters) 8 took 1.19 s, 16 0.91 s and 24
# 0.84 s (`python benchmarks/fleet_health.py inflight --sizes 2000`): past 16, half again the burst on the budget the
# repairs share buys 8%.
BATCHES_IN_FLIGHT = 16
BATCH_ATTEMPTS = 6  # rounds for requests Graph throttled inside a batch
MAX_BATCH_WAIT = 60.0


class GraphDirectory:
    """A synchronous face over the async SDK: one private event loop, one call at a time.

    `retry`: how kiota's retry handler retries a 429, 503 or 504 (None: its defaults, 3 retries with a 3 s base delay
    plus back-off and jitter; a `Retry-After` Graph sends replaces the delay, whatever the option says)."""

    def __init__(self, credential: TokenCredential, *, endpoint: str, ca_bundle: str | None = None,
                 timeout: float = 30.0, retry: RetryHandlerOption | None = None) -> None:
        self._base = endpoint.rstrip("/") + "/v1.0"
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=verify, timeout=timeout),
            options=None if retry is None else {RetryHandlerOption.get_key(): retry})
        # Each cloud's Graph is its own audience: the scope is the endpoint's own. Without CAE (kiota asks for it by
        # default): azure-identity keeps one MSAL application per CAE setting, each with its own tenant discovery, so a
        # Graph token with CAE beside the Resource Manager clients' tokens without it cost a second discovery round
        # trip. CAE for workload identities does not cover managed identities, what the remediator runs as in Azure
        # (learn.microsoft.com/entra/identity/conditional-access/concept-continuous-access-evaluation-workload).
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[f"{endpoint.rstrip('/')}/.default"], allowed_hosts=[urlparse(endpoint).hostname or ""],
            is_cae_enabled=False)
        # GraphServiceClient registers the JSON reader; without it, error bodies (ODataError) go unread.
        register_default_deserializer(JsonParseNodeFactory)
        self._adapter = GraphRequestAdapter(auth, http)
        self._adapter.base_url = self._base
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self.batch_calls = 0  # $batch calls sent (the benchmark reads it)

    def get_application_by_app_id(self, app_id: str) -> Application:
        """The application with its passwords and its owners' object ids (one call: `$expand=owners`)."""
        _check_guid(app_id, "application id")
        url = (f"{self._base}/applications(appId='{app_id}')?$select={_APPLICATION_FIELDS}"
               f"&$expand={quote('owners($select=id)')}")
        return _application(self._send(Method.GET, url, None, f"looking up application {app_id}"))

    def get_applications_by_app_ids(self, app_ids: Iterable[str]) -> dict[str, Application | None]:
        """Each application with its passwords (no owners), by lower-case appId; None where Graph has none. An appId
        Graph still throttled after BATCH_ATTEMPTS rounds is left out of the answer (unread, not missing).

        `app_ids` may be lazy, say ids as Resource Graph's pages arrive: a batch goes out as soon as 20 new ids are
        known, while the iterator (on a worker thread) waits for the rest, so a page's wait hides behind Graph's work.
        An id that is not a GUID stops the reads with NotFoundError."""
        return self._run(self._batched(iter(app_ids)))

    async def _batched(self, source: Iterator[str]) -> dict[str, Application | None]:
        found: dict[str, Application | None] = {}
        gate = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        loop = asyncio.get_running_loop()
        seen: set[str] = set()
        first: list[asyncio.Task[tuple[dict[str, Application | None], list[str], float]]] = []
        try:
            while chunk := await loop.run_in_executor(None, _take_new, source, seen, BATCH_SIZE):
                first.append(asyncio.ensure_future(self._one_batch(chunk, gate)))
            results = await asyncio.gather(*first)
        except BaseException:
            for task in first:
                task.cancel()
            await asyncio.gather(*first, return_exceptions=True)
            raise
        pending: list[str] = []
        for attempt in range(BATCH_ATTEMPTS):
            if attempt:
                chunks = [pending[i:i + BATCH_SIZE] for i in range(0, len(pending), BATCH_SIZE)]
                results = await asyncio.gather(*(self._one_batch(chunk, gate) for chunk in chunks))
            pending, waits = [], [0.0]
            for answered, throttled, wait in results:
                found.update(answered)
                pending.extend(throttled)
                waits.append(wait)
            if not pending:
                return found
            log.info("Graph throttled %s of the batched reads: again in %.1f s (round %s)", len(pending), max(waits),
                     attempt + 1)
            await asyncio.sleep(min(max(waits), MAX_BATCH_WAIT))
        # A fleet's report is worth more with a few unknowns than not at all: those are left out, and said so.
        log.warning("Graph still throttles reading %s application(s) after %s rounds: they are left unread",
                    len(pending), BATCH_ATTEMPTS)
        return found

    async def _one_batch(self, app_ids: list[str], gate: asyncio.Semaphore
                         ) -> tuple[dict[str, Application | None], list[str], float]:
        """One $batch call: (applications read, appIds throttled, the longest Retry-After asked for)."""
        body = {"requests": [{"id": str(i), "method": "GET", "url": f"/applications(appId='{app_id}')"
                              f"?$select={_APPLICATION_FIELDS}"} for i, app_id in enumerate(app_ids)]}
        request = RequestInformation(Method.POST)
        request.url = f"{self._base}/$batch"
        request.headers.try_add("Accept", "application/json")
        request.set_stream_content(json.dumps(body).encode(), "application/json")
        async with gate:
            raw = await self._call(request, f"reading {len(app_ids)} applications in one batch")
        self.batch_calls += 1
        answered: dict[str, Application | None] = {}
        throttled: list[str] = []
        wait = 0.0
        for response in json.loads(raw or b"{}").get("responses") or ():
            app_id = app_ids[int(response["id"])]
            status = int(response.get("status") or 0)
            if status == 200:
                answered[app_id] = _application(response["body"])
            elif status == 404:
                answered[app_id] = None
            elif status in TRANSIENT_STATUS:
                throttled.append(app_id)
                asked = retry_after_seconds(_lower_keys(response.get("headers")))
                wait = max(wait, 1.0 if asked is None else asked)
            else:
                error = (response.get("body") or {}).get("error") or {}
                raise PermanentError(f"reading application {app_id}: {error.get('code', status)}:"
                                     f" {error.get('message', '')}", code=str(error.get("code") or f"Http{status}"))
        missing = set(app_ids) - set(answered) - set(throttled)
        throttled.extend(sorted(missing))  # a response Graph left out is asked for again
        return answered, throttled, wait

    def find_deleted_service_principal(self, app_id: str) -> DeletedPrincipal | None:
        _check_guid(app_id, "application id")
        query = quote(f"appId eq {literal(app_id)}")
        url = f"{self._base}/directory/deletedItems/microsoft.graph.servicePrincipal?$filter={query}"
        found = self._send(Method.GET, url, None, f"looking for the deleted service principal of {app_id}")["value"]
        if not found:
            return None
        newest = max(found, key=lambda item: item.get("deletedDateTime") or "")
        return DeletedPrincipal(object_id=newest["id"], app_id=newest["appId"],
                                display_name=newest.get("displayName") or "",
                                deleted_at=_parse_time(newest.get("deletedDateTime")))

    def create_application(self, display_name: str, *, notes: str) -> Application:
        """Not idempotent, so never retried here (nor by the SDK's retry handler): after an error or a lost answer
        the caller looks for what it may have created before creating again."""
        created = self._send(Method.POST, f"{self._base}/applications",
                             {"displayName": display_name, "notes": notes, "signInAudience": "AzureADMyOrg"},
                             f"creating application {display_name!r}", retry=False)
        return _application(created)

    def list_owned_applications(self, owner_id: str) -> list[Application]:
        """Every application `owner_id` owns, with its notes, passwords, certificates and owners."""
        _check_guid(owner_id, "owner object id")
        url = f"{self._base}/servicePrincipals/{owner_id}/ownedObjects/microsoft.graph.application" \
              f"?$select={_OWNED_APPLICATION_FIELDS}&$expand={quote('owners($select=id)')}"
        return [_application(item) for item in self._pages(url, f"listing the applications {owner_id} owns")]

    def list_directory_role_templates(self, object_id: str, *, user: bool) -> frozenset[str]:
        """The template ids of the Entra roles a principal holds now, directly or through a group (a role only
        eligible in Privileged Identity Management is not listed until activated). A user's are read as `/me`,
        which the signed-in user may always read; a service principal's need Application.Read.All or more."""
        _check_guid(object_id, "object id")
        who = "me" if user else f"servicePrincipals/{object_id}"
        url = f"{self._base}/{who}/transitiveMemberOf/microsoft.graph.directoryRole" \
              "?$select=id,displayName,roleTemplateId"
        roles = self._pages(url, f"reading the Entra roles of {who}")
        return frozenset(role["roleTemplateId"].lower() for role in roles if role.get("roleTemplateId"))

    def list_graph_app_roles(self, principal_id: str) -> frozenset[str]:
        """The ids of the Microsoft Graph application permissions (app roles) a service principal holds."""
        _check_guid(principal_id, "service principal object id")
        graph = self._send(Method.GET, f"{self._base}/servicePrincipals(appId='{MICROSOFT_GRAPH_APP_ID}')?$select=id",
                           None, "looking up Microsoft Graph's service principal")["id"]
        url = f"{self._base}/servicePrincipals/{principal_id}/appRoleAssignments"
        return frozenset(a["appRoleId"].lower() for a in self._pages(url, f"reading the app roles of {principal_id}")
                         if str(a.get("resourceId", "")).lower() == graph.lower() and a.get("appRoleId"))

    def _pages(self, url: str, action: str) -> list[dict[str, Any]]:
        """Every item of a Graph collection, following @odata.nextLink."""
        found: list[dict[str, Any]] = []
        next_url: str | None = url
        while next_url:
            page = self._send(Method.GET, next_url, None, action)
            found.extend(page.get("value") or ())
            next_url = page.get("@odata.nextLink")
        return found

    def count_federated_credentials(self, object_id: str) -> int:
        _check_guid(object_id, "application object id")
        url = f"{self._base}/applications/{object_id}/federatedIdentityCredentials?$select=id"
        return len(self._pages(url, f"listing the federated credentials of application {object_id}"))

    def get_service_principal(self, app_id: str) -> ServicePrincipal | None:
        """The application's service principal with its owners and credentials, or None if it has none."""
        _check_guid(app_id, "application id")
        url = f"{self._base}/servicePrincipals(appId='{app_id}')?$select=id,passwordCredentials,keyCredentials" \
              f"&$expand={quote('owners($select=id)')}"
        try:
            found = self._send(Method.GET, url, None, f"looking up the service principal of {app_id}")
        except NotFoundError:
            return None
        return ServicePrincipal(object_id=found["id"], owner_ids=_owner_ids(found) or frozenset(),
                                credentials=len(found.get("passwordCredentials") or ())
                                + len(found.get("keyCredentials") or ()))

    def create_service_principal(self, app_id: str) -> str:
        """Not idempotent: never retried (see create_application)."""
        _check_guid(app_id, "application id")
        created = self._send(Method.POST, f"{self._base}/servicePrincipals", {"appId": app_id},
                             f"creating the service principal of {app_id}", retry=False)
        return created["id"]

    def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword:
        """Not idempotent: never retried (a retry after a lost answer leaves a password whose text nobody holds).
        The mint step looks for its password by name before adding another."""
        body = {"passwordCredential": {"displayName": display_name, "endDateTime": end.isoformat()}}
        created = self._send(Method.POST, f"{self._base}/applications/{quote(object_id)}/addPassword", body,
                             f"adding a password to application {object_id}", retry=False)
        return NewPassword(key_id=created["keyId"], hint=created.get("hint"), display_name=display_name,
                           end=_parse_time(created.get("endDateTime")) or end,
                           secret_text=SecretText(created["secretText"]))

    def remove_password(self, object_id: str, key_id: str) -> None:
        try:
            self._send(Method.POST, f"{self._base}/applications/{quote(object_id)}/removePassword",
                       {"keyId": key_id}, f"removing password {key_id} from application {object_id}")
        except PermanentError as err:
            # Graph answers 400 for a keyId the application no longer has: already removed.
            if not _is_already_removed(err):
                raise

    def _send(self, method: Method, url: str, body: dict[str, Any] | None, action: str, *,
              retry: bool = True) -> Any:
        """One request; `retry=False` turns the SDK's retry handler off for it (a non-idempotent write)."""
        request = RequestInformation(method)
        request.url = url
        request.headers.try_add("Accept", "application/json")
        if not retry:
            request.add_request_options([RetryHandlerOption(max_retries=0, should_retry=False)])
        if body is not None:
            request.set_stream_content(json.dumps(body).encode(), "application/json")
        raw = self._run(self._call(request, action))
        return json.loads(raw) if raw else None

    async def _call(self, request: RequestInformation, action: str) -> bytes | None:
        try:
            return await self._adapter.send_primitive_async(request, "bytes", _ERROR_MAP)
        except APIError as err:
            raise _translate(err, action) from err
        except httpx.TransportError as err:
            raise TransientError(f"{action}: {err.__class__.__name__}") from err
        except ClientAuthenticationError as err:  # raised by the credential, before any request
            raise authentication_error(err, action) from err

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            return self._loop.run_until_complete(coroutine)


class _InvalidKeyId(PermanentError):
    code = "InvalidKeyId"


def _is_already_removed(err: PermanentError) -> bool:
    return isinstance(err, _InvalidKeyId)


def _translate(err: APIError, action: str) -> RemediationError:
    status = err.response_status_code or 0
    odata = getattr(err, "error", None)
    code = getattr(odata, "code", None) or f"Http{status}"
    detail = getattr(odata, "message", None) or err.message or ""
    message = f"{action}: {code}: {detail}".rstrip(": ")
    if status == 404:
        return NotFoundError(message, code=code)
    if status == 401:
        return authentication_error(err, message)
    if status in TRANSIENT_STATUS:
        return TransientError(message, retry_after=retry_after_seconds(err.response_headers))
    if status == 400 and "keyid" in (detail + code).lower():
        return _InvalidKeyId(message)
    if status == 409:  # Request_MultipleObjectsWithSameKeyValue: it exists already
        return ConflictError(message, code=code)
    if status == 403:
        return PermanentError(message + " (is the remediator an owner of the application, with"
                              " Application.ReadWrite.OwnedBy?)", code=code)
    return PermanentError(message, code=code)


def _lower_keys(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()} if isinstance(headers, dict) else {}


def _take_new(source: Iterator[str], seen: set[str], most: int) -> list[str]:
    """Up to `most` application ids from `source` not seen before (lower case, each checked); fewer at its end.
    Runs on a worker thread: `source` may wait for a listing's next page."""
    taken: list[str] = []
    for given in source:
        app_id = given.lower()
        if app_id in seen:
            continue
        _check_guid(app_id, "application id")
        seen.add(app_id)
        taken.append(app_id)
        if len(taken) == most:
            break
    return taken


def _check_guid(value: str, what: str) -> None:
    # Ids go into URLs and key segments: anything but a GUID is refused before it could change the request.
    if not is_guid(value):
        raise NotFoundError(f"{value!r} is not an {what}", code="InvalidId")


def _application(data: dict[str, Any]) -> Application:
    return Application(
        object_id=data["id"], app_id=data["appId"], display_name=data.get("displayName") or "",
        passwords=tuple(
            PasswordInfo(key_id=p["keyId"], display_name=p.get("displayName"), hint=p.get("hint"),
                         start=_parse_time(p.get("startDateTime")), end=_parse_time(p.get("endDateTime")))
            for p in data.get("passwordCredentials") or ()
        ),
        owner_ids=_owner_ids(data), notes=data.get("notes") or "",
        certificates=len(data.get("keyCredentials") or ()),
    )


def _owner_ids(data: dict[str, Any]) -> frozenset[str] | None:
    """The owners' object ids (lower case) when the read expanded them; None when it did not ask."""
    owners = data.get("owners")
    return frozenset(o["id"].lower() for o in owners if o.get("id")) if owners is not None else None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    # Graph sends up to 7 fractional digits; Python 3.11 accepts at most 6.
    head, _, rest = value.rstrip("Z").partition(".")
    fraction = "".join(c for c in rest if c.isdigit())[:6]
    return datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00")
