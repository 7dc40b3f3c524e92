// The remediator HTTP API's Entra application, through the Microsoft Graph Bicep extension
// (alias in infra/bicepconfig.json). Callers present a v2 access token for it: aud is the
// application's client id, iss is <authority host>/<tenant>/v2.0, and the `roles` claim
// must hold Remediations.Write (start remediations) or Remediations.Read (read them).
// The function app validates exactly that (REMEDIATOR_API_CLIENT_ID).
//
// main.bicep deploys this module twice in one deployment, stage by stage: first with no
// pre-authorized clients, then (once the scope exists) with Azure CLI pre-authorized for the
// scope. Graph refuses a pre-authorization of a scope that is created in the same request
// (microsoftgraph/microsoft-graph-docs-contrib#1395); sandbox/graph.py refuses it the same
// way, and tests/test_graph_deployment.py deploys both stages against it. The service
// principal and the app role assignments are api-access.bicep.
//
// Operators get a token with Azure CLI, which is pre-authorized for the delegated scope so
// that no consent prompt (AADSTS65001) stands in the way:
//   az account get-access-token --resource <app id uri> --query accessToken -o tsv
// Daemons use the client-credentials flow with an app role assigned to their principal.
extension microsoftGraphV1

@description('Immutable unique name of the application (a deploy-time constant).')
param uniqueName string

@description('Display name of the application.')
param displayName string

@description('Application ID URI. The application cannot name its own appId (a cycle), so api://<tenant id>/<unique string>.')
param identifierUri string

@description('Client applications pre-authorized for the user_impersonation scope: empty in the first stage, which creates the scope; the second stage names Azure CLI.')
param preAuthorizedClientAppIds array = []

// Stable ids: re-deploying must not re-create roles or the scope (that would orphan
// assignments and pre-authorizations).
var writeRoleId = guid(uniqueName, 'Remediations.Write')
var readRoleId = guid(uniqueName, 'Remediations.Read')
var userImpersonationId = guid(uniqueName, 'user_impersonation')

resource api 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  identifierUris: [
    identifierUri
  ]
  api: {
    // v2 tokens whichever endpoint the caller used; the app checks the v2 issuer.
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: [
      {
        id: userImpersonationId
        value: 'user_impersonation'
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Use the AKS service-principal remediator API'
        adminConsentDescription: 'Call the remediator API as the signed-in user; what the user may do still depends on the app roles assigned to them.'
        userConsentDisplayName: 'Use the AKS service-principal remediator API'
        userConsentDescription: 'Call the remediator API as you; your app roles decide what you may do.'
      }
    ]
    preAuthorizedApplications: [for clientAppId in preAuthorizedClientAppIds: {
      appId: clientAppId
      delegatedPermissionIds: [
        userImpersonationId
      ]
    }]
  }
  appRoles: [
    {
      id: writeRoleId
      value: 'Remediations.Write'
      displayName: 'Start remediations'
      description: 'Start a remediation of a cluster\'s service principal secret through the API.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
    {
      id: readRoleId
      value: 'Remediations.Read'
      displayName: 'Read remediations'
      description: 'Read remediation records and their outcome through the API.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
  ]
}

output clientId string = api.appId
output appIdUri string = identifierUri
output writeRoleId string = writeRoleId
output readRoleId string = readRoleId
output scopeId string = userImpersonationId
