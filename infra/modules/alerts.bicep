// What an operator is told about: events Event Grid gave up on, work messages moved to a
// poison queue, remediations that ended Failed, and clusters the daily health check found
// with an expired secret. One action group (e-mail and/or a webhook, both optional: without
// either, the alerts still show in the portal's Alerts).
//
// The log search queries quote the exact log text the code and the Functions host write;
// tests/test_infra.py checks them against remediation/alerts.py and remediation/intake/health.py.

@description('Region of the log search alert rules.')
param location string

@description('Tags for the alert resources.')
param tags object = {}

@description('The environment\'s resource token, for unique names.')
param resourceToken string

@description('Name of the Application Insights component (in this resource group) the log alerts query.')
param applicationInsightsName string

@description('Name of the Log Analytics workspace (in this resource group) behind the component.')
param workspaceName string

@description('Whether the workspace has a daily ingestion cap (logDailyQuotaGb is not -1): then an alert says when it was reached.')
param dailyCapSet bool

@description('Resource id of the Event Grid system topic this environment receives events from (possibly shared).')
param systemTopicId string

@description('Name of this environment\'s event subscription on that topic.')
param eventSubscriptionName string

@description('E-mail address to notify; empty for none.')
param alertEmail string = ''

@description('HTTPS webhook to notify (common alert schema); empty for none. Secure: such URLs often carry a token.')
@secure()
param alertWebhookUrl string = ''

// Reader (built-in): the log alert rules' own identities read the component they query.
var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource operators 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-remediator-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    // At most 12 characters; shown as the sender of SMS and e-mail.
    groupShortName: 'aksremediate'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operator-email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'operator-webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

// An event Event Grid could not deliver in 24 hours (30 attempts) went to the dead-letter
// container: a cluster failure the remediator never saw. Filtered to this environment's
// event subscription, since the topic may be shared. Event Grid has reported this dimension
// in upper case, so both spellings are listed.
resource deadLettered 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-deadlettered-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dead-lettered a cluster failure event: see the eventgrid-deadletter container and the topic\'s DeliveryFailures log.'
    severity: 1
    enabled: true
    scopes: [
      systemTopicId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered-events'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          dimensions: [
            {
              name: 'EventSubscriptionName'
              operator: 'Include'
              values: union([
                eventSubscriptionName
              ], [
                toUpper(eventSubscriptionName)
              ])
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: operators.id
      }
    ]
  }
}

// frequency is how often a rule runs and window the span it searches (equal: each line is
// counted once). Lines that can come at any time are looked for every 5 minutes; the health
// check's line comes once a day, so an hourly look is soon enough and costs a third.
var logAlerts = [
  {
    name: 'alert-poison-message-${resourceToken}'
    description: 'A work message failed 5 times and the Functions host moved it to a -poison queue: that remediation step, incident lookup or credential check will not run again by itself.'
    severity: 2
    // The host's line: "Message has reached MaxDequeueCount of 5. Moving message to queue
    // 'remediation-steps-poison'." (remediation/alerts.py POISON_MESSAGE).
    query: 'traces | where message contains "Moving message to queue" and message contains "-poison"'
    frequency: 'PT5M'
    window: 'PT5M'
  }
  {
    name: 'alert-remediation-failed-${resourceToken}'
    description: 'A remediation ended Failed: the cluster still has an invalid service principal secret. The log line names the remediation, the step and the reason.'
    severity: 1
    // remediation/alerts.py REMEDIATION_FAILED, logged once per failed remediation.
    query: 'traces | where message contains "RemediationFailed"'
    frequency: 'PT5M'
    window: 'PT5M'
  }
  {
    name: 'alert-clusters-expired-${resourceToken}'
    description: 'The fleet health check found clusters whose service principal secret has already expired: every write to them (scale, upgrade) fails until it is replaced. The remediator starts their remediations itself (not in observe mode); a failed one raises the remediation-failed alert.'
    severity: 2
    // remediation/intake/health.py EXPIRED_NOW_LOG, logged at WARNING by a health check that finds
    // any, after their number: "3 clusters expired now".
    query: 'traces | where message contains "clusters expired now"'
    frequency: 'PT1H'
    window: 'PT1H'
  }
]

// Each rule runs its query with its own system-assigned identity (given Reader on the
// component below), not with the permissions of whoever last edited it.
resource logAlertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for alert in logAlerts: {
  name: alert.name
  location: location
  tags: tags
  kind: 'LogAlert'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: alert.frequency
    windowSize: alert.window
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        operators.id
      ]
    }
    autoMitigate: false
  }
}]

// The component has local (key) auth off, so the rules read it with Entra ID. A new
// assignment can take a few minutes to apply: the first evaluations may fail until then.
resource logAlertReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (alert, i) in logAlerts: {
  name: guid(appInsights.id, logAlertRules[i].id, reader)
  scope: appInsights
  properties: {
    principalId: logAlertRules[i].identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
    description: 'Log search alert ${alert.name} queries this component with its own identity.'
  }
}]

// The daily cap stops ingestion for the rest of the day, and with it every log alert above:
// this rule says so when it happens. The query is the one Microsoft documents for it
// (Microsoft Learn, "Set daily cap on Log Analytics workspace", "Alert when daily cap is
// reached"); the cap writes its event to the workspace's Operation table even when it stops
// everything else.
var dailyCapQuery = '_LogOperation | where Category =~ "Ingestion" | where Detail contains "OverQuota"'

resource dailyCapReached 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (dailyCapSet) {
  name: 'alert-daily-cap-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    description: 'The Log Analytics daily cap was reached: logs (and the log alerts that read them) stop until the cap resets. Raise logDailyQuotaGb (REMEDIATOR_LOG_DAILY_QUOTA_GB) or find what logs so much.'
    severity: 1
    enabled: true
    scopes: [
      workspace.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: dailyCapQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        operators.id
      ]
    }
    autoMitigate: false
  }
}

resource dailyCapReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (dailyCapSet) {
  name: guid(workspace.id, 'alert-daily-cap-${resourceToken}', reader)
  scope: workspace
  properties: {
    principalId: dailyCapReached!.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
    description: 'Log search alert alert-daily-cap-${resourceToken} queries this workspace with its own identity.'
  }
}

output actionGroupId string = operators.id
