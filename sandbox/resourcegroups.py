"""ARM resource groups: Microsoft.Resources/resourceGroups (azure-cli 2.91 sends api-version 2024-11-01; the versions
taken are `arm.GROUP_API_VERSIONS`, checked by ArmApi._authorize).

- `GET /subscriptions/{id}/resourcegroups/{name}` (ResourceGroups_Get), `GET /subscriptions/{id}/resourcegroups`
  (ResourceGroups_List, `{"value": [...]}` of the groups in the subscription), a group shown with the fields of the
  spec's ResourceGroup model that the sandbox has: id, name, type, location, tags, properties.provisioningState.
- `PUT` (ResourceGroups_CreateOrUpdate, CreateResourceGroup.json): 201 for a new group, 200 for an existing one whose
  tags (and managedBy) it replaces; `az group update` sends the whole group back this way. A location other than the
  group's is 409 InvalidResourceGroupLocation, "Invalid resource group location 'eastus'. The Resource group already
  exists in location 'westus'." (Azure/azure-cli#22242; the 409 status: trailofbits/algo#1814). A missing location
  is 400 (its wording assumed: LocationRequired).
- `PATCH` (ResourceGroups_Update, ResourceGroupPatchable: tags, managedBy): the tags given replace the group's, as
  the spec says ("the tags ... will be replaced").
- Permissions: Microsoft.Resources/subscriptions/resourceGroups/read and /write at the group (the list at the
  subscription), as ARM checks them.

Not modelled: deleting a group (ResourceGroups_Delete would take the clusters in it with it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.server import Request, Response
from sandbox.state import ApiError, ResourceGroup

if TYPE_CHECKING:
    from sandbox.arm import ArmApi

GROUP_TYPE = "Microsoft.Resources/resourceGroups"
READ = "Microsoft.Resources/subscriptions/resourceGroups/read"
WRITE = "Microsoft.Resources/subscriptions/resourceGroups/write"


class ResourceGroups:
    def __init__(self, arm: ArmApi) -> None:
        self.arm, self.state = arm, arm.state
        groups = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups"
        arm.route("GET", groups, "GET resourcegroups", self.list)
        arm.route("GET", rf"{groups}/(?P<rg>[^/]+)", "GET resourcegroups/{rg}", self.get)
        arm.route("PUT", rf"{groups}/(?P<rg>[^/]+)", "PUT resourcegroups/{rg}", self.put)
        arm.route("PATCH", rf"{groups}/(?P<rg>[^/]+)", "PATCH resourcegroups/{rg}", self.patch)

    def list(self, request: Request) -> Response:
        self.arm._authorize(request, READ, request.path)
        subscription = request.params["sub"].lower()
        with self.state.lock:
            found = [g for g in self.state.resource_groups.values() if g.subscription_id.lower() == subscription]
            return Response(200, {"value": [group_body(g) for g in found]})

    def get(self, request: Request) -> Response:
        self.arm._authorize(request, READ, request.path)
        return Response(200, group_body(self.arm._group(request)))

    def put(self, request: Request) -> Response:
        self.arm._authorize(request, WRITE, request.path)
        body = _object(request)
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise ApiError(400, "LocationRequired", "The location property is required for this definition.")
        tags = _tags(body)
        with self.state.lock:
            group = self.state.resource_group(request.params["rg"], request.params["sub"])
            if group is None:
                group = self.state.add_resource_group(request.params["rg"], subscription_id=request.params["sub"],
                                                      location=_region(location))
                group.tags = tags or {}
                return Response(201, group_body(group))
            if _region(location) != _region(group.location):
                raise ApiError(409, "InvalidResourceGroupLocation", f"Invalid resource group location '{location}'. "
                               f"The Resource group already exists in location '{group.location}'.")
            group.tags = tags or {}
            return Response(200, group_body(group))

    def patch(self, request: Request) -> Response:
        self.arm._authorize(request, WRITE, request.path)
        tags = _tags(_object(request))
        with self.state.lock:
            group = self.arm._group(request)
            if tags is not None:
                group.tags = tags
            return Response(200, group_body(group))


def group_body(group: ResourceGroup) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "type": GROUP_TYPE, "location": group.location,
            "tags": dict(group.tags), "properties": {"provisioningState": "Succeeded"}}


def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       "deserialized: expected a JSON object.")
    return body


def _tags(body: dict[str, Any]) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       "deserialized: 'tags' must map names to string values.")
    return dict(tags)


def _region(location: str) -> str:
    """ARM's programmatic name of a region ('West Europe' is 'westeurope')."""
    return location.replace(" ", "").lower()
