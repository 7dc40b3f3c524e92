// The remediator's Function App on the Flex Consumption plan (Linux, Python 3.13), running
// as the user-assigned identity. Its app settings are the `deployed` settings of
// remediation/app/settings.py plus identity-based host storage and Entra-authenticated
// Application Insights; tests/test_infra.py keeps the two lists in step.
//
// Flex Consumption rejects or ignores many classic site settings: the runtime, scale and
// deployment source live in functionAppConfig, and a deployment that sets, for example,
// siteConfig.ftpsState fails with ARM error 51021. tests/test_infra.py holds the list (with
// sources) and fails if any of them appears here. The official Flex samples set nothing in
// siteConfig but appSettings.

@description('Name of the function app (globally unique host name).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Region of the plan and the app (must offer Flex Consumption).')
param location string

@description('Tags for the plan and the app; the app also gets azd-service-name.')
param tags object = {}

@description('azd service name in azure.yaml.')
param serviceName string = 'remediator'

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Storage account for AzureWebJobsStorage, the remediation table and the queues.')
param storageAccountName string

// The account's endpoints come from its primaryEndpoints, so they follow the cloud the
// template is deployed to (core.windows.net, core.usgovcloudapi.net, core.chinacloudapi.cn).
@description('Blob endpoint of that account, ending in a slash.')
param storageBlobEndpoint string

@description('Queue endpoint of that account, ending in a slash.')
param storageQueueEndpoint string

@description('Table endpoint of that account, ending in a slash.')
param storageTableEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string (holds no secret: local auth is disabled).')
param applicationInsightsConnectionString string

