// Reads the identity of an existing system topic (one another environment created), so
// that this environment can let the topic dead-letter into its own container: Event Grid
// dead-letters with an identity assigned to the topic, and only the topic's owner can
// assign one. Deployed into the topic's resource group; it creates nothing there.
//
// A topic made by this template has one user-assigned identity. Failing that, the topic's
// system-assigned identity is used; a topic with neither cannot dead-letter with an
// identity, and the deployment fails here (give the topic an identity first).

@description('Name of the existing system topic, in this module\'s resource group.')
param topicName string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: topicName
}

// Keys of userAssignedIdentities are the identities' resource ids.
var userAssignedIds = objectKeys(systemTopic.identity.?userAssignedIdentities ?? {})

@description('Resource id of the topic\'s user-assigned identity; empty when it has only a system-assigned one.')
output userAssignedIdentityId string = empty(userAssignedIds) ? '' : userAssignedIds[0]

@description('Principal id of that identity.')
output principalId string = empty(userAssignedIds) ? systemTopic.identity.principalId : systemTopic.identity.userAssignedIdentities[userAssignedIds[0]].principalId
