// Lets the remediator give a replacement service principal the role assignments its deleted
// predecessor had, and a cluster it moves to managed identity's new identities the roles its service
// principal held (and Managed Identity Operator on the kubelet identity), and nothing more: the
// custom role assignment writer
// (role-assignment-writer-role.bicep) under Microsoft's documented constraining condition
// ("Delegate Azure role assignment management to others with conditions", example
// "Constrain roles" plus the PrincipalType clause) and a PrincipalId clause that excludes the
// remediator's own principal (the PrincipalId attribute takes ForAnyOfAllValues:GuidNotEquals,
// "Azure role assignment condition ... authorization actions and attributes").
//
// It may write or delete only assignments of the listed roles, only to service principals, and
// never to itself: without the last clause a remediator, itself a service principal, could give
// itself any listed role at subscription scope. Deployed only when REMEDIATOR_REPLACE_DELETED is
// `replace` or REMEDIATOR_MIGRATE is `execute` (main.bicep), once per subscription the remediator acts on.
targetScope = 'subscription'

@description('Principal id of the remediator identity.')
param identityPrincipalId string

@description('Resource id of the role assignment writer role (role-assignment-writer-role.bicep).')
param roleDefinitionId string

@description('Role definition GUIDs the remediator may assign (REMEDIATOR_ASSIGNABLE_ROLE_IDS, with Managed Identity Operator in execute mode), trimmed, lower case.')
param assignableRoleIds array

var roles = join(assignableRoleIds, ', ')
// One template, as sandbox/rbac.py parses and enforces it: a write is tested on the request,
// a delete on the assignment being deleted.
var condition = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${roles}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAllValues:GuidNotEquals {${identityPrincipalId}})) AND ((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/delete\'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${roles}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAllValues:GuidNotEquals {${identityPrincipalId}}))'

resource delegation 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, identityPrincipalId, roleDefinitionId, 'aks-sp-remediator-replacement')
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: roleDefinitionId
    condition: condition
    conditionVersion: '2.0'
    description: 'AKS service-principal remediator: give a replacement service principal its deleted predecessor\'s role assignments, and a cluster moved to managed identity its identities\' roles (listed roles, service principals only, never itself).'
  }
}

output condition string = condition
