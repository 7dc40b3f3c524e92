// AKS service-principal remediator: everything one subscription needs.
//
// Subscription scope, because three things here live above any resource group: the
// resource group itself, the custom role definitions (ARM actions; Key Vault data
// actions), and the ARM role's assignment on the subscription (plus optional extra
// subscriptions). One deployment, one command, and azd's default layout. Everything else
// goes into the resource group through modules (and, for a shared Event Grid system topic,
// into the topic's group).
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

@description('Subscriptions the remediator does not act on where clusters\' service principals hold roles (a hub network\'s, holding a cluster\'s own subnet or private DNS zone): it may only read role assignments there, for the migration plans (role-assignment-reader-role.bicep).')
param roleAssignmentReadSubscriptionIds array = []

@description('Grant the identity the Microsoft Graph app roles Application.ReadWrite.OwnedBy and Application.Read.All with the Graph Bicep extension: \'true\', \'false\' (grant them by hand, infra/README.md), or empty for on in the public cloud (AzureCloud) only, the one cloud the extension supports. Needs a deployer allowed to grant app roles (python -m remediation preflight checks).')
@allowed([
  ''
  'true'
  'false'
])
param grantGraphPermission string = ''

@description('Create (or update) the Event Grid subscription to the on_resource_failure function. Needs the function code deployed first: azure.yaml\'s hooks set it true only for the provision that runs after the code is deployed. False leaves an existing subscription in place (incremental mode).')
param deployEventSubscription bool = false

@description('Name of an existing Microsoft.Resources.Subscriptions system topic to attach to (a subscription allows one per source); empty to create one. Used only with existingSystemTopicResourceGroup.')
param existingSystemTopicName string = ''

@description('Resource group of that topic. Empty, or this environment\'s own group, means this environment creates and owns the topic.')
param existingSystemTopicResourceGroup string = ''

@description('Salt of the Key Vault name, one per deployment generation (azure.yaml\'s hooks keep it in the azd environment): a purge-protected vault\'s name stays reserved for 90 days after deletion, so a re-creation needs a new name. Empty for the unsalted name kv-rem-<token>.')
@maxLength(64)
param keyVaultNameSalt string = ''

@description('Create the remediator API\'s Entra application with the Graph Bicep extension: \'true\', \'false\' (then give existingApiClientId; infra/README.md shows az ad app create), or empty for on in the public cloud (AzureCloud) only, the one cloud the extension supports.')
@allowed([
  ''
  'true'
  'false'
])
param createApiApplication string = ''

@description('Client id of an API application created by hand (createApiApplication false).')
param existingApiClientId string = ''

@description('Application ID URI of that application; empty for api://<client id>.')
param existingApiAppIdUri string = ''

@description('Object ids (users, groups, service principals) given the API roles Remediations.Write and Remediations.Read.')
param apiWriterPrincipalIds array = []

@description('Object ids given the API role Remediations.Read only.')
param apiReaderPrincipalIds array = []

@description('E-mail address that receives the alerts; empty for none (alerts still show in the portal).')
param alertEmail string = ''

@description('HTTPS webhook that receives the alerts (common alert schema); empty for none.')
@secure()
param alertWebhookUrl string = ''

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

// Flex Consumption's lowest maximum is 40 and its highest 1,000 (Microsoft Learn, event-driven
// scaling, "Limit scale-out"; lower values were a preview in a few regions), and the cap holds
// per function group (each queue or timer function scales on its own), so it bounds cost, not
// ARM writes: REMEDIATOR_MAX_RESETS_PER_HOUR and the circuit breaker bound those.
@description('Most instances each function group of the Flex Consumption app may scale out to (40-1000). A cost bound, not a bound on writes to Azure: the reset cap and the breaker are.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Daily Log Analytics ingestion cap in GB, a cost guard; -1 for none.')
param logDailyQuotaGb int = 1

// Remediator settings (remediation/app/settings.py). Endpoints follow the cloud the template is
// deployed to (the code strips the trailing slash environment() adds).
@description('REMEDIATOR_ARM_ENDPOINT: Azure Resource Manager endpoint.')
param armEndpoint string = environment().resourceManager

@description('REMEDIATOR_GRAPH_ENDPOINT: Microsoft Graph endpoint, without /v1.0; empty for this cloud\'s (graphEndpoints below). Set it for a cloud or tenant type that map does not cover (US Government DoD: infra/README.md).')
param graphEndpoint string = ''

