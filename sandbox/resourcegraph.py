"""Azure Resource Graph's query API on the ARM host: `POST /providers/Microsoft.ResourceGraph/resources`
(api-version 2022-10-01 or 2021-03-01), for the query shape sandbox/kql.py reads.

What follows Azure, and where from (copies in tests/reference/resourcegraph_*, each with its .source.txt):

- Bodies: the `Resources` operation of the 2022-10-01 spec and its examples (BasicQuery, FirstPageQuery,
  NextPageQuery, PropertiesQuery): `totalRecords`, `count`, `resultTruncated` as the strings "true"/"false",
  `$skipToken`, `data` (objectArray, the spec's default: an object a row; table: `columns` and `rows`), `facets`.
- Rows: the columns of ARG's `resources` table, filled from the resource as ARM's GET serves it (clusters:
  `ArmApi.cluster_body`; function apps, `microsoft.web/sites`: sandbox/deployment.py's `site_body`), so that ARG and
  ARM agree; `type` and `resourceGroup` in lower case, as ARG stores them, `location` the programmatic name
  (`westeurope`, where Microsoft.Web's GET says `West Europe`), `kind` the site's (`functionapp,linux`).
- Paging (work-with-data, current text): `$top` 1-1000, default 1000; a result pages only when it has the `id`
  column, otherwise `resultTruncated` is "true" and there is no `$skipToken`. The token continues the same query over
  the same scopes; `$top` and `$skip` given with it override its page size and offset (the spec's words).
- Visibility: only what the caller may read (`Microsoft.ContainerService/managedClusters/read` at the cluster,
  `Microsoft.Web/sites/read` at the function app: the same check ARM's GET makes, sandbox/access.py). A query naming
  subscriptions none of which the caller reaches is 403 AccessDenied (field reports: Azure/azure-sdk-for-java#29924,
  microsoft/ARI#255); named subscriptions it cannot reach, or that do not exist, are left out. Without subscriptions
  or management groups the query is tenant-wide; the one management group is the tenant root group (named by the
  tenant id).
- Throttling (guidance-for-throttled-requests): per user, `state.resource_graph_quota` queries (15) in each window
  of `state.resource_graph_window_seconds` (5), the window starting with the user's first query after the last one
  ended. Every answer past ARM's front door (api-version and token checks) carries `x-ms-user-quota-remaining` and
  `x-ms-user-quota-resets-after` (hh:mm:ss); a query past the quota is 429 RateLimiting
  (Azure/azure-cli-extensions#3325) with `Retry-After`, the seconds left in the window. A refused query uses quota
  too (azure-powershell's recorded 400 answer says 13 remaining).
- Errors, in ARG's shape `{"error": {"code", "message": "Please provide below info when asking for support:
  timestamp = …, correlationId = ….", "details": [...]}}`: a query outside the supported shape is 400 BadRequest
  with an InvalidQuery and a ParserFailure detail (line, characterPositionInLine, token: azure-powershell's
  ResourceGraphQueryTests.ps1); a join kind ARG refuses, InvalidQuery and UnsupportedJoinFlavor (`The join kind
  "LeftSemi" is not supported or not allowed.`, MicrosoftDocs/azure-docs#45495); a bad `$skipToken` 400 BadRequest
  with CouldNotDecodeSkipToken (microsoft/ARI#201).
- `ResourceContainers` (query-language's table list): the resource groups, `group_body` as ARM's GET serves them but
  with ARG's `type` `microsoft.resources/subscriptions/resourcegroups`, readable with
  `Microsoft.Resources/subscriptions/resourceGroups/read` at the group; the subscriptions
  (`microsoft.resources/subscriptions`, `name` the display name), with `Microsoft.Resources/subscriptions/read`.

Assumed (no public text found): a malformed body, `$top`/`$skip` out of range, facets (not computed here), both
subscriptions and management groups: 400 BadRequest with an `InvalidRequestContent` detail; an api-version other than
the two: 400 NoRegisteredProviderFound in ARM's words; the ParserFailure detail's message explains what the sandbox
reads (ARG's says "ParserFailure"), and it is also the answer for valid KQL beyond that shape, a fourth `join`
included (finops-toolkit#2227 reports ARG running four); a subscription row's `properties` (`{"state": "Enabled"}`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sandbox import access, kql
from sandbox.deployment import site_body
from sandbox.resourcegroups import group_body
from sandbox.server import Request, Response
from sandbox.state import ApiError, Application, utc_iso

if TYPE_CHECKING:
    from sandbox.arm import ArmApi

API_VERSIONS = ("2021-03-01", "2022-10-01")
MAX_TOP = 1000
CLUSTER_TYPE, READ = "microsoft.containerservice/managedclusters", "Microsoft.ContainerService/managedClusters/read"
SITE_TYPE, SITE_READ = "microsoft.web/sites", "Microsoft.Web/sites/read"
GROUP_TYPE = "microsoft.resources/subscriptions/resourcegroups"
GROUP_READ = "Microsoft.Resources/subscriptions/resourceGroups/read"
SUBSCRIPTION_TYPE, SUBSCRIPTION_READ = "microsoft.resources/subscriptions", "Microsoft.Resources/subscriptions/read"
ROUTE_LABEL = "POST Microsoft.ResourceGraph/resources"
INVALID_QUERY = ("Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix "
                 "the error before retrying.")
THROTTLED = ("Client application has been throttled and should not attempt to repeat the request until an amount of "
             "time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help.")
DENIED = "Access is denied to the requested resource. The user might not have enough permission."


KEPT_RESULTS = 8  # results kept for their continuations (the newest)


class ResourceGraph:
    """The Resource Graph route of the ARM API (registered on it: ARG answers on ARM's host, behind its front door)."""

    def __init__(self, arm: ArmApi) -> None:
        self.arm, self.state = arm, arm.state
        self._windows: dict[str, tuple[datetime, int]] = {}  # appId -> (its window's start, queries in it)
        self._results: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (query, caller) -> its rows, for paging
        arm.route("POST", r"/providers/Microsoft\.ResourceGraph/resources", ROUTE_LABEL, self.resources)

    def resources(self, request: Request) -> Response:
        """One page of the query's rows, with the caller's quota in the headers (on refusals too)."""
        caller = self.arm._authenticate(request)
        self.arm.require_api_version(request, API_VERSIONS, "resources")
        quota = self._spend_quota(caller)
        try:
            return Response(200, self._result(request, caller), quota)
        except ApiError as err:
            err.headers = {**quota, **err.headers}
            raise

    # ------------------------------------------------------------------ the query

    def _result(self, request: Request, caller: Application) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise self._invalid_content("The request body must be a JSON object.")
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise self._invalid_content("'query' is required and must be a string.")
        if body.get("facets"):
            raise self._invalid_content("The sandbox does not compute facets: send none.")
        query = self._parsed(text)
        options = _options(body.get("options"), self._invalid_content)
        subscriptions = self._scopes(caller, body)
        fingerprint = _fingerprint(text, body)
        start, size = self._page(options, fingerprint)
        # A continuation reads the result its first page computed, as ARG pages one result set: evaluating the query
        # again for every page would make a 20,000-cluster scan quadratic in the stand-in, not in Azure.
        key = (fingerprint, caller.app_id)
        rows = self._results.get(key) if start else None
        if rows is None:
            rows = self._rows(caller, query, subscriptions)
            self._results = {**dict(list(self._results.items())[-(KEPT_RESULTS - 1):]), key: rows}
        page = rows[start:start + size]
        result: dict[str, Any] = {"totalRecords": len(rows), "count": len(page), "resultTruncated": "false",
                                  "facets": []}
        if start + len(page) < len(rows):
            if query.pageable:
                result["$skipToken"] = _token(fingerprint, start + len(page), size)
            else:  # work-with-data: no id column, no paging; the rest is cut off
                result["resultTruncated"] = "true"
        result["data"] = _formatted(query, page, options["resultFormat"])
        return result

    def _parsed(self, text: str) -> kql.Query:
        try:
            return kql.parse(text)
        except kql.JoinFlavorError as err:  # ARG's words (MicrosoftDocs/azure-docs#45495)
            raise self._error(400, "BadRequest", {"code": "InvalidQuery", "message": INVALID_QUERY}, {
                "code": "UnsupportedJoinFlavor", "message": str(err)}) from err
        except kql.QueryError as err:
            raise self._error(400, "BadRequest", {"code": "InvalidQuery", "message": INVALID_QUERY}, {
                "code": "ParserFailure", "message": str(err), "line": err.line,
                "characterPositionInLine": err.position, "token": err.token}) from err

    def _scopes(self, caller: Application, body: dict[str, Any]) -> set[str]:
        """The subscriptions the query searches: those it names (or the tenant's, for the tenant root group or no
        scope at all) that the caller reaches."""
        named = _strings(body, "subscriptions", self._invalid_content)
        groups = _strings(body, "managementGroups", self._invalid_content)
        if named and groups:
            raise self._invalid_content("Give either subscriptions or managementGroups, not both.")
        with self.state.lock:
            everything = set(self.state.subscriptions)
        if groups:
            named = sorted(everything) if self.state.tenant_id.lower() in {g.lower() for g in groups} else []
        wanted = {s.lower() for s in named} & everything if (named or groups) else everything
        reached = {s for s in wanted if access.reaches(self.state, caller, s)}
        if (named or groups) and not reached:
            raise self._error(403, "AccessDenied", {"code": "AccessDenied", "message": DENIED})
        return reached

    def _rows(self, caller: Application, query: kql.Query, subscriptions: set[str]) -> list[dict[str, Any]]:
        """Every row of the query's result, from the rows of its tables that the caller may read."""

        def read(source: kql.Source) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for row_type, (action, rows) in self._sources()[source.table].items():
                if source.matches(row_type):  # only the types the query asks for are built
                    found += [row for row in rows(subscriptions)
                              if access.permits(self.state, caller, action, row["id"])]
            return found

        return query.run(read)

    def _sources(self) -> dict[str, dict[str, tuple[str, Callable[[set[str]], list[dict[str, Any]]]]]]:
        """The tables and the resource types ARG serves here (as it stores them, lower case): the action that reads
        one, and the function that makes their rows in the given subscriptions."""
        return {"resources": {CLUSTER_TYPE: (READ, self._cluster_rows), SITE_TYPE: (SITE_READ, self._site_rows)},
                "resourcecontainers": {GROUP_TYPE: (GROUP_READ, self._group_rows),
                                       SUBSCRIPTION_TYPE: (SUBSCRIPTION_READ, self._subscription_rows)}}

    def _group_rows(self, subscriptions: set[str]) -> list[dict[str, Any]]:
        """ResourceContainers' resource groups: ARM's body (tags `{}` when the group has none, as its GET says), in
        ARG's columns: `type` ARG's `microsoft.resources/subscriptions/resourcegroups` (ARM's GET says
        `Microsoft.Resources/resourceGroups`), `resourceGroup` the group's own name in lower case."""
        with self.state.lock:
            groups = [g for g in self.state.resource_groups.values() if g.subscription_id in subscriptions]
            rows = [self._row(g.name, g.subscription_id, group_body(g)) for g in groups]
        for row in rows:
            row["type"] = GROUP_TYPE
        return rows

    def _subscription_rows(self, subscriptions: set[str]) -> list[dict[str, Any]]:
        """ResourceContainers' subscriptions: `name` the display name, as in ARG; no resource group."""
        with self.state.lock:
            found = [s for s in self.state.subscriptions.values() if s.subscription_id in subscriptions]
        rows = []
        for sub in found:
            row = self._row("", sub.subscription_id, {
                "id": f"/subscriptions/{sub.subscription_id}", "name": sub.display_name, "type": SUBSCRIPTION_TYPE,
                "location": "", "tags": {}, "properties": {"state": "Enabled"}})
            rows.append(row)
        return rows

    def _cluster_rows(self, subscriptions: set[str]) -> list[dict[str, Any]]:
        with self.state.lock:
            self.state.settle()
            clusters = [c for c in self.state.clusters.values() if c.subscription_id in subscriptions]
            return [self._row(c.resource_group, c.subscription_id, self.arm.cluster_body(c)) for c in clusters]

    def _site_rows(self, subscriptions: set[str]) -> list[dict[str, Any]]:
        with self.state.lock:
            sites = [s for s in self.state.sites.values() if s.subscription_id in subscriptions]
            rows = [self._row(s.resource_group, s.subscription_id, site_body(s)) for s in sites]
        for row, site in zip(rows, sites, strict=True):
            row.update(kind=site.kind, location=site.location.lower(), sku=None)  # ARG's names, not ARM's display
        return rows

    def _row(self, resource_group: str, subscription_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A resource as a row of ARG's resources table: ARM's body, in ARG's columns."""
        return {"id": body["id"], "name": body["name"], "type": body["type"].lower(),
                "tenantId": self.state.tenant_id, "kind": body.get("kind", ""), "location": body["location"],
                "resourceGroup": resource_group.lower(), "subscriptionId": subscription_id,
                "managedBy": "", "sku": body.get("sku"), "plan": None, "properties": body["properties"],
                "tags": body["tags"], "identity": body.get("identity"), "zones": None, "extendedLocation": None}

    def _page(self, options: dict[str, Any], fingerprint: str) -> tuple[int, int]:
        """(the first row, the page size): from `$skip`/`$top`, or the token's, which they override."""
        start, size = 0, MAX_TOP
        if options["$skipToken"] is not None:
            start, size = _untoken(options["$skipToken"], fingerprint, self._undecodable)
        if options["$skip"] is not None:
            start = options["$skip"]
        if options["$top"] is not None:
            size = options["$top"]
        return start, size

    # ------------------------------------------------------------------ throttling

    def _spend_quota(self, caller: Application) -> dict[str, str]:
        """One query of the caller's quota, and the quota headers after it; 429 RateLimiting when none is left."""
        with self.state.lock:
            now = self.state.now()
            window = timedelta(seconds=self.state.resource_graph_window_seconds)
            start, used = self._windows.get(caller.app_id, (now, 0))
            if now >= start + window:
                start, used = now, 0
            left = math.ceil((start + window - now).total_seconds())
            if used >= self.state.resource_graph_quota:
                raise self._error(429, "RateLimiting", {"code": "RateLimiting", "message": THROTTLED},
                                  headers={**_quota_headers(0, left), "Retry-After": str(max(left, 1))})
            self._windows[caller.app_id] = (start, used + 1)
            return _quota_headers(self.state.resource_graph_quota - used - 1, left)

    # ------------------------------------------------------------------ errors

    def _error(self, status: int, code: str, *details: dict[str, Any], headers: dict[str, str] | None = None
               ) -> ApiError:
        support = (f"Please provide below info when asking for support: timestamp = {utc_iso(self.state.now())}, "
                   f"correlationId = {uuid.uuid4()}.")
        return ApiError(status, code, support, headers, list(details))

    def _invalid_content(self, message: str) -> ApiError:
        return self._error(400, "BadRequest", {"code": "InvalidRequestContent", "message": message})

    def _undecodable(self) -> ApiError:
        return self._error(400, "BadRequest", {"code": "CouldNotDecodeSkipToken",
                                               "message": "Skip token could not be decoded."})


def _quota_headers(remaining: int, seconds: int) -> dict[str, str]:
    hours, rest = divmod(max(seconds, 0), 3600)
    return {"x-ms-user-quota-remaining": str(remaining),
            "x-ms-user-quota-resets-after": f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"}


def _strings(body: dict[str, Any], name: str, invalid: Any) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid(f"'{name}' must be an array of strings.")
    return value


def _options(value: Any, invalid: Any) -> dict[str, Any]:
    """QueryRequestOptions with their defaults; unknown options are ignored, as ARG's deserializer ignores them."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise invalid("'options' must be an object.")
    options = {"$top": value.get("$top"), "$skip": value.get("$skip"), "$skipToken": value.get("$skipToken"),
               "resultFormat": str(value.get("resultFormat") or "objectArray")}
    if options["$top"] is not None and not _integer_in(options["$top"], 1, MAX_TOP):
        raise invalid(f"'$top' must be an integer from 1 to {MAX_TOP}.")
    if options["$skip"] is not None and not _integer_in(options["$skip"], 0, 2**31 - 1):
        raise invalid("'$skip' must be an integer of at least 0.")
    if options["$skipToken"] is not None and not isinstance(options["$skipToken"], str):
        raise invalid("'$skipToken' must be a string.")
    if options["resultFormat"].lower() not in ("objectarray", "table"):
        raise invalid("'resultFormat' must be 'objectArray' or 'table'.")
    return options


def _integer_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _formatted(query: kql.Query, page: list[dict[str, Any]], result_format: str) -> Any:
    if result_format.lower() == "objectarray":
        return page
    return {"columns": [{"name": name, "type": kind} for name, kind in query.columns],
            "rows": [[row[name] for name, _ in query.columns] for row in page]}


def _fingerprint(text: str, body: dict[str, Any]) -> str:
    """What a `$skipToken` is bound to: the query and its scopes (the spec: "together with the same query and scopes
    used in the current request")."""
    scope = {"query": text, "subscriptions": sorted(s.lower() for s in body.get("subscriptions") or []),
             "managementGroups": sorted(g.lower() for g in body.get("managementGroups") or [])}
    return hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()[:16]


def _token(fingerprint: str, start: int, size: int) -> str:
    """An opaque continuation: base64 of the fingerprint, the next row and the page size."""
    return base64.b64encode(json.dumps({"q": fingerprint, "skip": start, "top": size}).encode()).decode()


def _untoken(token: str, fingerprint: str, undecodable: Any) -> tuple[int, int]:
    try:
        found = json.loads(base64.b64decode(token, validate=True))
        start, size = found["skip"], found["top"]
        valid = found["q"] == fingerprint and _integer_in(start, 0, 2**31 - 1) and _integer_in(size, 1, MAX_TOP)
    except (binascii.Error, ValueError, TypeError, KeyError) as err:
        raise undecodable() from err
    if not valid:  # another query's or scopes' token, or one not made here
        raise undecodable()
    return start, size
