// Event Grid custom topic for the remediator's outcome events: CloudEvents 1.0 whose types
// start with `Remediator.` (a remediation succeeded or failed, a cluster's secret expired).
// Other teams subscribe to it; the remediator only publishes.
//
// Entra ID only: local (access key and SAS) auth is off, so the one publisher is the
// principal given EventGrid Data Sender here, on this topic alone. The app reads the
// endpoint from REMEDIATOR_OUTCOME_TOPIC_ENDPOINT.

@description('Name of the custom topic (3-50 letters, digits and hyphens, unique in the region).')
@minLength(3)
@maxLength(50)
param name string

@description('Region of the topic.')
param location string

@description('Tags for the topic.')
param tags object = {}

@description('Principal id of the remediator identity: the only publisher.')
param identityPrincipalId string

@description('Log Analytics workspace that receives the topic\'s PublishFailures and DeliveryFailures logs.')
param workspaceId string

// EventGrid Data Sender (built-in): the data action Microsoft.EventGrid/events/send/action
// and reads of the topic; it cannot receive events or change subscriptions.
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_193:The function app publishes over the public endpoint (Flex Consumption without VNet integration, like storage and Key Vault here); local auth is off, so every publish needs an Entra token of the one principal holding EventGrid Data Sender on this topic.
  name: name
  location: location
  tags: tags
  // The topic's own identity, for subscribers only: an event subscription may deliver or
  // dead-letter with it (deliveryWithResourceIdentity) once its owner grants this principal
  // access to the destination. It holds no role from this deployment.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    minimumTlsVersionAllowed: '1.2'
  }
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, identityPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    description: 'The remediator publishes its outcome events (CloudEvents) here with Entra ID; local auth is off.'
  }
}

// A publish the topic refused (the app logs its side too), and deliveries to another team's
// endpoint that failed: who to call is in the event subscription's name.
resource failures 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'failures-to-log-analytics'
  scope: topic
  properties: {
    workspaceId: workspaceId
    // Resource-specific tables (AegDeliveryFailureLogs, AZKVAuditLogs, ...), which the README's
    // queries read; without it the logs land in AzureDiagnostics (Microsoft Learn, "Diagnostic
    // settings in Azure Monitor", resource-specific mode).
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'PublishFailures'
        enabled: true
      }
      {
        category: 'DeliveryFailures'
        enabled: true
      }
    ]
  }
}

output id string = topic.id
output name string = topic.name
output endpoint string = topic.properties.endpoint
output principalId string = topic.identity.principalId