@description('REMEDIATOR_AUTHORITY_HOST: Entra ID authority host.')
param authorityHost string = environment().authentication.loginEndpoint

@description('REMEDIATOR_SWEEP_SCHEDULE: NCRONTAB schedule of the Activity Log sweep.')
param sweepSchedule string = '0 */15 * * * *'

@description('REMEDIATOR_HEALTH_SCHEDULE: NCRONTAB schedule of the fleet credential health check (one Resource Graph query, Graph $batch reads; it acts on what it finds).')
param healthSchedule string = '0 0 6 * * *'

@description('REMEDIATOR_SECRET_LIFETIME_DAYS: lifetime of a minted client secret.')
@minValue(1)
param secretLifetimeDays int = 180

@description('REMEDIATOR_RESET_POLL_SECONDS: seconds between looks at a running reset when ARM sends no Retry-After.')
@minValue(0)
param resetPollSeconds int = 30

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

@description('REMEDIATOR_SDK_LOG_LEVEL: level of the Azure SDKs\' own loggers (INFO logs every HTTP header set).')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param sdkLogLevel string = 'WARNING'

// Guardrails and the rotation's limits (remediation/decide/guardrails.py, remediation/run/rotation.py).
@description('REMEDIATOR_DENY_SUBSCRIPTION_IDS: Comma-separated subscriptions never touched.')
param denySubscriptionIds string = ''

@description('REMEDIATOR_ALLOW_RESOURCE_GROUPS: Comma-separated resource groups (name or <subscription id>/<name>) the remediator may act in; empty: any.')
param allowResourceGroups string = ''

@description('REMEDIATOR_DENY_RESOURCE_GROUPS: Comma-separated resource groups never touched.')
param denyResourceGroups string = ''

@description('REMEDIATOR_OPT_OUT_TAG: key=value tag that keeps a cluster, or every cluster of a resource group, out.')
param optOutTag string = 'aks-sp-remediator=off'

@description('REMEDIATOR_MODE: remediate: act; observe: decide, plan and record, write nothing.')
@allowed([
  'remediate'
  'observe'
])
param mode string = 'remediate'

@description('REMEDIATOR_MAX_RESETS_PER_HOUR: Most cluster resets started in any hour across the fleet.')
@minValue(0)
param maxResetsPerHour int = 20

@description('REMEDIATOR_BREAKER_FAILURES: Failed remediations of a cluster or application in the window that stop further ones.')
@minValue(0)
param breakerFailures int = 3

@description('REMEDIATOR_BREAKER_WINDOW_HOURS: the circuit breaker\'s window, in hours.')
@minValue(1)
param breakerWindowHours int = 24

@description('REMEDIATOR_RETIRE_AFTER_HOURS: Hours after every cluster is verified before replaced passwords are removed; 0 keeps them.')
@minValue(0)
param retireAfterHours int = 24

@description('REMEDIATOR_RETIRE_FOREIGN_PASSWORDS: Also remove unexpired passwords someone else added, once every cluster holds the new one.')
param retireForeignPasswords bool = false

@description('REMEDIATOR_PROPAGATION_SUCCESSES: Sign-ins in a row the new secret must pass before any reset.')
@minValue(1)
param propagationSuccesses int = 3

@description('REMEDIATOR_PROPAGATION_INTERVAL_SECONDS: Seconds between those sign-ins.')
@minValue(0)
param propagationIntervalSeconds int = 10

@description('REMEDIATOR_PROPAGATION_TIMEOUT_MINUTES: How long to wait for the new secret to sign in.')
@minValue(1)
param propagationTimeoutMinutes int = 20

@description('REMEDIATOR_REPLACE_DELETED: a cluster whose application was deleted. plan: record the plan (steps and az commands) and change nothing; replace: create a new application and service principal, give it the old one\'s role assignments, reset the cluster. replace also deploys the role-delegation assignment below.')
@allowed([
  'plan'
  'replace'
])
param replaceDeleted string = 'plan'

@description('REMEDIATOR_ASSIGNABLE_ROLE_IDS: role definition GUIDs a replacement may be given, and the only ones the role-delegation condition lets the remediator assign. Defaults: Network Contributor, AcrPull, Private DNS Zone Contributor (what an AKS service principal typically holds on a subnet, a registry, a private zone). With migrate=execute, Managed Identity Operator is added (assignableRoles below).')
param assignableRoleIds array = [
  '4d97b98b-1d4f-4787-a291-c67834d212e7'
  '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  'b12aa53e-6015-4669-85d0-8515ebb3ae7f'
]

