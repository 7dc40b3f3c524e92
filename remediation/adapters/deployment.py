"""What `python -m remediation preflight` reads from Azure before a deployment, with the deployer's own sign-in
(remediation/cli/preflight.py `DeploymentReader`). It writes nothing.

- The cloud: `GET {arm}/metadata/endpoints?api-version=2022-09-01` (no token; what `az cloud register
  --endpoint-resource-manager` reads). No SDK has it: an azure-core pipeline sends it.
- Flex Consumption regions: azure-mgmt-web `list_geo_regions(sku="FlexConsumption")`, the call behind
  `az functionapp list-flexconsumption-locations` (`Microsoft.Web/geoRegions/read`, any reader of the subscription).
- The deployer: who the Graph token says signed in (its `oid`, and `scp` for a user), its active Entra roles
  (`transitiveMemberOf/microsoft.graph.directoryRole`, so roles given through a group count) and, for a service
  principal, its Microsoft Graph application permissions (`appRoleAssignments`). Through GraphDirectory.
- Other remediators: function apps carrying REMEDIATOR_TAG, through one Azure Resource Graph query over every
  subscription the deployer may read (a remediator in another subscription may act on this one through its
  extra subscriptions); and the function apps that the subscriptions' `Microsoft.Resources.Subscriptions` system
  topics deliver to (an event subscription to an `on_resource_failure` function), through azure-mgmt-eventgrid,
  which also finds a remediator deployed before the tag existed. Their app settings through azure-mgmt-web
  (`Microsoft.Web/sites/config/list/action`, which Website Contributor and Contributor hold; Reader does not).
- Role definitions: azure-mgmt-authorization `role_definitions.get`.

Every failure is translated once (remediation/adapters/azure_errors.py), so the preflight can say what it could not
read and why.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from remediation.adapters.azure_errors import authentication_error, translate
from remediation.adapters.clients import SDK_RETRY, PerSubscription, RetrySettings, arm_options
from remediation.adapters.graph import GraphDirectory
from remediation.adapters.resourcegraph import ResourceGraphClusters
from remediation.errors import InvalidInputError, PermanentError
from remediation.model import EVENT_FUNCTION, REMEDIATOR_TAG, DeployedRemediator, Deployer, RoleDefinition

METADATA_API_VERSION = "2022-09-01"
SUBSCRIPTION_TOPIC_TYPE = "microsoft.resources.subscriptions"
SITES_QUERY = """Resources
| where type =~ 'microsoft.web/sites'
| project id, name, resourceGroup, subscriptionId, tags"""


class AzureDeploymentReader:
    def __init__(self, credential: TokenCredential, *, arm_endpoint: str, graph_endpoint: str,
                 connection_verify: str | bool = True, retry: RetrySettings = SDK_RETRY) -> None:
        # Imported here: only the preflight needs them, never a function app's cold start.
        from azure.mgmt.authorization import AuthorizationManagementClient
        from azure.mgmt.eventgrid import EventGridManagementClient
        from azure.mgmt.web import WebSiteManagementClient

        self._credential, self._arm, self._graph_endpoint = credential, arm_endpoint.rstrip("/"), graph_endpoint
        self._verify = connection_verify
        options = arm_options(self._arm, connection_verify=connection_verify, retry=retry)
        self._web = PerSubscription(lambda sub: WebSiteManagementClient(credential, sub, **options))
        self._event_grid = PerSubscription(lambda sub: EventGridManagementClient(credential, sub, **options))
        self._authorization = PerSubscription(lambda sub: AuthorizationManagementClient(
            credential, sub, api_version="2022-04-01", **options))
        self._resource_graph = ResourceGraphClusters(credential, endpoint=self._arm,
                                                     connection_verify=connection_verify, retry=retry)
        self._graph = GraphDirectory(credential, endpoint=graph_endpoint,
                                     ca_bundle=connection_verify if isinstance(connection_verify, str) else None)

    def get_cloud_name(self) -> str:
        """The `name` ARM's metadata gives its own cloud (AzureCloud, AzureUSGovernment, ...)."""
        url = f"{self._arm}/metadata/endpoints?api-version={METADATA_API_VERSION}"
        try:
            with PipelineClient(self._arm) as client:
                response = client.send_request(HttpRequest("GET", url), connection_verify=self._verify)
                response.raise_for_status()
                document = response.json()
        except AzureError as err:
            raise translate(err, "reading ARM's cloud metadata") from err
        # 2022-09-01 answers with this cloud's document; some hosts answer with a list of clouds.
        clouds = document if isinstance(document, list) else [document]
        mine = [c for c in clouds if isinstance(c, dict) and str(c.get("resourceManager", "")).rstrip("/") == self._arm]
        found = (mine or [c for c in clouds if isinstance(c, dict)] or [{}])[0].get("name")
        if not isinstance(found, str) or not found:
            raise PermanentError("ARM's cloud metadata names no cloud", code="NoCloudName")
        return found

    def list_flex_regions(self, subscription_id: str) -> list[str]:
        try:
            return [r.name for r in self._web(subscription_id).list_geo_regions(sku="FlexConsumption") if r.name]
        except AzureError as err:
            raise translate(err, "listing the regions that offer Flex Consumption") from err

    def get_deployer(self) -> Deployer:
        claims = self._token_claims()
        object_id = str(claims.get("oid") or "")
        if not object_id:
            raise InvalidInputError("the deployer's token names no object id (oid)", code="NoObjectId")
        kind = "user" if "scp" in claims or claims.get("idtyp") == "user" else "servicePrincipal"
        roles = self._graph.list_directory_role_templates(object_id, user=kind == "user")
        permissions = self._graph.list_graph_app_roles(object_id) if kind == "servicePrincipal" else frozenset()
        return Deployer(object_id=object_id, kind=kind, directory_roles=roles, graph_permissions=permissions)

    def _token_claims(self) -> dict[str, Any]:
        """The Graph token's claims, read, not verified: they only say who signed in, to Graph's own checks."""
        try:
            token = self._credential.get_token(f"{self._graph_endpoint.rstrip('/')}/.default").token
        except ClientAuthenticationError as err:
            raise authentication_error(err, "signing in to Microsoft Graph") from err
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    def list_remediators(self, subscription_ids: Sequence[str]) -> list[DeployedRemediator]:
        found: dict[str, DeployedRemediator] = {}
        for row in self._resource_graph.query(SITES_QUERY, None):
            tags = {str(k).lower(): str(v) for k, v in (row.get("tags") or {}).items()}
            if REMEDIATOR_TAG in tags:
                found[row["id"].lower()] = DeployedRemediator(
                    site_id=row["id"], subscription_id=str(row.get("subscriptionId", "")).lower(),
                    resource_group=row.get("resourceGroup") or "", name=row.get("name") or "",
                    environment=tags[REMEDIATOR_TAG])
        for site_id in self._event_destinations(subscription_ids):
            if site_id.lower() not in found:
                found[site_id.lower()] = self._site(site_id)
        return sorted(found.values(), key=lambda r: r.site_id.lower())

    def _event_destinations(self, subscription_ids: Sequence[str]) -> list[str]:
        """The function apps the subscriptions' own system topics deliver to `on_resource_failure`."""
        sites: list[str] = []
        for subscription_id in subscription_ids:
            client = self._event_grid(subscription_id)
            try:
                for topic in client.system_topics.list_by_subscription():
                    if (topic.topic_type or "").lower() != SUBSCRIPTION_TOPIC_TYPE or \
                            (topic.source or "").lower() != f"/subscriptions/{subscription_id}".lower():
                        continue
                    group = _segment(topic.id, "resourceGroups")
                    for subscription in client.system_topic_event_subscriptions.list_by_system_topic(group, topic.name):
                        site = _function_site(getattr(subscription.destination, "resource_id", None))
                        if site:
                            sites.append(site)
            except AzureError as err:
                raise translate(err, f"listing the event subscriptions of subscription {subscription_id}") from err
        return sites

    def _site(self, site_id: str) -> DeployedRemediator:
        sub, group, name = _segment(site_id, "subscriptions"), _segment(site_id, "resourceGroups"), \
            site_id.rstrip("/").split("/")[-1]
        environment = ""
        try:
            tags = self._web(sub).web_apps.get(group, name).tags or {}
            environment = next((v for k, v in tags.items() if k.lower() == REMEDIATOR_TAG), "")
        except AzureError:
            pass  # its tags decide only whether it is this deployment; unread, it counts as another one
        return DeployedRemediator(site_id=site_id, subscription_id=sub.lower(), resource_group=group, name=name,
                                  environment=environment)

    def list_app_settings(self, site_id: str) -> dict[str, str]:
        sub, group, name = _segment(site_id, "subscriptions"), _segment(site_id, "resourceGroups"), \
            site_id.rstrip("/").split("/")[-1]
        try:
            found = self._web(sub).web_apps.list_application_settings(group, name)
        except AzureError as err:
            raise translate(err, f"reading the app settings of {name}") from err
        return {str(k): str(v) for k, v in (found.properties or {}).items()}

    def get_role_definition(self, subscription_id: str, role_id: str) -> RoleDefinition | None:
        try:
            found = self._authorization(subscription_id).role_definitions.get(
                scope=f"/subscriptions/{subscription_id}", role_definition_id=role_id)
        except ResourceNotFoundError:
            return None
        except AzureError as err:
            raise translate(err, f"reading role definition {role_id}") from err
        permissions = found.permissions or []
        return RoleDefinition(role_id=role_id, name=found.role_name or role_id,
                              actions=tuple(a for p in permissions for a in (p.actions or ())),
                              not_actions=tuple(a for p in permissions for a in (p.not_actions or ())))


def _segment(resource_id: str | None, key: str) -> str:
    """The value after `key` in an ARM id (case-insensitive), or ""."""
    parts = (resource_id or "").strip("/").split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index(key.lower()) + 1] if key.lower() in lowered[:-1] else ""


def _function_site(resource_id: str | None) -> str | None:
    """The function app of a destination `.../sites/{app}/functions/on_resource_failure`, or None."""
    if not resource_id:
        return None
    head, _, function = resource_id.rstrip("/").rpartition("/functions/")
    return head if function.lower() == EVENT_FUNCTION and "/providers/microsoft.web/sites/" in head.lower() else None
