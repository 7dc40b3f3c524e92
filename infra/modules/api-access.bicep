// Who may call the remediator's API: its service principal requires an app role assignment,
// and the writers and readers get theirs. Deployed after api-app.bicep's second stage
// (main.bicep), through the Microsoft Graph Bicep extension.
extension microsoftGraphV1

@description('Client id (appId) of the API application.')
param apiAppId string

@description('Id of the app role Remediations.Write.')
param writeRoleId string

@description('Id of the app role Remediations.Read.')
param readRoleId string

@description('Object ids of users, groups or service principals given Remediations.Write and Remediations.Read.')
param writerPrincipalIds array = []

@description('Object ids of users, groups or service principals given Remediations.Read only.')
param readerPrincipalIds array = []

resource apiPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: apiAppId
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

output servicePrincipalId string = apiPrincipal.id