// The move to managed identity (remediation/run/migration.py, remediation/decide/migration_gate.py).
@description('REMEDIATOR_MIGRATE: off: clusters are only planned for the move to managed identity; execute: clusters tagged with migrateTag are moved inside their maintenance window. execute also deploys the migration roles, the role-delegation assignment and its alert below (infra/README.md, "Execute mode").')
@allowed([
  'off'
  'execute'
])
param migrate string = 'off'

@description('REMEDIATOR_MIGRATE_TAG: key=value tag that opts a cluster in to the move to managed identity (with migrate=execute).')
param migrateTag string = 'aks-sp-remediator=migrate'

@description('REMEDIATOR_MIGRATION_IDENTITY_GROUP: name of an existing resource group, in this and every extra subscription, that holds the user-assigned identities the move creates; required with migrate=execute (the migration identity role is assigned on it alone).')
param migrationIdentityGroup string = ''

// Proactive rotation (remediation/intake/health.py, remediation/decide/maintenance.py).
@description('REMEDIATOR_EXPIRY_WARNING_DAYS: a secret ending within this many days is reported as expiring, and rotated ahead of expiry on opted-in clusters.')
@minValue(0)
param expiryWarningDays int = 30

@description('REMEDIATOR_ROTATE_TAG: key=value tag that opts a cluster in to rotation ahead of expiry, inside its maintenance window.')
param rotateTag string = 'aks-sp-remediator=rotate'

@description('REMEDIATOR_ROTATION_WINDOW: window for rotating clusters that have no AKS planned maintenance configuration, such as \'Sat,Sun 01:00-05:00\' or \'Mon-Fri 22:00-02:00 +01:00\'; empty: such clusters are never rotated ahead.')
param rotationWindow string = ''

@description('REMEDIATOR_LEASE_SECONDS: how long one invocation holds a remediation (a dead worker\'s is taken over after it); longer than host.json\'s functionTimeout (600 s), so a slow holder is stopped by the host before another worker takes over.')
@minValue(660)
param leaseSeconds int = 660

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
// On the function app only (remediation/model.py REMEDIATOR_TAG).
var remediatorTag = 'aks-sp-remediator-environment'
// The subscriptions the remediator acts on: this one and extraSubscriptionIds.
var managedSubscriptionIds = concat([
  subscription().subscriptionId
], extraSubscriptionIds)
var subscriptionIds = join(managedSubscriptionIds, ',')
var rgName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName

// environment() has no Microsoft Graph endpoint (its `graph` is the retired Azure AD Graph),
// so the national clouds' Graph hosts are listed here; the only cloud hosts in infra/.
var graphEndpoints = {
  AzureCloud: 'https://graph.microsoft.com'
  AzureUSGovernment: 'https://graph.microsoft.us'
  AzureChinaCloud: 'https://microsoftgraph.chinacloudapi.cn'
}
// An unknown cloud fails here (no such key) unless graphEndpoint is given.
var effectiveGraphEndpoint = empty(graphEndpoint) ? graphEndpoints[environment().name] : graphEndpoint

// The Microsoft Graph Bicep extension is supported in the public cloud only (Microsoft Learn,
// Microsoft Graph Bicep "Known limitations": "only supported in the Azure public cloud"), so
// elsewhere both Graph modules are off unless asked for; `python -m remediation preflight`
// refuses an explicit 'true' there and prints the manual steps (infra/README.md).
var graphExtensionSupported = environment().name == 'AzureCloud'
var grantGraph = empty(grantGraphPermission) ? graphExtensionSupported : bool(grantGraphPermission)
var createApi = empty(createApiApplication) ? graphExtensionSupported : bool(createApiApplication)

// The provision azure.yaml's postdeploy hook starts, after the code is deployed (and minutes
// after the identity was created). The Event Grid subscription needs the function to exist,
// and the Graph app-role grant to the identity waits for it too: an appRoleAssignedTo for a
// managed identity created in the same deployment can fail on Entra ID replication
// (microsoftgraph/msgraph-bicep-types#193, "Not a valid reference update").
var lateStage = deployEventSubscription

