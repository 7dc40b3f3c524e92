// An Azure Monitor workbook over what the remediator sends to Application Insights: fleet
// credential health over time, remediations by outcome, failure-to-repair durations, and
// decisions refused by guardrails.
//
// Application Insights here is workspace-based (monitoring.bicep: WorkspaceResourceId,
// IngestionMode 'LogAnalytics'), so its telemetry lands in the Log Analytics workspace's own
// tables: the OpenTelemetry metrics (remediation/telemetry.py) in AppMetrics, with their
// attributes in Properties, and the log lines in AppTraces. Every query runs against that
// workspace, and the workbook is listed under it (Workbooks). workbook.json is the workbook
// itself, as the portal's Advanced Editor shows it; its __WORKSPACE_RESOURCE_ID__ placeholder
// is replaced with the workspace's id here. tests/test_workbook.py checks every table, metric
// and attribute it names against the app and this template.

@description('Region of the workbook.')
param location string

@description('Tags for the workbook.')
param tags object = {}

@description('The environment\'s resource token: the workbook\'s name (a GUID) is derived from it.')
param resourceToken string

@description('Resource id of the Log Analytics workspace behind Application Insights: the workbook queries it and is listed under it.')
param workspaceId string

@description('Name shown in the portal\'s Workbooks gallery.')
param displayName string = 'AKS SP remediator: fleet credential health (${resourceToken})'

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'aks-sp-remediator-workbook', resourceToken)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: toLower(workspaceId)
    serializedData: replace(loadTextContent('workbook.json'), '__WORKSPACE_RESOURCE_ID__', workspaceId)
  }
}

output id string = workbook.id
output name string = workbook.name
