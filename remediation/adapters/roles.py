"""Azure role assignments through azure-mgmt-authorization (api-version 2022-04-01).

Used by a replacement to carry a deleted service principal's role assignments over to the new one.
Permissions: `Microsoft.Authorization/roleAssignments/read` (in the remediator's custom role) and
`.../write` from the role assignment writer role (infra/modules/role-assignment-writer-role.bicep), whose
condition allows only the configured role definitions, only for service principals, and never the
remediator's own principal.

The caller names each assignment from (scope, principal, role), as Microsoft recommends
(remediation/run/replacement.py), so creating one again after a crash finds the first: ARM answers 201
for the same name and body, and 409 RoleAssignmentExists for the same triple under another name;
both mean "assigned".
"""

from __future__ import annotations

from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError

from remediation.adapters.azure_errors import translate
from remediation.adapters.clients import SDK_RETRY, PerSubscription, RetrySettings, arm_options
from remediation.adapters.odata import literal
from remediation.errors import PermanentError, PrincipalNotReplicatedError
from remediation.model import RoleAssignment


class ArmRoleAssignments:
    def __init__(self, credential: TokenCredential, *, endpoint: str, connection_verify: str | bool = True,
                 retry: RetrySettings = SDK_RETRY) -> None:
        options = arm_options(endpoint, connection_verify=connection_verify, retry=retry)

        def make(subscription_id: str) -> Any:
            # Imported on first use: only a replacement needs it, and a cold start should not pay for it.
            from azure.mgmt.authorization import AuthorizationManagementClient

            return AuthorizationManagementClient(credential, subscription_id, api_version="2022-04-01", **options)

        self._client: PerSubscription[Any] = PerSubscription(make)

    def list_for_principal(self, subscription_id: str, principal_id: str) -> list[RoleAssignment]:
        try:
            found = self._client(subscription_id).role_assignments.list_for_subscription(
                filter=f"principalId eq {literal(principal_id)}")
            return [_assignment(a) for a in found]
        except AzureError as err:
            raise translate(err, f"listing the role assignments of principal {principal_id}") from err

    def create(self, scope: str, role_definition_id: str, principal_id: str, *, name: str) -> RoleAssignment:
        from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

        subscription_id = scope.split("/subscriptions/", 1)[-1].split("/", 1)[0]
        # principalType ServicePrincipal: ARM then skips the directory lookup that fails while a new principal
        # replicates (Microsoft's fix for PrincipalNotFound), and the condition on our role may require it.
        parameters = RoleAssignmentCreateParameters(role_definition_id=role_definition_id, principal_id=principal_id,
                                                    principal_type="ServicePrincipal",
                                                    description="carried over by aks-sp-remediator")
        action = f"assigning role {role_definition_id.rsplit('/', 1)[-1]} at {scope}"
        try:
            return _assignment(self._client(subscription_id).role_assignments.create(scope, name, parameters))
        except HttpResponseError as err:
            code = getattr(err.error, "code", None) or ""
            if code == "RoleAssignmentExists":
                return RoleAssignment(id="", name=name, scope=scope, role_definition_id=role_definition_id,
                                      principal_id=principal_id, principal_type="ServicePrincipal")
            if code == "PrincipalNotFound":
                raise PrincipalNotReplicatedError(f"{action}: ARM does not see principal {principal_id} yet") from err
            if err.status_code == 403:
                raise PermanentError(f"{action}: {err.message} (is the role among the remediator's assignable roles,"
                                     " REMEDIATOR_ASSIGNABLE_ROLE_IDS / the assignableRoleIds parameter?)",
                                     code="AuthorizationFailed") from err
            raise translate(err, action) from err
        except AzureError as err:
            raise translate(err, action) from err


def _assignment(found: Any) -> RoleAssignment:
    return RoleAssignment(id=found.id or "", name=found.name or "", scope=found.scope or "",
                          role_definition_id=found.role_definition_id or "", principal_id=found.principal_id or "",
                          principal_type=found.principal_type)
