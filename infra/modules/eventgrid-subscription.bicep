// The Event Grid subscription that pushes failed writes and actions on managed clusters to
// the `on_resource_failure` Event Grid trigger. Deployed into the system topic's resource
// group: this environment's own, or another environment's when the topic is shared (one
// system topic per source and subscription).
//
// It needs the function to exist: Event Grid looks the function up (and fetches its system
// key) when the subscription is created. main.bicep deploys this module only when
// deployEventSubscription is true, which azure.yaml's hooks set for the one provision that
// runs after the code is deployed. A provision with it false leaves an existing event
// subscription alone (ARM incremental mode does not delete what a template omits).

@description('Name of the existing system topic, in this module\'s resource group.')
param topicName string

@description('Name of the event subscription; unique per environment, since several may share one topic.')
param name string

@description('Resource id of the function app.')
param functionAppId string

@description('Name of the Event Grid triggered function (the Python function name in function_app.py).')
param functionName string = 'on_resource_failure'

@description('Resource id of the topic\'s user-assigned identity to dead-letter with; empty for the topic\'s system-assigned identity.')
param deadLetterIdentityId string

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

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: topicName
}

resource clusterFailures 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: name
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
      // Same test as remediation/intake/events.py (case-insensitive prefix): writes and actions
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
    // Event Grid dead-letters with an identity of the topic (not of this environment when
    // the topic is shared): main.bicep grants that identity write access to the container.
    deadLetterWithResourceIdentity: {
      identity: empty(deadLetterIdentityId) ? {
        type: 'SystemAssigned'
      } : {
        type: 'UserAssigned'
        userAssignedIdentity: deadLetterIdentityId
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

output name string = clusterFailures.name
