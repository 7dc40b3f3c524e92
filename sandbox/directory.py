"""Microsoft Entra ID's well-known ids, as the sandbox's directory knows them: Microsoft Graph's application and the
application permissions (app roles) it publishes, and the built-in directory roles.

- Microsoft Graph's appId (00000003-0000-0000-c000-000000000000, the same in every tenant) and the ids of its app
  roles: the Microsoft Graph permissions reference (learn.microsoft.com/graph/permissions-reference, "Application"
  identifiers; its display texts and descriptions are the appRoles' `displayName` and `description`), the same ids
  as public templates that grant them (e.g. SCuBA's RiskyPermissions.json).
- Directory role template ids, display names and descriptions: the Microsoft Entra built-in roles reference
  (MicrosoftDocs/entra-docs, docs/identity/role-based-access-control/permissions-reference.md, "All roles").
- Microsoft Graph's service principal belongs to Microsoft's own tenant (`appOwnerOrganizationId`
  f8cdef31-a31e-4b4a-93e4-5f571e91255a, as tenants' copies of first-party service principals show it); in a tenant
  it has an object id of that tenant's own. Assumed: the sandbox derives it from the tenant id, so that it is the same
  after a restart without being saved.

Pure data and functions: no state, no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
MICROSOFT_GRAPH_NAME = "Microsoft Graph"
MICROSOFT_TENANT_ID = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"  # the tenant first-party applications belong to

GRAPH_READ_ALL, GRAPH_OWNED_BY, GRAPH_READ_WRITE_ALL = (
    "Application.Read.All", "Application.ReadWrite.OwnedBy", "Application.ReadWrite.All")
GRAPH_APP_ROLE_ASSIGNMENT_WRITE = "AppRoleAssignment.ReadWrite.All"


@dataclass(frozen=True)
class GraphPermission:
    """One of Microsoft Graph's app roles (an application permission)."""

    value: str
    id: str
    display_name: str
    description: str

    def app_role(self) -> dict[str, Any]:
        """The permission as Microsoft Graph's service principal lists it in `appRoles`."""
        return app_role(self.value, self.id, display_name=self.display_name, description=self.description)


GRAPH_APPLICATION_PERMISSIONS = {p.value: p for p in (
    GraphPermission(GRAPH_READ_ALL, "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30", "Read all applications",
                    "Allows the app to read all applications and service principals without a signed-in user."),
    GraphPermission(GRAPH_OWNED_BY, "18a4783c-866b-4cc7-a460-3d5e5662c884",
                    "Manage apps that this app creates or owns",
                    "Allows the app to create other applications, and fully manage those applications (read, update, "
                    "update application secrets and delete), without a signed-in user. It cannot update any apps that "
                    "it is not an owner of."),
    GraphPermission(GRAPH_READ_WRITE_ALL, "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9", "Read and write all applications",
                    "Allows the app to create, read, update and delete applications and service principals without a "
                    "signed-in user. Does not allow management of consent grants."),
    GraphPermission(GRAPH_APP_ROLE_ASSIGNMENT_WRITE, "06b708a9-e830-4db3-a914-8e69da51d44f",
                    "Manage app permission grants and app role assignments",
                    "Allows the app to manage permission grants for application permissions to any API (including "
                    "Microsoft Graph) and application assignments for any app, without a signed-in user."),
)}


@dataclass(frozen=True)
class DirectoryRoleTemplate:
    template_id: str
    display_name: str
    description: str


DIRECTORY_ROLES = {r.template_id: r for r in (
    DirectoryRoleTemplate("62e90394-69f5-4237-9190-012177145e10", "Global Administrator",
                          "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft "
                          "Entra identities."),
    DirectoryRoleTemplate("e8611ab8-c189-46e8-94e1-60213ab1f814", "Privileged Role Administrator",
                          "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity "
                          "Management."),
    DirectoryRoleTemplate("9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "Application Administrator",
                          "Can create and manage all aspects of app registrations and enterprise apps."),
    DirectoryRoleTemplate("158c047a-c907-4556-b7ef-446551a6b5f7", "Cloud Application Administrator",
                          "Can create and manage all aspects of app registrations and enterprise apps except App "
                          "Proxy."),
    DirectoryRoleTemplate("cf1c38e5-3621-4004-a7cb-879624dced7c", "Application Developer",
                          "Can create application registrations independent of the 'Users can register applications' "
                          "setting."),
)}
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"


def directory_role_template(role: str) -> DirectoryRoleTemplate | None:
    """A built-in directory role by template id or display name (case-insensitive); None if the sandbox knows none."""
    wanted = role.strip().lower()
    return next((r for r in DIRECTORY_ROLES.values() if wanted in (r.template_id, r.display_name.lower())), None)


def directory_role_object_id(tenant_id: str, template_id: str) -> str:
    """The object id of a directory role activated in the tenant (stable for the tenant and template)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:directory-role:{tenant_id}:{template_id}"))


def microsoft_graph_principal_id(tenant_id: str) -> str:
    """The object id of Microsoft Graph's service principal in this tenant."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:microsoft-graph-service-principal:{tenant_id}"))


def app_role(value: str, role_id: str, *, display_name: str | None = None, description: str | None = None,
             member_types: tuple[str, ...] = ("Application",)) -> dict[str, Any]:
    """An appRole object as Graph shows it on an application or a service principal."""
    return {"allowedMemberTypes": list(member_types), "description": description or value,
            "displayName": display_name or value, "id": role_id, "isEnabled": True, "origin": "Application",
            "value": value}
