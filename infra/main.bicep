// AKS service-principal remediator: everything one subscription needs.
//
// Subscription scope, because three things here live above any resource group: the
// resource group itself, the custom role definition, and the role's assignment on the
// subscription (plus optional extra subscriptions). One deployment, one command, and azd's
// default layout. Everything else goes into the resource group through modules.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Environment name (azd environment); seeds resource names and tags.')
param environmentName string

@minLength(1)
@description('Region for the resource group and every regional resource; it must offer Flex Consumption.')
param location string

@description('Resource group name; empty for rg-<environmentName>.')
param resourceGroupName string = ''

@description('More subscriptions the remediator may act on. It gets its custom role there and sweeps their Activity Log; failure events come only from this subscription\'s system topic.')
param extraSubscriptionIds array = []

@description('Grant the identity the Microsoft Graph app role Application.ReadWrite.OwnedBy with the Graph Bicep extension. Needs a deployer allowed to grant app roles; false to grant it by hand (infra/README.md).')
param grantGraphPermission bool = true

@description('Create the Event Grid subscription to the on_resource_failure function. Needs the function code deployed first: false on the first run, true after deploying the code.')
param deployEventSubscription bool = false

@description('Key Vault public network access (Disabled only with a private endpoint and VNet integration added).')
@allowed([
  'Enabled'
  'Disabled'
])
param keyVaultPublicNetworkAccess string = 'Enabled'

@description('Storage replication for the app\'s storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Most instances the Flex Consumption app may scale out to (ARM allows about 200 writes per subscription per principal).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 10

@description('Daily Log Analytics ingestion cap in GB, a cost guard; -1 for none.')
param logDailyQuotaGb int = 1

// Remediator settings (remediation/settings.py). Endpoints follow the cloud the template is
// deployed to; in public Azure they equal the defaults in settings.py (the code strips the
// trailing slash environment() adds).
@description('REMEDIATOR_ARM_ENDPOINT: Azure Resource Manager endpoint.')
param armEndpoint string = environment().resourceManager

@description('REMEDIATOR_GRAPH_ENDPOINT: Microsoft Graph endpoint, without /v1.0.')
param graphEndpoint string = 'https://graph.microsoft.com'

@description('REMEDIATOR_AUTHORITY_HOST: Entra ID authority host.')
param authorityHost string = environment().authentication.loginEndpoint

@description('REMEDIATOR_SWEEP_SCHEDULE: NCRONTAB schedule of the Activity Log sweep.')
param sweepSchedule string = '0 */15 * * * *'

@description('REMEDIATOR_SECRET_LIFETIME_DAYS: lifetime of a minted client secret.')
@minValue(1)
param secretLifetimeDays int = 180

@description('REMEDIATOR_RESET_WAIT_SECONDS: how long one invocation waits on a reset.')
@minValue(0)
param resetWaitSeconds int = 5

@description('REMEDIATOR_RETRY_DELAY_SECONDS: delay before a step is retried from the queue.')
@minValue(0)
param retryDelaySeconds int = 30

@description('REMEDIATOR_LOOKUP_DELAY_SECONDS: delay between looks for the Activity Log entry.')
@minValue(0)
param lookupDelaySeconds int = 60

@description('REMEDIATOR_LOOKUP_TIMEOUT_MINUTES: how long to keep looking for that entry.')
@minValue(0)
param lookupTimeoutMinutes int = 30

@description('REMEDIATOR_RESET_TIMEOUT_MINUTES: how long a reset may run before it is marked failed.')
@minValue(0)
param resetTimeoutMinutes int = 120

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var subscriptionIds = join(concat([
  subscription().subscriptionId
], extraSubscriptionIds), ',')

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-remediator-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    identityPrincipalId: identity.outputs.principalId
    dailyQuotaGb: logDailyQuotaGb
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'strem${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    identityPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-rem-${resourceToken}'
    location: location
    tags: tags
    identityPrincipalId: identity.outputs.principalId
    publicNetworkAccess: keyVaultPublicNetworkAccess
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: 'func-remediator-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    tenantId: tenant().tenantId
    keyVaultUrl: keyVault.outputs.uri
    armEndpoint: armEndpoint
    graphEndpoint: graphEndpoint
    authorityHost: authorityHost
    subscriptionIds: subscriptionIds
    sweepSchedule: sweepSchedule
    secretLifetimeDays: secretLifetimeDays
    resetWaitSeconds: resetWaitSeconds
    retryDelaySeconds: retryDelaySeconds
    lookupDelaySeconds: lookupDelaySeconds
    lookupTimeoutMinutes: lookupTimeoutMinutes
    resetTimeoutMinutes: resetTimeoutMinutes
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    name: 'evgt-arm-${resourceToken}'
    tags: tags
    identityId: identity.outputs.id
    functionAppId: functionApp.outputs.id
    deployEventSubscription: deployEventSubscription
    deadLetterStorageAccountId: storage.outputs.id
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    identityPrincipalId: identity.outputs.principalId
    environmentName: environmentName
    extraSubscriptionIds: extraSubscriptionIds
  }
}

module extraSubscriptionRoles 'modules/subscription-role-assignment.bicep' = [for id in extraSubscriptionIds: {
  name: 'role-${uniqueString(id)}'
  scope: subscription(id)
  params: {
    identityPrincipalId: identity.outputs.principalId
    roleDefinitionId: roles.outputs.roleDefinitionId
  }
}]

module graph 'modules/graph.bicep' = if (grantGraphPermission) {
  name: 'graph'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
  }
}

// azd stores these as environment values (azd env get-values).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output FUNCTION_APP_NAME string = functionApp.outputs.name
output REMEDIATOR_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output REMEDIATOR_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output REMEDIATOR_KEY_VAULT_URL string = keyVault.outputs.uri
output EVENT_GRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.name
output CUSTOM_ROLE_NAME string = roles.outputs.roleName
