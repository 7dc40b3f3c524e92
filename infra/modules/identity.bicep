// The one user-assigned managed identity the remediator runs as: the function app's
// identity, AzureWebJobsStorage, Key Vault, ARM, Microsoft Graph, and the Event Grid
// system topic's dead-lettering all use it.

@description('Name of the user-assigned managed identity.')
param name string

@description('Region of the identity.')
param location string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
