// Assigns one of the remediator's custom roles on one resource group (deployed with
// scope: resourceGroup(subscription id, name) from main.bicep: execute mode's identity role, on the
// identity group of each managed subscription).
targetScope = 'resourceGroup'

@description('Principal id of the remediator identity.')
param identityPrincipalId string

@description('Resource id of the custom role definition (assignable in this group\'s subscription).')
param roleDefinitionId string

@description('What the assignment is for, as the portal shows it.')
param assignmentDescription string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, identityPrincipalId, roleDefinitionId)
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: roleDefinitionId
    description: assignmentDescription
  }
}
