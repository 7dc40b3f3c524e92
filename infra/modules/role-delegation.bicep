// Lets the remediator give a replacement service principal the role assignments its
// deleted predecessor had, and nothing more: Role Based Access Control Administrator under
// Microsoft's documented constraining condition ("Delegate Azure role assignment management
// to others with conditions", example "Constrain roles" plus the PrincipalType clause).
// It may write or delete only assignments of the listed roles, and only to service
// principals: never Owner, never itself a wider role, never to a user or group.
// Deployed only when REMEDIATOR_REPLACE_DELETED is `replace` (main.bicep), once per
// subscription the remediator acts on.
targetScope = 'subscription'

@description('Principal id of the remediator identity.')
param identityPrincipalId string

@description('Role definition GUIDs a replacement may be given (REMEDIATOR_ASSIGNABLE_ROLE_IDS).')
param assignableRoleIds array

// Role Based Access Control Administrator (built-in): roleAssignments write and delete.
var rbacAdministrator = 'f58310d9-a9f6-439a-9e8d-f62e7b41a168'
var roles = join(assignableRoleIds, ', ')
// One template, as sandbox/rbac.py parses and enforces it: a write is tested on the request,
// a delete on the assignment being deleted.
var condition = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${roles}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'})) AND ((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/delete\'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${roles}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'}))'

resource delegation 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, identityPrincipalId, rbacAdministrator, 'aks-sp-remediator-replacement')
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', rbacAdministrator)
    condition: condition
    conditionVersion: '2.0'
    description: 'AKS service-principal remediator: give a replacement service principal its deleted predecessor\'s role assignments (listed roles, service principals only).'
  }
}

output condition string = condition