@description('Upper bound of instances each function group may scale out to (Flex Consumption: 40 to 1,000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Memory of each instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Values of the remediator's own settings (names and defaults: remediation/app/settings.py).
param tenantId string
param keyVaultUrl string
param armEndpoint string
param graphEndpoint string
param authorityHost string
param apiClientId string
param apiAppIdUri string
param subscriptionIds string
param sweepSchedule string
param healthSchedule string
@description('Endpoint of the Event Grid custom topic the app publishes outcome events to (outcome-topic.bicep).')
param outcomeTopicEndpoint string
param secretLifetimeDays int
param resetPollSeconds int
param retryDelaySeconds int
param lookupDelaySeconds int
param lookupTimeoutMinutes int
param sdkLogLevel string
@description('The guardrails and rotation limits, one field per REMEDIATOR_ setting (main.bicep documents each).')
param guardrails object
param leaseSeconds int
@description('Object id of the remediator identity\'s service principal: owner of what a replacement creates.')
param identityPrincipalId string
param resetTimeoutMinutes int

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone-redundant Flex plans exist only in some regions, so the template leaves it off to deploy in every Flex region; a remediation survives losing an instance because each step's state is in the queue and the table.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Callers are Event Grid (system key) and operators with a function key; neither presents a client certificate, so mTLS cannot be required.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per function; a minimum instance count (always ready) would bill idle compute around the clock for an event-driven remediator.
  // checkov:skip=CKV_AZURE_213:The app has no health route; Flex Consumption scales from zero and replaces instances itself, and platform pings would only add billed executions.
  // checkov:skip=CKV_AZURE_222:Event Grid delivers to the public endpoint; without VNet integration there is no private path. Every route needs a function or system key.
  // checkov:skip=CKV_AZURE_78:Flex Consumption rejects siteConfig.ftpsState (ARM error 51021); FTP is off through the ftp basicPublishingCredentialsPolicies resource below instead.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      // Kept: these three are front-end settings of the site, not worker or plan settings.
      // They are in neither Microsoft Learn's Flex deprecation table nor the FC1 omission list
      // of the AVM web-site module (Azure/terraform-azurerm-avm-res-web-site#345), which keeps
      // setting them on Flex apps; checkov's TLS and HTTP/2 checks stay real checks. Gone:
      // ftpsState (error 51021 on Flex; FTP is off through basicPublishingCredentialsPolicies)
      // and remoteDebuggingEnabled (remote debugging does not exist on Linux, so Flex ignores it).
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        // Host storage through the identity: no connection string, no account key. The
        // service URIs make the host and the app's own clients use this cloud's endpoints;
        // accountName alone would mean the public cloud's.
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storageAccountName
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storageBlobEndpoint
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: storageQueueEndpoint
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: storageTableEndpoint
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // DefaultAzureCredential / ManagedIdentityCredential pick the user-assigned identity.
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'AZURE_TENANT_ID'
          value: tenantId
        }
        // The host and the app's own OpenTelemetry metrics and traces both go here, with the
        // identity (the authentication string below): local auth is off on the component.
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        {
          name: 'REMEDIATOR_KEY_VAULT_URL'
          value: keyVaultUrl
        }
        {
          name: 'REMEDIATOR_ARM_ENDPOINT'
          value: armEndpoint
        }
        {
          name: 'REMEDIATOR_GRAPH_ENDPOINT'
          value: graphEndpoint
        }
        {
          name: 'REMEDIATOR_AUTHORITY_HOST'
          value: authorityHost
        }
        // The HTTP API accepts only Entra tokens issued for this application (v2 tokens:
        // aud is the client id, iss is <authority host>/<tenant>/v2.0).
        {
          name: 'REMEDIATOR_API_CLIENT_ID'
          value: apiClientId
        }
        {
          name: 'REMEDIATOR_API_APP_ID_URI'
          value: apiAppIdUri
        }
        {
          name: 'REMEDIATOR_SUBSCRIPTION_IDS'
          value: subscriptionIds
        }
        {
          name: 'REMEDIATOR_SWEEP_SCHEDULE'
          value: sweepSchedule
        }
        {
          name: 'REMEDIATOR_HEALTH_SCHEDULE'
          value: healthSchedule
        }
        // Outcome events (CloudEvents) go to this topic, with the identity's Entra token.
        {
          name: 'REMEDIATOR_OUTCOME_TOPIC_ENDPOINT'
          value: outcomeTopicEndpoint
        }
        {
          name: 'REMEDIATOR_SECRET_LIFETIME_DAYS'
          value: string(secretLifetimeDays)
        }
        {
          name: 'REMEDIATOR_RESET_POLL_SECONDS'
          value: string(resetPollSeconds)
        }
        {
          name: 'REMEDIATOR_RETRY_DELAY_SECONDS'
          value: string(retryDelaySeconds)
        }
        {
          name: 'REMEDIATOR_LOOKUP_DELAY_SECONDS'
          value: string(lookupDelaySeconds)
        }
        {
          name: 'REMEDIATOR_LOOKUP_TIMEOUT_MINUTES'
          value: string(lookupTimeoutMinutes)
        }
        {
          name: 'REMEDIATOR_RESET_TIMEOUT_MINUTES'
          value: string(resetTimeoutMinutes)
        }
        {
          name: 'REMEDIATOR_SDK_LOG_LEVEL'
          value: sdkLogLevel
        }
        {
          name: 'REMEDIATOR_LEASE_SECONDS'
          value: string(leaseSeconds)
        }
        {
          name: 'REMEDIATOR_DENY_SUBSCRIPTION_IDS'
          value: guardrails.denySubscriptionIds
        }
        {
          name: 'REMEDIATOR_ALLOW_RESOURCE_GROUPS'
          value: guardrails.allowResourceGroups
        }
        {
          name: 'REMEDIATOR_DENY_RESOURCE_GROUPS'
          value: guardrails.denyResourceGroups
        }
        {
          name: 'REMEDIATOR_OPT_OUT_TAG'
          value: guardrails.optOutTag
        }
        {
          name: 'REMEDIATOR_MODE'
          value: guardrails.mode
        }
        {
          name: 'REMEDIATOR_MAX_RESETS_PER_HOUR'
          value: string(guardrails.maxResetsPerHour)
        }
        {
          name: 'REMEDIATOR_BREAKER_FAILURES'
          value: string(guardrails.breakerFailures)
        }
        {
          name: 'REMEDIATOR_BREAKER_WINDOW_HOURS'
          value: string(guardrails.breakerWindowHours)
        }
        {
          name: 'REMEDIATOR_RETIRE_AFTER_HOURS'
          value: string(guardrails.retireAfterHours)
        }
        {
          name: 'REMEDIATOR_RETIRE_FOREIGN_PASSWORDS'
          value: string(guardrails.retireForeignPasswords)
        }
        {
          name: 'REMEDIATOR_REPLACE_DELETED'
          value: guardrails.replaceDeleted
        }
        {
          name: 'REMEDIATOR_ASSIGNABLE_ROLE_IDS'
          value: guardrails.assignableRoleIds
        }
        {
          name: 'REMEDIATOR_PRINCIPAL_ID'
          value: identityPrincipalId
        }
        {
          name: 'REMEDIATOR_PROPAGATION_SUCCESSES'
          value: string(guardrails.propagationSuccesses)
        }
        {
          name: 'REMEDIATOR_PROPAGATION_INTERVAL_SECONDS'
          value: string(guardrails.propagationIntervalSeconds)
        }
        {
          name: 'REMEDIATOR_PROPAGATION_TIMEOUT_MINUTES'
          value: string(guardrails.propagationTimeoutMinutes)
        }
        {
          name: 'REMEDIATOR_EXPIRY_WARNING_DAYS'
          value: string(guardrails.expiryWarningDays)
        }
        {
          name: 'REMEDIATOR_ROTATE_TAG'
          value: guardrails.rotateTag
        }
        {
          name: 'REMEDIATOR_ROTATION_WINDOW'
          value: guardrails.rotationWindow
        }
        {
          name: 'REMEDIATOR_MIGRATE'
          value: guardrails.migrate
        }
        {
          name: 'REMEDIATOR_MIGRATE_TAG'
          value: guardrails.migrateTag
        }
        {
          name: 'REMEDIATOR_MIGRATION_IDENTITY_GROUP'
          value: guardrails.migrationIdentityGroup
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
}

// Deployments (azd, func, az functionapp deployment) authenticate with Entra ID; the
// shared publishing user/password stays off for both FTP and SCM.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
