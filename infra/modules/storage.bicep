// The app's storage account: Functions host storage (AzureWebJobsStorage), the remediation
// table and work queues (remediation steps, incident lookups, credential checks), the Flex
// Consumption deployment container and Event Grid's dead-letter container. Shared keys are
// off: every caller uses Entra ID (RBAC).

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Region of the account.')
param location string

@description('Tags for the account.')
param tags object = {}

@description('Replication. Standard_LRS is enough for small, regional state; Standard_ZRS survives a zone outage.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Principal id of the remediator identity.')
param identityPrincipalId string

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string = 'app-package'

@description('Blob container where Event Grid dead-letters undeliverable events.')
param deadLetterContainerName string = 'eventgrid-deadletter'

// Names the code shares (remediation/app/settings.py: TABLE_NAME, WORK_QUEUE, INCIDENT_QUEUE,
// CHECK_QUEUE).
// The Functions host would create the queues and `<queue>-poison` on first use; creating
// them here makes them visible (and monitorable) before the first failure arrives.
var tableName = 'remediations'
var queueNames = [
  'remediation-steps'
  'remediation-steps-poison'
  'incident-lookups'
  'incident-lookups-poison'
  'credential-checks'
  'credential-checks-poison'
]

// Built-in data roles, on this account only (documented minimum for identity-based
// AzureWebJobsStorage plus what the app's own table and queue code needs).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

var accountRoles = [
  {
    id: storageBlobDataOwner
    why: 'Functions host storage: leases, timer locks, keys, and the Flex deployment package.'
  }
  {
    id: storageQueueDataContributor
    why: 'Queue triggers and the app enqueueing remediation steps, incident lookups and credential checks.'
  }
  {
    id: storageTableDataContributor
    why: 'Remediation records with optimistic concurrency.'
  }
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches storage over its public endpoint; shared keys are disabled, so every request needs an Entra token and an RBAC data role.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: no VNet in this deployment; access is Entra-only (allowSharedKeyAccess false).
  // checkov:skip=CKV_AZURE_206:Geo-replication without compute in a second region buys nothing here; the state is small and regional. Choose Standard_ZRS/GRS/GZRS with skuName if wanted.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource table 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: tableName
}

resource dataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in accountRoles: {
  name: guid(account.id, identityPrincipalId, role.id)
  scope: account
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
    description: role.why
  }
}]

// Event Grid dead-letters with the same identity (deadLetterWithResourceIdentity). Blob Data
// Owner above already covers it; this container-scoped grant states the need on its own,
// so narrowing the account-wide role later cannot silently break dead-lettering.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, identityPrincipalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    description: 'Event Grid system topic dead-letters undeliverable failure events here.'
  }
}

output id string = account.id
output name string = account.name
// Endpoints as the account reports them: they carry this cloud's storage suffix.
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = deadLetterContainer.name
output tableName string = table.name
