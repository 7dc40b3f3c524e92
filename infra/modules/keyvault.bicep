// Key Vault that keeps every client secret the remediator mints. RBAC mode only (no access
// policies), soft delete with purge protection, one data role for the identity on this
// vault alone, and its audit log (every secret read and write) sent to Log Analytics.
//
// Purge protection keeps a deleted vault's name reserved for softDeleteRetentionInDays:
// main.bicep salts the name per deployment generation so `azd down --purge && azd up` works.

@description('Name of the vault (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Region of the vault.')
param location string

@description('Tags for the vault.')
param tags object = {}

@description('Principal id of the remediator identity.')
param identityPrincipalId string

@description('Resource id of the custom data role (set, get, read metadata of secrets) from keyvault-secrets-role.bicep.')
param secretsRoleDefinitionId string

@description('Log Analytics workspace that receives the vault\'s AuditEvent log.')
param workspaceId string

@description('Public network access. Flex Consumption without VNet integration needs Enabled; use Disabled only with a private endpoint and VNet integration added.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Enabled'

@description('Days a deleted secret or vault stays recoverable.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:The function app reaches the vault over the public endpoint (no VNet in this deployment); every request needs an Entra token and an RBAC data role. Set publicNetworkAccess to Disabled when a private endpoint is added.
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109; the publicNetworkAccess parameter turns it off for a private-endpoint setup.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'
      bypass: 'None'
    }
  }
}

resource secretsWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, secretsRoleDefinitionId)
  scope: vault
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: secretsRoleDefinitionId
    description: 'Store each minted client secret before it is used; read it back to reset the cluster; list its versions.'
  }
}

// Who read or wrote which secret, and when: the evidence trail for minted credentials.
resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    // Resource-specific tables (AegDeliveryFailureLogs, AZKVAuditLogs, ...), which the README's
    // queries read; without it the logs land in AzureDiagnostics (Microsoft Learn, "Diagnostic
    // settings in Azure Monitor", resource-specific mode).
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
