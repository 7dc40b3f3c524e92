// Event Grid system topic for the deployment subscription (Azure Resource Manager events)
// and, once the function code is deployed, its subscription that pushes failed writes and
// actions on managed clusters to the `on_resource_failure` Event Grid trigger.
//
// The event subscription needs the function to exist: Event Grid looks the function up
// (and fetches its system key) when the subscription is created. So it is behind
// deployEventSubscription: provision, deploy the code, then provision again with it true
// (azure.yaml's postdeploy hook does this).
//
// A subscription holds at most one system topic per source: if one already exists for this
// subscription, delete it or add the event subscription to it by hand (see infra/README.md).

@description('Name of the system topic.')
param name string

@description('Tags for the system topic.')
param tags object = {}

@description('Resource id of the user-assigned identity the topic dead-letters with.')
param identityId string

@description('Resource id of the function app.')
param functionAppId string

@description('Name of the Event Grid triggered function (the Python function name in function_app.py).')
param functionName string = 'on_resource_failure'

@description('Create the event subscription (needs the function code deployed first).')
param deployEventSubscription bool

@description('Resource id of the storage account holding the dead-letter container.')
param deadLetterStorageAccountId string

@description('Blob container for undeliverable events.')
param deadLetterContainerName string

@description('Delivery attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

var eventSubscriptionName = 'aks-cluster-failures'

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

resource clusterFailures 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployEventSubscription) {
  parent: systemTopic
  name: eventSubscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteFailure'
        'Microsoft.Resources.ResourceActionFailure'
      ]
      // Same test as remediation/events.py (case-insensitive prefix): writes and actions
      // on managed clusters and their children (agent pools, resetServicePrincipalProfile).
      advancedFilters: [
        {
          operatorType: 'StringBeginsWith'
          key: 'data.operationName'
          values: [
            'Microsoft.ContainerService/managedClusters'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: identityId
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output name string = systemTopic.name
output eventSubscriptionName string = deployEventSubscription ? eventSubscriptionName : ''
