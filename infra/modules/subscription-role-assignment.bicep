// Assigns one of the remediator's custom roles on one more subscription (deployed with
// scope: subscription(id) from main.bicep, once per extra subscription; and the role
// assignment reader, once per subscription of roleAssignmentReadSubscriptionIds).
targetScope = 'subscription'

@description('Principal id of the remediator identity.')
param identityPrincipalId string

@description('Resource id of the custom role definition (assignable to this subscription).')
param roleDefinitionId string

@description('What the assignment is for, as the portal shows it.')
param assignmentDescription string = 'AKS service-principal remediator: read clusters, reset their service principal, read the Activity Log.'

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, identityPrincipalId, roleDefinitionId)
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: roleDefinitionId
    description: assignmentDescription
  }
}