// 'kv-rem-' + 13 characters: within Key Vault's 24.
var keyVaultName = 'kv-rem-${empty(keyVaultNameSalt) ? resourceToken : uniqueString(resourceToken, keyVaultNameSalt)}'

// One system topic per source per subscription: a second environment in this subscription
// attaches its own event subscription to the first one's topic. azd stores the outputs
// EVENT_GRID_SYSTEM_TOPIC_NAME/_RESOURCE_GROUP, which main.bicepparam reads back: naming
// this environment's own group therefore still means "own the topic".
var reuseSystemTopic = !empty(existingSystemTopicResourceGroup) && toLower(existingSystemTopicResourceGroup) != toLower(rgName)
var systemTopicName = reuseSystemTopic ? existingSystemTopicName : 'evgt-arm-${resourceToken}'
var systemTopicResourceGroup = reuseSystemTopic ? existingSystemTopicResourceGroup : rgName
var systemTopicId = resourceId(subscription().subscriptionId, systemTopicResourceGroup, 'Microsoft.EventGrid/systemTopics', systemTopicName)
// Unique per environment: several environments' subscriptions may sit on one topic.
var eventSubscriptionName = 'aks-cluster-failures-${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
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

// Where the remediator publishes its outcome events (CloudEvents) for other teams to
// subscribe to; its endpoint becomes REMEDIATOR_OUTCOME_TOPIC_ENDPOINT.
module outcomeTopic 'modules/outcome-topic.bicep' = {
  name: 'outcome-topic'
  scope: rg
  params: {
    name: 'evgt-outcomes-${resourceToken}'
    location: location
    tags: tags
    identityPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
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

// Subscription-scope deployments: their names carry the resource token, because a
// subscription-scope deployment name is shared by every environment in the subscription
// (and one name cannot be reused from another region: InvalidDeploymentLocation).
module keyVaultRole 'modules/keyvault-secrets-role.bicep' = {
  name: 'kv-role-${resourceToken}'
  params: {
    environmentName: environmentName
    resourceToken: resourceToken
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    identityPrincipalId: identity.outputs.principalId
    secretsRoleDefinitionId: keyVaultRole.outputs.roleDefinitionId
    workspaceId: monitoring.outputs.workspaceId
    publicNetworkAccess: keyVaultPublicNetworkAccess
  }
}

// The API's application in two stages of one deployment: Graph refuses a write whose
// api.preAuthorizedApplications names a scope the stored application does not have yet, so a
// scope and its pre-authorization cannot be created in one request
// (microsoftgraph/microsoft-graph-docs-contrib#1395: "Property
// api.preAuthorizedApplications.delegatedPermissionIds has a Permission Id that cannot be found
// in the AppPermissions sets"). Stage one writes the application with its scope; stage two, the
// same application once the scope exists, with Azure CLI pre-authorized for it. Both run on
// every deployment, so a re-deployment converges too.
var apiUniqueName = 'aks-sp-remediator-api-${resourceToken}'
var apiApplication = {
  uniqueName: apiUniqueName
  displayName: 'AKS SP remediator API (${environmentName}, ${resourceToken})'
  identifierUri: 'api://${tenant().tenantId}/aks-sp-remediator-${resourceToken}'
}

module apiApp 'modules/api-app.bicep' = if (createApi) {
  name: 'api-app'
  scope: rg
  params: {
    uniqueName: apiApplication.uniqueName
    displayName: apiApplication.displayName
    identifierUri: apiApplication.identifierUri
    preAuthorizedClientAppIds: []
  }
}

module apiAppPreAuthorization 'modules/api-app.bicep' = if (createApi) {
  name: 'api-app-preauthorization'
  scope: rg
  dependsOn: [
    apiApp
  ]
  params: {
    uniqueName: apiApplication.uniqueName
    displayName: apiApplication.displayName
    identifierUri: apiApplication.identifierUri
    preAuthorizedClientAppIds: [
      azureCliAppId
    ]
  }
}

module apiAccess 'modules/api-access.bicep' = if (createApi) {
  name: 'api-access'
  scope: rg
  params: {
    apiAppId: apiAppPreAuthorization!.outputs.clientId
    writeRoleId: apiAppPreAuthorization!.outputs.writeRoleId
    readRoleId: apiAppPreAuthorization!.outputs.readRoleId
    writerPrincipalIds: union(apiWriterPrincipalIds, [])
    readerPrincipalIds: union(apiReaderPrincipalIds, [])
  }
}

// Azure CLI's public client application (the same id in every tenant): operators get API tokens
// with `az account get-access-token --resource <app id uri>` without a consent prompt.
var azureCliAppId = '04b07795-8ddb-461a-bbee-02f9e1bf7b46'
var apiClientId = createApi ? apiAppPreAuthorization!.outputs.clientId : existingApiClientId
var apiAppIdUri = createApi ? apiAppPreAuthorization!.outputs.appIdUri : (empty(existingApiAppIdUri) ? 'api://${existingApiClientId}' : existingApiAppIdUri)

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: 'func-remediator-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    // The tag marks a deployed remediator: `python -m remediation preflight` finds the others
    // acting on a subscription by it (through Resource Graph) and reads their scope from
    // their app settings.
    tags: union(tags, {
      '${remediatorTag}': environmentName
    })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    tenantId: tenant().tenantId
    keyVaultUrl: keyVault.outputs.uri
    armEndpoint: armEndpoint
    graphEndpoint: effectiveGraphEndpoint
    authorityHost: authorityHost
    apiClientId: apiClientId
    apiAppIdUri: apiAppIdUri
    subscriptionIds: subscriptionIds
    sweepSchedule: sweepSchedule
    healthSchedule: healthSchedule
    outcomeTopicEndpoint: outcomeTopic.outputs.endpoint
    secretLifetimeDays: secretLifetimeDays
    resetPollSeconds: resetPollSeconds
    retryDelaySeconds: retryDelaySeconds
    lookupDelaySeconds: lookupDelaySeconds
    lookupTimeoutMinutes: lookupTimeoutMinutes
    resetTimeoutMinutes: resetTimeoutMinutes
    sdkLogLevel: sdkLogLevel
    guardrails: {
      denySubscriptionIds: denySubscriptionIds
      allowResourceGroups: allowResourceGroups
      denyResourceGroups: denyResourceGroups
      optOutTag: optOutTag
      mode: mode
      maxResetsPerHour: maxResetsPerHour
      breakerFailures: breakerFailures
      breakerWindowHours: breakerWindowHours
      retireAfterHours: retireAfterHours
      retireForeignPasswords: retireForeignPasswords
      propagationSuccesses: propagationSuccesses
      propagationIntervalSeconds: propagationIntervalSeconds
      propagationTimeoutMinutes: propagationTimeoutMinutes
      replaceDeleted: replaceDeleted
      assignableRoleIds: join(assignableRoles, ',')
      expiryWarningDays: expiryWarningDays
      rotateTag: rotateTag
      rotationWindow: rotationWindow
      migrate: migrate
      migrateTag: migrateTag
      migrationIdentityGroup: migrationIdentityGroup
    }
    identityPrincipalId: identity.outputs.principalId
    leaseSeconds: leaseSeconds
  }
}

