// The remediator HTTP API's Entra application, through the Microsoft Graph Bicep extension
// (alias in infra/bicepconfig.json). Callers present a v2 access token for it: aud is the
// application's client id, iss is <authority host>/<tenant>/v2.0, and the `roles` claim
// must hold Remediations.Write (start remediations) or Remediations.Read (read them).
// The function app validates exactly that (REMEDIATOR_API_CLIENT_ID).
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

@description('Object ids of users, groups or service principals given Remediations.Write and Remediations.Read.')
param writerPrincipalIds array = []

@description('Object ids of users, groups or service principals given Remediations.Read only.')
param readerPrincipalIds array = []

// Azure CLI's public client application (the same id in every tenant).
var azureCliAppId = '04b07795-8ddb-461a-bbee-02f9e1bf7b46'

// Stable ids: re-deploying must not re-create roles (that would orphan assignments).
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
    preAuthorizedApplications: [
      {
        appId: azureCliAppId
        delegatedPermissionIds: [
          userImpersonationId
        ]
      }
    ]
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

resource apiPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: api.appId
  // Only principals with an app role assignment get a token for the API at all; the roles
  // claim then decides what each may do.
  appRoleAssignmentRequired: true
}

// Writers get both roles; readers who are also writers are skipped (one assignment per
// principal and role: a duplicate in one deployment would conflict).
var readersOnly = filter(readerPrincipalIds, id => !contains(writerPrincipalIds, id))

resource writerWrite 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for id in writerPrincipalIds: {
  appRoleId: writeRoleId
  principalId: id
  resourceId: apiPrincipal.id
}]

resource writerRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for id in writerPrincipalIds: {
  appRoleId: readRoleId
  principalId: id
  resourceId: apiPrincipal.id
}]

resource readerRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for id in readersOnly: {
  appRoleId: readRoleId
  principalId: id
  resourceId: apiPrincipal.id
}]

output clientId string = api.appId
output appIdUri string = identifierUri
output servicePrincipalId string = apiPrincipal.id
