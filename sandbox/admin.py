"""The sandbox's own control API under `/_sandbox/`: state, clock, faults, cluster operations, Event Grid.

Not part of Azure; tests, the demo and `python -m sandbox serve` users drive scenarios with it.
"""

from __future__ import annotations

import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.arm import ArmApi
from sandbox.eventgrid import EventGridTopic
from sandbox.server import Api, Request, Response
from sandbox.state import ApiError, Fault, SandboxState

APIS = ("arm", "graph", "login", "vault")
REQUEST_FAULTS = ("throttle", "error", "latency")
WORLD_FAULTS = ("propagation_delay", "ingestion_delay", "reset_fails", "slow_operations")


class AdminApi(Api):
    name = "admin"
    counted = False

    def __init__(self, state: SandboxState, arm: ArmApi, topic: EventGridTopic, operator_app_id: str,
                 api_client_id: str) -> None:
        super().__init__(state)
        self._arm, self._topic, self._operator, self._api = arm, topic, operator_app_id, api_client_id
        self.route("GET", r"/_sandbox/state", "GET state", self.snapshot)
        self.route("POST", r"/_sandbox/clock", "POST clock", self.clock)
        self.route("POST", r"/_sandbox/faults", "POST faults", self.fault)
        self.route("POST", r"/_sandbox/clusters/(?P<name>[^/]+)/operate", "POST operate", self.operate)
        self.route("POST", r"/_sandbox/eventgrid/subscriptions", "POST subscriptions", self.subscribe)
        self.route("GET", r"/_sandbox/eventgrid/subscriptions", "GET subscriptions", self.subscriptions)
        self.route("POST", r"/_sandbox/tokens", "POST tokens", self.mint_token)

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
            api = body.get("api")
            if api not in APIS:
                raise ApiError(400, "InvalidFault", f"api must be one of {', '.join(APIS)}")
            status = body.get("status", 503)
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise ApiError(400, "InvalidFault", "status must be an HTTP error status (400-599)")
            self.state.add_fault(api, Fault(kind=kind, remaining=count, rate=float(rate), status=status,
                                            retry_after=_seconds(body, "retryAfter", 1),
                                            seconds=_seconds(body, "seconds", 0.5)))
        elif kind in WORLD_FAULTS:
            seconds = _seconds(body, "seconds", 0)
            with self.state.lock:
                if kind == "propagation_delay":
                    self.state.propagation_seconds = seconds
                elif kind == "ingestion_delay":
                    self.state.ingestion_seconds = seconds
                elif kind == "slow_operations":
                    self.state.operation_seconds = seconds
                else:
                    self.state.reset_failures += count
        else:
            raise ApiError(400, "InvalidFault", f"kind must be one of {', '.join(REQUEST_FAULTS + WORLD_FAULTS)}")
        return Response(200, {"accepted": body})

    def operate(self, request: Request) -> Response:
        """A platform engineer's cluster write (an upgrade), finished at once: does it succeed?"""
        body = self._object(request)
        with self.state.lock:
            cluster = next((c for c in self.state.clusters.values() if c.name == request.params["name"]), None)
            if cluster is None:
                raise ApiError(404, "ResourceNotFound", f"no cluster named {request.params['name']}")
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