// This environment's own system topic: only when it does not attach to another's.
module eventGrid 'modules/eventgrid.bicep' = if (!reuseSystemTopic) {
  name: 'eventgrid'
  scope: rg
  params: {
    name: systemTopicName
    tags: tags
    identityId: identity.outputs.id
    workspaceId: monitoring.outputs.workspaceId
  }
}

// A shared topic dead-letters with its own identity: read it, and let it write to this
// environment's dead-letter container. (Reads only; nothing is created in that group.)
module sharedTopicIdentity 'modules/eventgrid-topic-identity.bicep' = if (reuseSystemTopic) {
  name: 'evgt-identity-${resourceToken}'
  scope: resourceGroup(systemTopicResourceGroup)
  params: {
    topicName: systemTopicName
  }
}

module sharedTopicDeadLetter 'modules/deadletter-writer.bicep' = if (reuseSystemTopic) {
  name: 'deadletter-writer'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    containerName: storage.outputs.deadLetterContainerName
    principalId: sharedTopicIdentity!.outputs.principalId
  }
}

// In the topic's resource group, which may be another environment's: the deployment name
// carries the resource token so environments do not overwrite each other's.
module eventSubscription 'modules/eventgrid-subscription.bicep' = if (deployEventSubscription) {
  name: 'evgs-${resourceToken}'
  scope: resourceGroup(systemTopicResourceGroup)
  dependsOn: [
    eventGrid
    sharedTopicDeadLetter
  ]
  params: {
    topicName: systemTopicName
    name: eventSubscriptionName
    functionAppId: functionApp.outputs.id
    deadLetterIdentityId: reuseSystemTopic ? sharedTopicIdentity!.outputs.userAssignedIdentityId : identity.outputs.id
    deadLetterStorageAccountId: storage.outputs.id
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  // The metric alert's scope is the topic: it must exist first.
  dependsOn: [
    eventGrid
  ]
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    workspaceName: monitoring.outputs.workspaceName
    dailyCapSet: logDailyQuotaGb > 0
    systemTopicId: systemTopicId
    eventSubscriptionName: eventSubscriptionName
    alertEmail: alertEmail
    alertWebhookUrl: alertWebhookUrl
  }
}

