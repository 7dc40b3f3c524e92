// An Activity Log alert on every role assignment the remediator's identity writes in this
// subscription. With REMEDIATOR_REPLACE_DELETED=replace or REMEDIATOR_MIGRATE=execute the identity
// may write assignments (of the listed roles, to service principals other than itself): each one is
// a replacement carrying a deleted principal's access over, or a move to managed identity giving a
// cluster's new identities theirs, and a person should see it.
//
// The Activity Log's `caller` holds a service principal's object id or its application
// (client) id depending on the claims available, so the condition accepts either. Activity
// Log alerts are global and evaluate the subscription's log (Microsoft.Insights/activityLogAlerts,
// 2020-10-01: one of the fields must be `category`).

@description('The environment\'s resource token, for a unique name.')
param resourceToken string

@description('Tags for the alert.')
param tags object = {}

@description('Object (principal) id of the remediator identity.')
param identityPrincipalId string

@description('Client (application) id of the remediator identity.')
param identityClientId string

@description('Action group that notifies the operators (alerts.bicep).')
param actionGroupId string

resource roleAssignmentWrites 'Microsoft.Insights/activityLogAlerts@2020-10-01' = {
  name: 'alert-role-assignments-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'The remediator identity wrote a role assignment (a replacement carrying a deleted service principal\'s roles over, or a move to managed identity granting a cluster\'s new identities theirs). Check it in the Activity Log and with GET /api/remediations.'
    enabled: true
    scopes: [
      subscription().id
    ]
    condition: {
      allOf: [
        {
          field: 'category'
          equals: 'Administrative'
        }
        {
          field: 'operationName'
          equals: 'Microsoft.Authorization/roleAssignments/write'
        }
        {
          anyOf: [
            {
              field: 'caller'
              equals: identityPrincipalId
            }
            {
              field: 'caller'
              equals: identityClientId
            }
          ]
        }
      ]
    }
    actions: {
      actionGroups: [
        {
          actionGroupId: actionGroupId
        }
      ]
    }
  }
}

output id string = roleAssignmentWrites.id
