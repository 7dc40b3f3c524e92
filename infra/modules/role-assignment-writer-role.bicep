// The role a replacement needs to carry a deleted principal's role assignments over, and a move to
// managed identity to give the new identities theirs: write role assignments, nothing else.
// role-delegation.bicep assigns it under a condition.
//
// Why not the built-in Role Based Access Control Administrator: it also grants `*/read` and
// `Microsoft.Support/*` on every subscription it is assigned in (Microsoft Learn, Azure
// built-in roles), and its condition constrains only role-assignment
// writes and deletes, so the rest would be unconditional. tests/test_infra.py keeps this role
// at exactly the one action the code calls.
targetScope = 'subscription'

@description('Environment name, for the role\'s display name.')
param environmentName string

@description('The environment\'s resource token: one role definition per deployment.')
param resourceToken string

@description('Other subscriptions the role may be assigned in (their ids).')
param extraSubscriptionIds array = []

// ArmRoleAssignments.create: PUT {scope}/providers/Microsoft.Authorization/roleAssignments/{name}.
// Nothing in the remediator deletes a role assignment (a replaced principal's assignments stay
// for a person to remove), so the role does not hold roleAssignments/delete either.
var actions = [
  'Microsoft.Authorization/roleAssignments/write'
]

var extraScopes = [for id in extraSubscriptionIds: '/subscriptions/${id}']

resource writerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'aks-sp-remediator-role-assignment-writer', resourceToken)
  properties: {
    roleName: 'AKS service-principal remediator role assignment writer (${environmentName}, ${resourceToken})'
    description: 'Write role assignments; assigned only under a condition that names the roles, service principals only, and never the remediator itself.'
    type: 'CustomRole'
    permissions: [
      {
        actions: actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: concat([
      subscription().id
    ], extraScopes)
  }
}

output roleDefinitionId string = writerRole.id
output roleName string = writerRole.properties.roleName