// Fleet credential health, remediations, repair times and refused decisions, from the
// workspace's AppMetrics and AppTraces: in the portal, the workspace's Workbooks.
module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    workspaceId: monitoring.outputs.workspaceId
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles-${resourceToken}'
  params: {
    identityPrincipalId: identity.outputs.principalId
    environmentName: environmentName
    resourceToken: resourceToken
    extraSubscriptionIds: extraSubscriptionIds
  }
}

module extraSubscriptionRoles 'modules/subscription-role-assignment.bicep' = [for id in extraSubscriptionIds: {
  name: 'role-${resourceToken}-${uniqueString(id)}'
  scope: subscription(id)
  params: {
    identityPrincipalId: identity.outputs.principalId
    roleDefinitionId: roles.outputs.roleDefinitionId
  }
}]

// A migration plan reads the service principal's role assignments wherever its cluster's network
// lies; in subscriptions it does not act on, the remediator may read those and nothing else.
module roleAssignmentReader 'modules/role-assignment-reader-role.bicep' = if (!empty(roleAssignmentReadSubscriptionIds)) {
  name: 'role-reader-${resourceToken}'
  params: {
    environmentName: environmentName
    resourceToken: resourceToken
    subscriptionIds: roleAssignmentReadSubscriptionIds
  }
}

module roleAssignmentReads 'modules/subscription-role-assignment.bicep' = [for id in roleAssignmentReadSubscriptionIds: {
  name: 'role-read-${resourceToken}-${uniqueString(id)}'
  scope: subscription(id)
  params: {
    identityPrincipalId: identity.outputs.principalId
    roleDefinitionId: roleAssignmentReader!.outputs.roleDefinitionId
    assignmentDescription: 'AKS service-principal remediator: read role assignments, for the plans that move clusters to managed identity.'
  }
}]

// Replacing a deleted application's service principal, and moving a cluster to managed identity,
// write role assignments: a custom role with exactly roleAssignments/write, under a condition that
// allows only the listed roles, only to service principals, never to the remediator itself.
// Deployed only with replaceDeleted=replace or migrate=execute.
// The role GUIDs are trimmed and emptied entries dropped: a trailing comma in
// REMEDIATOR_ASSIGNABLE_ROLE_IDS must not reach the condition (the preflight also checks each
// is the GUID of an existing role definition). A move grants its control-plane identity Managed
// Identity Operator on its kubelet identity, so execute mode adds that role to the list, for the
// condition and for the app alike.
var replaces = replaceDeleted == 'replace'
var migrates = migrate == 'execute'
var writesRoleAssignments = replaces || migrates
var managedIdentityOperator = 'f1a07417-d97a-45cb-824c-7a7467783830'
var trimmedRoleIds = [for id in assignableRoleIds: toLower(trim(id))]
var givenRoles = filter(trimmedRoleIds, id => !empty(id))
var assignableRoles = union(givenRoles, migrates ? [managedIdentityOperator] : [])

module roleAssignmentWriter 'modules/role-assignment-writer-role.bicep' = if (writesRoleAssignments) {
  name: 'role-writer-${resourceToken}'
  params: {
    environmentName: environmentName
    resourceToken: resourceToken
    extraSubscriptionIds: extraSubscriptionIds
  }
}

module roleDelegation 'modules/role-delegation.bicep' = if (writesRoleAssignments) {
  name: 'role-delegation-${resourceToken}'
  params: {
    identityPrincipalId: identity.outputs.principalId
    roleDefinitionId: roleAssignmentWriter!.outputs.roleDefinitionId
    assignableRoleIds: assignableRoles
  }
}

