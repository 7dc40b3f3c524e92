"""The sandbox's own control API under `/_sandbox/`: state, clock, faults, cluster operations, Event Grid, building
a fleet piece by piece (subscriptions, resource groups, applications, clusters; sandbox/fleets.py), an application's
Graph permissions and directory roles, and what a deployment preflight reads: the cloud's name, the Flex Consumption
regions, other deployments of the remediator.

Not part of Azure; tests, the demo and `python -m sandbox serve` users drive scenarios with it.
"""

from __future__ import annotations

import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.arm import ArmApi
from sandbox.eventgrid import EventGridTopic
from sandbox.fleets import (
    create_application,
    create_cluster,
    create_remediator,
    create_resource_group,
    create_subscription,
    update_application_grants,
)
from sandbox.server import Api, Request, Response
from sandbox.state import AFTER_COMMIT_FAULTS, BEFORE_FAULTS, ApiError, Cluster, Fault, SandboxState

REQUEST_FAULTS = BEFORE_FAULTS + AFTER_COMMIT_FAULTS
WORLD_FAULTS = ("propagation_delay", "ingestion_delay", "reset_fails", "slow_operations", "principal_replication_delay")


class AdminApi(Api):
    name = "admin"
    counted = False

    def __init__(self, state: SandboxState, arm: ArmApi, topic: EventGridTopic, operator_app_id: str,
                 api_client_id: str, routes: dict[str, list[str]], *, remediator_app_id: str) -> None:
        """`routes`: each API's route labels (what a fault's `route` may name), writes first. Applications made
        here are owned by `remediator_app_id` unless the body says otherwise."""
        super().__init__(state)
        self._arm, self._topic, self._operator, self._api = arm, topic, operator_app_id, api_client_id
        self._remediator = remediator_app_id
        self._routes = routes
        self.route("GET", r"/_sandbox/state", "GET state", self.snapshot)
        self.route("POST", r"/_sandbox/clock", "POST clock", self.clock)
        self.route("POST", r"/_sandbox/faults", "POST faults", self.fault)
        self.route("GET", r"/_sandbox/faults", "GET faults", self.faults)
        self.route("DELETE", r"/_sandbox/faults", "DELETE faults", self.clear_faults)
        self.route("POST", r"/_sandbox/clusters/(?P<name>[^/]+)/operate", "POST operate", self.operate)
        self.route("POST", r"/_sandbox/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                   r"Microsoft\.ContainerService/managedClusters/(?P<name>[^/]+)/operate", "POST operate", self.operate)
        self.route("POST", r"/_sandbox/subscriptions", "POST subscriptions", self.add_subscription)
        self.route("POST", r"/_sandbox/resourcegroups", "POST resourcegroups", self.add_resource_group)
        self.route("POST", r"/_sandbox/applications", "POST applications", self.add_application)
        self.route("PATCH", r"/_sandbox/applications/(?P<appid>[^/]+)", "PATCH applications/{appId}",
                   self.update_application)
        self.route("POST", r"/_sandbox/remediators", "POST remediators", self.add_remediator)
        self.route("POST", r"/_sandbox/users", "POST users", self.add_user)
        self.route("POST", r"/_sandbox/users/(?P<user>[^/]+)/token", "POST users/{id}/token", self.user_token)
        self.route("POST", r"/_sandbox/cloud", "POST cloud", self.set_cloud)
        self.route("POST", r"/_sandbox/flexregions", "POST flexregions", self.set_flex_regions)
        self.route("POST", r"/_sandbox/clusters", "POST clusters", self.add_cluster)
        self.route("POST", r"/_sandbox/eventgrid/subscriptions", "POST subscriptions", self.subscribe)
        self.route("GET", r"/_sandbox/eventgrid/subscriptions", "GET subscriptions", self.subscriptions)
        self.route("POST", r"/_sandbox/eventgrid/redeliver", "POST redeliver", self.redeliver)
        self.route("POST", r"/_sandbox/tokens", "POST tokens", self.mint_token)
        self.route("GET", r"/_sandbox/topics/events", "GET topic events", self.topic_events)

    def snapshot(self, request: Request) -> Response:
        return Response(200, self.state.snapshot())

    def _object(self, request: Request) -> dict[str, Any]:
        body = request.json(code="InvalidJson")
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidJson", "the body must be a JSON object")
        return body

    def clock(self, request: Request) -> Response:
        seconds = self._object(request).get("advanceSeconds")
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise ApiError(400, "InvalidClock", "advanceSeconds must be a number >= 0")
        return Response(200, {"now": self.state.advance(float(seconds)).isoformat()})

    def fault(self, request: Request) -> Response:
        body = self._object(request)
        kind = body.get("kind")
        count, rate = body.get("count", 1), body.get("rate", 1.0)
        if not isinstance(count, int) or count < 1:
            raise ApiError(400, "InvalidFault", "count must be an integer >= 1")
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ApiError(400, "InvalidFault", "rate must be a number in (0, 1]")
        if kind in REQUEST_FAULTS:
            fault = self._request_fault(body, kind, count, float(rate))
            self.state.add_fault(fault)
            return Response(200, {"accepted": body, "id": fault.id})
        if kind in WORLD_FAULTS:
            seconds = _seconds(body, "seconds", 0)
            with self.state.lock:
                if kind == "propagation_delay":
                    self.state.propagation_seconds = seconds
                elif kind == "ingestion_delay":
                    self.state.ingestion_seconds = seconds
                elif kind == "slow_operations":
                    self.state.operation_seconds = seconds
                elif kind == "principal_replication_delay":
                    # ARM's directory replica learns a new service principal this long after it is made;
                    # `ignorePrincipalType`: naming principalType does not skip the wait (field reports).
                    ignore = body.get("ignorePrincipalType", False)
                    if not isinstance(ignore, bool):
                        raise ApiError(400, "InvalidFault", "ignorePrincipalType must be true or false")
                    self.state.principal_replication_seconds = seconds
                    self.state.replication_ignores_principal_type = ignore
                else:
                    self.state.reset_failures += count
        else:
            raise ApiError(400, "InvalidFault", f"kind must be one of {', '.join(REQUEST_FAULTS + WORLD_FAULTS)}")
        return Response(200, {"accepted": body})

    def _request_fault(self, body: dict[str, Any], kind: str, count: int, rate: float) -> Fault:
        api, route = body.get("api"), body.get("route")
        if api not in self._routes:
            raise ApiError(400, "InvalidFault", f"api must be one of {', '.join(self._routes)}")
        # A route the API does not have would wait forever, unseen: refuse it.
        if route is not None and route not in self._routes[api]:
            raise ApiError(400, "InvalidFault", f"route must be one of the {api} API's: {'; '.join(self._routes[api])}")
        if kind in AFTER_COMMIT_FAULTS and (route is None or route.startswith("GET ")):
            raise ApiError(400, "InvalidFault", f"a {kind} fault needs the route of a write, such as "
                           f"{self._routes[api][0]!r}")
        when = body.get("when", "after")
        if when not in ("before", "after"):
            raise ApiError(400, "InvalidFault", "when must be 'before' or 'after' (the write)")
        if kind == "kill_worker" and self.state.on_kill_worker is None:
            raise ApiError(409, "NoWorker", "no worker hook is registered (SandboxState.on_kill_worker)")
        status = body.get("status", 500 if kind == "error_after_commit" else 503)
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ApiError(400, "InvalidFault", "status must be an HTTP error status (400-599)")
        return Fault(kind=kind, api=api, route=route, remaining=count, rate=rate, status=status,
                     retry_after=_seconds(body, "retryAfter", 1), seconds=_seconds(body, "seconds", 0.5), when=when)

    def faults(self, request: Request) -> Response:
        """Every active fault, with what is left of it: request faults first (with their ids), then world faults."""
        with self.state.lock:
            return Response(200, {"value": [f.public() for f in self.state.faults] + self.state.world_faults()})

    def clear_faults(self, request: Request) -> Response:
        self.state.clear_faults()
        return Response(204)

    # ------------------------------------------------------------------ building a fleet

    def add_subscription(self, request: Request) -> Response:
        return Response(201, create_subscription(self.state, self._object(request)))

    def add_resource_group(self, request: Request) -> Response:
        group, created = create_resource_group(self.state, self._object(request))
        return Response(201 if created else 200, group)

    def add_application(self, request: Request) -> Response:
        return Response(201, create_application(self.state, self._object(request), remediator_app_id=self._remediator))

    def add_cluster(self, request: Request) -> Response:
        return Response(201, create_cluster(self.state, self._object(request)))

    def update_application(self, request: Request) -> Response:
        return Response(200, update_application_grants(self.state, request.params["appid"], self._object(request)))

    def add_user(self, request: Request) -> Response:
        """`{"displayName"}` -> `{"id", "displayName", "userPrincipalName"}`: a member user of the tenant (with
        Entra ID's default user permissions; sandbox/state.py MemberUser)."""
        name = self._object(request).get("displayName")
        if not isinstance(name, str) or not 0 < len(name) <= 120:
            raise ApiError(400, "InvalidUser", "displayName must be a string of 1-120 characters")
        user = self.state.add_user(name)
        return Response(201, {"id": user.object_id, "displayName": user.display_name,
                              "userPrincipalName": user.user_principal_name})

    def user_token(self, request: Request) -> Response:
        """`{"resource"?: "https://graph.microsoft.com"}` -> `{"accessToken"}`: the user's delegated token, as `az
        account get-access-token --resource ...` gives it after `az login` (the sign-in itself is not simulated)."""
        user = self.state.users.get(request.params["user"].lower())
        if user is None:
            raise ApiError(404, "UserNotFound", f"No member user has the id '{request.params['user']}'.")
        resource = self._object(request).get("resource", "https://graph.microsoft.com")
        if not isinstance(resource, str) or not any(resource in accepted for accepted in self.state.audiences.values()):
            raise ApiError(400, "InvalidResource", "resource must be an audience the sandbox's APIs accept")
        return Response(200, {"accessToken": self.state.issue_user_token(user, resource)})

    def add_remediator(self, request: Request) -> Response:
        planted, created = create_remediator(self.state, self._object(request))
        return Response(201 if created else 200, planted)

    # ------------------------------------------------------------------ what a deployment preflight reads

    def set_cloud(self, request: Request) -> Response:
        """`{"name"}`: what GET /metadata/endpoints calls the cloud."""
        name = self._object(request).get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "InvalidRequest", "name must be a non-empty string, such as AzureCloud")
        with self.state.lock:
            self.state.cloud_name = name
        return Response(200, {"name": name})

    def set_flex_regions(self, request: Request) -> Response:
        """`{"regions": [display names]}`: the regions that offer the Flex Consumption plan."""
        regions = self._object(request).get("regions")
        if not isinstance(regions, list) or not all(isinstance(r, str) and r.strip() for r in regions):
            raise ApiError(400, "InvalidRequest", "regions must be a list of region display names, such as "
                           "'West Europe'")
        with self.state.lock:
            self.state.flex_regions = list(dict.fromkeys(regions))
        return Response(200, {"regions": list(dict.fromkeys(regions))})

    # ------------------------------------------------------------------ cluster writes

    def _operated(self, request: Request) -> Cluster:
        """The cluster a request names: by full id, or by name, narrowed by `?subscriptionId=&resourceGroup=`."""
        name = request.params["name"]
        found = self.state.find_clusters(name, subscription_id=request.params.get("sub", request.query.get(
            "subscriptionId")), resource_group=request.params.get("rg", request.query.get("resourceGroup")))
        if not found:
            raise ApiError(404, "ResourceNotFound", f"no cluster named {name} there")
        if len(found) > 1:
            raise ApiError(409, "AmbiguousCluster", f"{len(found)} clusters are named {name}: name one by "
                           "?subscriptionId=&resourceGroup= or by its full id (POST /_sandbox<cluster id>/operate)")
        return found[0]

    def operate(self, request: Request) -> Response:
        """A platform engineer's cluster write (an upgrade), finished at once: does it succeed?"""
        body = self._object(request)
        with self.state.lock:
            cluster = self._operated(request)
            correlation = str(uuid.uuid4())
            operator = self.state.applications[self._operator]
            version = str(body.get("kubernetesVersion") or cluster.kubernetes_version)
            operation = self._arm.begin_write(cluster, operator, correlation, version)
            self.state.settle(force=True)
        return Response(200, {"succeeded": operation.status == "Succeeded",
                              "provisioningState": cluster.provisioning_state, "correlationId": correlation,
                              "error": operation.error})

    def subscribe(self, request: Request) -> Response:
        body = self._object(request)
        endpoint, schema = body.get("endpointUrl"), body.get("schema", "EventGridSchema")
        if not isinstance(endpoint, str):
            raise ApiError(400, "InvalidRequest", "endpointUrl is required")
        subscription = self._topic.subscribe(endpoint, schema)
        return Response(201, {"id": subscription.id, "schema": subscription.schema, "provisioningState": "Succeeded"})

    def subscriptions(self, request: Request) -> Response:
        return Response(200, {"value": [{"id": s.id, "schema": s.schema, "delivered": s.delivered,
                                         "failedAttempts": s.failed_attempts, "deadLettered": s.dead_lettered}
                                        for s in self._topic.subscriptions]})


    def redeliver(self, request: Request) -> Response:
        """Deliver every event delivered so far again, `times` times each, `concurrency` at once (a storm of
        Event Grid's at-least-once duplicates); answers the webhook's statuses."""
        body = self._object(request)
        times, concurrency = body.get("times", 1), body.get("concurrency", 16)
        if not isinstance(times, int) or not 1 <= times <= 10_000:
            raise ApiError(400, "InvalidRequest", "times must be an integer from 1 to 10000")
        if not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
            raise ApiError(400, "InvalidRequest", "concurrency must be an integer from 1 to 256")
        return Response(200, {"statuses": self._topic.redeliver(times, concurrency=concurrency)})

    def topic_events(self, request: Request) -> Response:
        """What was published to the custom topic (sandbox/topics.py), oldest first: `{"value": [{"receivedAt",
        "publisherAppId", "contentType", "event"}]}`; `?type=` keeps the events of that CloudEvents type."""
        wanted = request.query.get("type")
        with self.state.lock:
            found = [dict(e) for e in self.state.topic_events if wanted is None or e["event"].get("type") == wanted]
        return Response(200, {"value": found})

    def mint_token(self, request: Request) -> Response:
        """A token Entra ID would never issue, to prove the API refuses it: another audience, issuer or
        tenant, a lifetime that ended, chosen roles, or a signing key the tenant does not publish."""
        body = self._object(request)
        client_id = body.get("clientId", self._operator)
        app = self.state.applications.get(client_id) if isinstance(client_id, str) else None
        if app is None:
            raise ApiError(400, "InvalidToken", "clientId must be the appId of an application in the sandbox")
        claims: dict[str, Any] = {"aud": body.get("audience", self._api)}
        for field, claim in (("issuer", "iss"), ("tenantId", "tid"), ("roles", "roles")):
            if field in body:
                claims[claim] = body[field]
        if "roles" not in body:
            claims["roles"] = sorted(app.granted_roles.get(self._api, ())) or None
        lifetime = body.get("expiresInSeconds", 3600)
        if not isinstance(lifetime, int) or isinstance(lifetime, bool):
            raise ApiError(400, "InvalidToken", "expiresInSeconds must be an integer (negative: already expired)")
        key = body.get("signingKey", "tenant")
        if key not in ("tenant", "foreign"):
            raise ApiError(400, "InvalidToken", "signingKey must be 'tenant' or 'foreign'")
        foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048) if key == "foreign" else None
        return Response(200, {"accessToken": self.state.sign_token(app, claims, lifetime=lifetime, key=foreign)})


def _seconds(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if not isinstance(value, (int, float)) or value < 0:
        raise ApiError(400, "InvalidFault", f"{name} must be a number of seconds >= 0")
    return float(value)
