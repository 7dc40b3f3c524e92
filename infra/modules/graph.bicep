// Microsoft Graph application permission for the remediator identity, through the
// Microsoft Graph Bicep extension (alias in infra/bicepconfig.json).
//
// Application.ReadWrite.OwnedBy lets the identity read and update (addPassword,
// removePassword) only applications it owns: make it an owner of each cluster service
// principal's application (infra/README.md). Granting an app role needs a deployer with
// AppRoleAssignment.ReadWrite.All (e.g. Privileged Role Administrator); tenants that cannot
// use the extension grant it with the README's az rest / PowerShell fallback instead.
extension microsoftGraphV1

@description('Object (principal) id of the remediator identity\'s service principal.')
param principalId string

// Well-known ids: the Microsoft Graph application, and its app role
// Application.ReadWrite.OwnedBy ("Manage apps that this app creates or owns").
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'
var applicationReadWriteOwnedBy = '18a4783c-866b-4cc7-a460-3d5e5662c884'
// Application.Read.All ("Read all applications"): Graph's deleted items (a deleted
// application's service principal, its name and role assignments' owner) need it; OwnedBy
// alone cannot list them. It writes nothing.
var applicationReadAll = '9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30'

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: microsoftGraphAppId
}

resource ownedByGrant 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: applicationReadWriteOwnedBy
  principalId: principalId
  resourceId: microsoftGraph.id
}

resource readAllGrant 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: applicationReadAll
  principalId: principalId
  resourceId: microsoftGraph.id
}

output appRoleAssignmentId string = ownedByGrant.id
output readAllAssignmentId string = readAllGrant.id
