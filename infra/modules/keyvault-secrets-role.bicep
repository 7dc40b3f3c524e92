// The remediator's Key Vault data role: set, get and read the metadata of secrets, nothing
// else. keyvault.bicep assigns it to the identity on the one vault.
//
// Why not a built-in role: Key Vault Secrets User can get and read metadata but cannot set
// a secret, and the remediator must store each minted secret before it uses it; Key Vault
// Secrets Officer (Microsoft.KeyVault/vaults/secrets/*) can also delete, purge, back up
// and restore secrets, which the remediator never does and which would let a compromised
// app destroy the only copy of a live cluster credential.
targetScope = 'subscription'

@description('Environment name, for the role\'s display name.')
param environmentName string

@description('The environment\'s resource token: one role definition per environment (two environments in one subscription do not share or overwrite it).')
param resourceToken string

var dataActions = [
  // KeyVaultSecrets.set_secret: PUT /secrets/{name}.
  'Microsoft.KeyVault/vaults/secrets/setSecret/action'
  // KeyVaultSecrets.get_secret: GET /secrets/{name}/{version} (the value).
  'Microsoft.KeyVault/vaults/secrets/getSecret/action'
  // KeyVaultSecrets.list_versions: GET /secrets/{name}/versions (properties, no values).
  'Microsoft.KeyVault/vaults/secrets/readMetadata/action'
]

resource secretsRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'aks-sp-remediator-keyvault-secrets', resourceToken)
  properties: {
    roleName: 'AKS service-principal remediator Key Vault secrets (${environmentName}, ${resourceToken})'
    description: 'Set, get and read the metadata of Key Vault secrets; no delete, purge, backup or restore.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: dataActions
        notDataActions: []
      }
    ]
    // Assignable in this subscription only; the assignment itself is on the one vault.
    assignableScopes: [
      subscription().id
    ]
  }
}

output roleDefinitionId string = secretsRole.id
output roleName string = secretsRole.properties.roleName
