// Event Grid system topic for the deployment subscription (Azure Resource Manager events),
// with its delivery failures logged to Log Analytics. The event subscription that feeds
// the function is eventgrid-subscription.bicep, deployed separately because it needs the
// function code first and may attach to a topic another environment created.
//
// A subscription holds at most one system topic per source
// (https://learn.microsoft.com/azure/event-grid/system-topics): main.bicep deploys this
// module only when the environment does not reuse an existing topic.

@description('Name of the system topic.')
param name string

@description('Tags for the system topic.')
param tags object = {}

@description('Resource id of the user-assigned identity the topic dead-letters with.')
param identityId string

@description('Log Analytics workspace that receives the topic\'s DeliveryFailures log.')
param workspaceId string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  // Subscription-level topics are global, not regional.
  location: 'global'
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

// Why a delivery to the function failed (the dead-letter blob says only that it did).
resource deliveryFailures 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'delivery-failures-to-log-analytics'
  scope: systemTopic
  properties: {
    workspaceId: workspaceId
    // Resource-specific tables (AegDeliveryFailureLogs, AZKVAuditLogs, ...), which the README's
    // queries read; without it the logs land in AzureDiagnostics (Microsoft Learn, "Diagnostic
    // settings in Azure Monitor", resource-specific mode).
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'DeliveryFailures'
        enabled: true
      }
    ]
  }
}

output id string = systemTopic.id
output name string = systemTopic.name
