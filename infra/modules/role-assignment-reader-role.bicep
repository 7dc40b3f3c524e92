// Read role assignments, nothing else: for subscriptions the remediator does not act on where
// clusters' service principals still hold roles (a hub network's subscription holding a cluster's
// own subnet or private DNS zone). A migration plan lists the service principal's role
// assignments there (remediation/decide/migration.py `gather`); without this, it names the
// subscription as unread (blocker RoleAssignmentsUnread). The subscriptions the remediator acts on
// already have roleAssignments/read in its custom role (roles.bicep), so they are not listed here.
// tests/test_infra.py keeps this role at exactly the one action.
targetScope = 'subscription'

@description('Environment name, for the role\'s display name.')
param environmentName string

@description('The environment\'s resource token: one role definition per deployment.')
param resourceToken string

@description('The subscriptions (ids) the role is assigned in.')
param subscriptionIds array

// ArmRoleAssignments.list_for_principal: GET /subscriptions/{id}/providers/Microsoft.Authorization/
// roleAssignments?$filter=principalId eq '{id}'.
var actions = [
  'Microsoft.Authorization/roleAssignments/read'
]

var scopes = [for id in subscriptionIds: '/subscriptions/${id}']

resource readerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'aks-sp-remediator-role-assignment-reader', resourceToken)
  properties: {
    roleName: 'AKS service-principal remediator role assignment reader (${environmentName}, ${resourceToken})'
    description: 'Read role assignments, for the plans that move clusters to managed identity; nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    // The deployment's subscription too: a role definition is created at one of its assignable scopes.
    assignableScopes: concat([
      subscription().id
    ], scopes)
  }
}

output roleDefinitionId string = readerRole.id
