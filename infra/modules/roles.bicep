// The remediator's custom ARM role at subscription scope, and its assignment to the
// identity on this subscription. No wildcards: each action is one the code calls
// (tests/test_infra.py checks the list).
targetScope = 'subscription'

@description('Principal id of the remediator identity.')
param identityPrincipalId string

@description('Environment name, for the role\'s display name.')
param environmentName string

@description('The environment\'s resource token: one role definition per deployment, so two deployments that reuse an environment name (another region, another resource group) neither share nor overwrite each other\'s assignable scopes.')
param resourceToken string

@description('Other subscriptions the identity may be assigned this role on (their ids).')
param extraSubscriptionIds array = []

var actions = [
  // get_cluster: read servicePrincipalProfile.clientId and provisioningState. It is also all
  // the health check's Azure Resource Graph query needs: Resource Graph has no action of its
  // own and returns only the clusters the caller may read.
  'Microsoft.ContainerService/managedClusters/read'
  // Proactive rotation resets a cluster only inside its planned maintenance window, and a
  // migration plan names the next one: list the cluster's AKS maintenance
  // configurations (GET .../maintenanceConfigurations).
  'Microsoft.ContainerService/managedClusters/maintenanceConfigurations/read'
  // begin_reset_service_principal_profile: POST .../resetServicePrincipalProfile.
  'Microsoft.ContainerService/managedClusters/resetServicePrincipalProfile/action'
  // begin_reset_aad_profile: a cluster on the legacy Azure AD integration whose server
  // application's secret is invalid (POST .../resetAADProfile, the same LRO protocol).
  'Microsoft.ContainerService/managedClusters/resetAADProfile/action'
  // The reset is a long-running operation: the SDK poller GETs the Azure-AsyncOperation
  // URL (.../providers/Microsoft.ContainerService/locations/{region}/operations/{id}) and
  // then the Location URL (.../locations/{region}/operationresults/{id}); ARM authorizes
  // both GETs against these read actions at subscription scope.
  'Microsoft.ContainerService/locations/operations/read'
  'Microsoft.ContainerService/locations/operationresults/read'
  // Activity Log: the entry behind a failure event, and the sweep.
  'Microsoft.Insights/eventtypes/values/read'
  // A cluster's resource group: its tags may opt every cluster in it out (REMEDIATOR_OPT_OUT_TAG).
  'Microsoft.Resources/subscriptions/resourceGroups/read'
  // A service principal's role assignments: a deleted one's, to carry them over to the
  // replacement (written by role-delegation.bicep's assignment); a cluster's, for the plan
  // that moves it to managed identity (outside the scope: role-assignment-reader-role.bicep).
  'Microsoft.Authorization/roleAssignments/read'
]

var extraScopes = [for id in extraSubscriptionIds: '/subscriptions/${id}']
var assignableScopes = concat([
  subscription().id
], extraScopes)

resource remediatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'aks-sp-remediator', resourceToken)
  properties: {
    roleName: 'AKS service-principal remediator (${environmentName}, ${resourceToken})'
    description: 'Read AKS clusters and their planned maintenance windows, reset a cluster service principal secret and follow that operation, read the Activity Log.'
    type: 'CustomRole'
    permissions: [
      {
        actions: actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource remediatorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, identityPrincipalId, remediatorRole.id)
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: remediatorRole.id
    description: 'AKS service-principal remediator: read clusters, reset their service principal, read the Activity Log.'
  }
}

output roleDefinitionId string = remediatorRole.id
output roleName string = remediatorRole.properties.roleName
