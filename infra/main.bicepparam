// Parameters for main.bicep. azd fills the environment variables (AZURE_ENV_NAME,
// AZURE_LOCATION, and anything set with `azd env set`); with plain az, export them or edit
// the fallbacks here.
using 'main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'remediator')
param location = readEnvironmentVariable('AZURE_LOCATION', 'swedencentral')

// false on the first run (the function code is not deployed yet); azure.yaml's postdeploy
// hook sets DEPLOY_EVENT_SUBSCRIPTION=true and provisions again.
param deployEventSubscription = bool(readEnvironmentVariable('DEPLOY_EVENT_SUBSCRIPTION', 'false'))

// false when the deployer cannot grant Microsoft Graph app roles (see infra/README.md).
param grantGraphPermission = bool(readEnvironmentVariable('GRANT_GRAPH_PERMISSION', 'true'))

// Comma-separated ids of more subscriptions to act on (optional).
param extraSubscriptionIds = empty(readEnvironmentVariable('REMEDIATOR_EXTRA_SUBSCRIPTION_IDS', '')) ? [] : split(readEnvironmentVariable('REMEDIATOR_EXTRA_SUBSCRIPTION_IDS', ''), ',')