module extraSubscriptionDelegations 'modules/role-delegation.bicep' = [for id in (writesRoleAssignments ? extraSubscriptionIds : []): {
  name: 'role-delegation-${resourceToken}-${uniqueString(id)}'
  scope: subscription(id)
  params: {
    identityPrincipalId: identity.outputs.principalId
    roleDefinitionId: roleAssignmentWriter!.outputs.roleDefinitionId
    assignableRoleIds: assignableRoles
  }
}]

// Every role assignment the identity writes raises an alert: the one write it may make to
// Azure RBAC deserves a person's look even when it is right.
module roleAssignmentAlert 'modules/role-assignment-alert.bicep' = if (writesRoleAssignments) {
  name: 'role-assignment-alert'
  scope: rg
  params: {
    resourceToken: resourceToken
    tags: tags
    identityPrincipalId: identity.outputs.principalId
    identityClientId: identity.outputs.clientId
    actionGroupId: alerts.outputs.actionGroupId
  }
}

// Execute mode moves opted-in clusters to managed identity (remediation/run/migration.py): two
// roles, each assigned only where it is needed, and none of it in a default deployment. The
// cluster role (the identity update, the node-image upgrades) on every managed subscription; the
// identity role (create, read and assign user-assigned identities) on the identity group of
// every managed subscription alone. The group must exist: ResourceGroupNotFound otherwise.
module migrationRoles 'modules/migration-roles.bicep' = if (migrates) {
  name: 'migration-roles-${resourceToken}'
  params: {
    environmentName: environmentName
    resourceToken: resourceToken
    extraSubscriptionIds: extraSubscriptionIds
  }
}

module migrationClusterAssignments 'modules/subscription-role-assignment.bicep' = [for id in (migrates ? managedSubscriptionIds : []): {
  name: 'role-migrate-${resourceToken}-${uniqueString(id)}'
  scope: subscription(id)
  params: {
    identityPrincipalId: identity.outputs.principalId
    roleDefinitionId: migrationRoles!.outputs.clusterRoleDefinitionId
    assignmentDescription: 'AKS service-principal remediator: move opted-in clusters to managed identity (cluster write, node-image upgrade).'
  }
}]

// A deployment into the identity group: azd down would delete that group with the deployment's
// other groups (infra/README.md, "Execute mode"), so lock it or tear down by hand.
module migrationIdentityAssignments 'modules/resource-group-role-assignment.bicep' = [for id in (migrates ? managedSubscriptionIds : []): {
  name: 'role-identities-${resourceToken}-${uniqueString(id)}'
  scope: resourceGroup(id, migrationIdentityGroup)
  params: {
    identityPrincipalId: identity.outputs.principalId
    roleDefinitionId: migrationRoles!.outputs.identityRoleDefinitionId
    assignmentDescription: 'AKS service-principal remediator: create, read and assign the user-assigned identities of clusters it moves to managed identity.'
  }
}]

// In the late stage only (see lateStage): the identity is minutes old by then.
module graph 'modules/graph.bicep' = if (grantGraph && lateStage) {
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
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output REMEDIATOR_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output REMEDIATOR_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output REMEDIATOR_KEY_VAULT_URL string = keyVault.outputs.uri
output REMEDIATOR_API_CLIENT_ID string = apiClientId
output REMEDIATOR_API_APP_ID_URI string = apiAppIdUri
// The topic this environment receives events from (its own or a shared one); read back by
// main.bicepparam, and what a second environment in this subscription copies.
output EVENT_GRID_SYSTEM_TOPIC_NAME string = systemTopicName
output EVENT_GRID_SYSTEM_TOPIC_RESOURCE_GROUP string = systemTopicResourceGroup
output EVENT_GRID_SUBSCRIPTION_NAME string = eventSubscriptionName
// The outcome topic: other teams add event subscriptions to it (infra/README.md, Outcome events).
output REMEDIATOR_OUTCOME_TOPIC_ID string = outcomeTopic.outputs.id
output REMEDIATOR_OUTCOME_TOPIC_ENDPOINT string = outcomeTopic.outputs.endpoint
output CUSTOM_ROLE_NAME string = roles.outputs.roleName
output KEY_VAULT_ROLE_NAME string = keyVaultRole.outputs.roleName
// The workbook's resource id (README, "Deploying to Azure", says where the portal shows it).
output REMEDIATOR_WORKBOOK_ID string = workbook.outputs.id
