// Lets one more principal write to this environment's dead-letter container: the identity
// of a system topic that another environment created and this one shares.

@description('Name of the storage account holding the dead-letter container.')
param storageAccountName string

@description('Name of the dead-letter container.')
param containerName string

@description('Principal id of the shared topic\'s identity.')
param principalId string

// Storage Blob Data Contributor (built-in), on this one container.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource container 'containers' existing = {
      name: containerName
    }
  }
}

resource writer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account::blobService::container.id, principalId, storageBlobDataContributor)
  scope: account::blobService::container
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    description: 'The shared Event Grid system topic dead-letters this environment\'s undeliverable events here.'
  }
}
