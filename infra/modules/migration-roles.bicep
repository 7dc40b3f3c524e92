// Execute mode's roles (REMEDIATOR_MIGRATE=execute; main.bicep deploys this module only then):
// what moving a cluster from a service principal to managed identity needs beyond the remediator's
// own role, split by where it holds.
// - The cluster role, assigned on each managed subscription: the identity update (`az aks update
//   --enable-managed-identity` is a cluster write) and the node-image upgrade that follows it.
// - The identity role, assigned only on the identity resource group (REMEDIATOR_MIGRATION_IDENTITY_GROUP)
//   of each managed subscription: create and read the user-assigned identities, and name them in the
//   cluster write (without assign/action ARM answers 403 LinkedAuthorizationFailed).
// The role assignments a move makes go through the role assignment writer and its condition
// (role-delegation.bicep). tests/test_infra.py keeps both roles at exactly these actions.
targetScope = 'subscription'

@description('Environment name, for the roles\' display names.')
param environmentName string

@description('The environment\'s resource token: one role definition per deployment.')
param resourceToken string

@description('Other subscriptions the roles may be assigned in (their ids).')
param extraSubscriptionIds array = []

// AksManagedClusters.begin_enable_managed_identity (PUT managedClusters/{name}) and
// begin_upgrade_node_image (POST .../agentPools/{pool}/upgradeNodeImageVersion).
var clusterActions = [
  'Microsoft.ContainerService/managedClusters/write'
  'Microsoft.ContainerService/managedClusters/agentPools/upgradeNodeImageVersion/action'
]

// ArmManagedIdentities.get and create_or_update; assign/action for the cluster write naming them.
var identityActions = [
  'Microsoft.ManagedIdentity/userAssignedIdentities/read'
  'Microsoft.ManagedIdentity/userAssignedIdentities/write'
  'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action'
]

var extraScopes = [for id in extraSubscriptionIds: '/subscriptions/${id}']

resource clusterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'aks-sp-remediator-migration-clusters', resourceToken)
  properties: {
    roleName: 'AKS service-principal remediator cluster migration (${environmentName}, ${resourceToken})'
    description: 'Move AKS clusters to managed identity: write a cluster (the identity update) and upgrade its node pools\' node images.'
    type: 'CustomRole'
    permissions: [
      {
        actions: clusterActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: concat([
      subscription().id
    ], extraScopes)
  }
}

resource identityRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'aks-sp-remediator-migration-identities', resourceToken)
  properties: {
    roleName: 'AKS service-principal remediator migration identities (${environmentName}, ${resourceToken})'
    description: 'Create, read and assign user-assigned managed identities; assigned on one resource group per subscription.'
    type: 'CustomRole'
    permissions: [
      {
        actions: identityActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: concat([
      subscription().id
    ], extraScopes)
  }
}

output clusterRoleDefinitionId string = clusterRole.id
output identityRoleDefinitionId string = identityRole.id
