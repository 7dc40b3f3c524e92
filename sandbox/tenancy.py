"""ARM's subscription and tenant lists: what `az login` and `az account` read (Microsoft.Resources, api-version
2016-06-01 to 2022-12-01; azure-cli 2.91 sends 2022-12-01).

- `GET /subscriptions`: the subscriptions the caller reaches (a role assignment at or below the subscription, or
  the sandbox's own actions), as Subscriptions_List shows them (azure-rest-api-specs, Microsoft.Resources
  stable/2022-12-01/examples/GetSubscriptions.json): id, subscriptionId, tenantId, displayName, state,
  subscriptionPolicies, authorizationSource, managedByTenants, tags; and `count` (2019-11-01 on).
- `GET /subscriptions/{id}`: one of them (Subscriptions_Get); one the caller does not reach, or that does not
  exist, is 404 SubscriptionNotFound ("The subscription '<id>' could not be found.", the words ARM answers for
  both: a subscription the caller cannot see is indistinguishable from one that does not exist).
- `GET /tenants`: the caller's home tenant, as Tenants_List shows it (GetTenants.json): id, tenantId,
  tenantCategory "Home", countryCode, displayName, domains, defaultDomain, tenantType "AAD".

Every request needs an api-version and a token, as on every ARM route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox import access
from sandbox.server import Request, Response
from sandbox.state import ApiError, Application

if TYPE_CHECKING:
    from sandbox.arm import ArmApi

API_VERSIONS = ("2016-06-01", "2018-06-01", "2019-06-01", "2019-11-01", "2020-01-01", "2021-01-01", "2022-12-01")
TENANT_DOMAIN = "contoso.onmicrosoft.com"
TENANT_NAME = "Contoso"


class Tenancy:
    def __init__(self, arm: ArmApi) -> None:
        self.arm, self.state = arm, arm.state
        arm.route("GET", r"/subscriptions", "GET subscriptions", self.list_subscriptions)
        arm.route("GET", r"/subscriptions/(?P<sub>[^/]+)", "GET subscriptions/{id}", self.get_subscription)
        arm.route("GET", r"/tenants", "GET tenants", self.list_tenants)

    def _caller(self, request: Request, resource_type: str) -> Application:
        caller = self.arm._authenticate(request)
        self.arm.require_api_version(request, API_VERSIONS, resource_type)
        return caller

    def list_subscriptions(self, request: Request) -> Response:
        caller = self._caller(request, "subscriptions")
        with self.state.lock:
            ids = list(self.state.subscriptions)
        value = [self._subscription(sub) for sub in ids if access.reaches(self.state, caller, sub)]
        return Response(200, {"value": value, "count": {"type": "Total", "value": len(value)}})

    def get_subscription(self, request: Request) -> Response:
        caller = self._caller(request, "subscriptions")
        sub = request.params["sub"].lower()
        if not self.state.has_subscription(sub) or not access.reaches(self.state, caller, sub):
            raise ApiError(404, "SubscriptionNotFound", f"The subscription '{request.params['sub']}' could not be "
                           "found.")
        return Response(200, self._subscription(sub))

    def list_tenants(self, request: Request) -> Response:
        self._caller(request, "tenants")
        tenant = self.state.tenant_id
        return Response(200, {"value": [{
            "id": f"/tenants/{tenant}", "tenantId": tenant, "countryCode": "US", "displayName": TENANT_NAME,
            "domains": [TENANT_DOMAIN], "defaultDomain": TENANT_DOMAIN, "tenantCategory": "Home",
            "tenantType": "AAD"}]})

    def _subscription(self, sub: str) -> dict[str, Any]:
        with self.state.lock:
            found = self.state.subscriptions[sub]
        return {"id": f"/subscriptions/{found.subscription_id}", "subscriptionId": found.subscription_id,
                "tenantId": self.state.tenant_id, "displayName": found.display_name, "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                         "spendingLimit": "Off"},
                "authorizationSource": "RoleBased", "managedByTenants": [], "tags": {}}
