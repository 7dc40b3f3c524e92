// Parameters for main.bicep. azd fills the environment variables (AZURE_ENV_NAME,
// AZURE_LOCATION, AZURE_PRINCIPAL_ID, the outputs of the last provision, and anything set
// with `azd env set`) and builds this file right before each deployment, after the hooks
// in azure.yaml have run (azd >= 1.18). With plain az, export them or edit the fallbacks.
using 'main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'remediator')
param location = readEnvironmentVariable('AZURE_LOCATION', 'swedencentral')

// azure.yaml's preprovision hook sets it: true only for the provision the postdeploy hook
// runs (the function code is deployed by then), false otherwise.
param deployEventSubscription = bool(readEnvironmentVariable('DEPLOY_EVENT_SUBSCRIPTION', 'false'))

// A second environment in this subscription attaches to the first one's system topic (a
// subscription allows one per source): copy the first environment's two outputs.
param existingSystemTopicName = readEnvironmentVariable('EVENT_GRID_SYSTEM_TOPIC_NAME', '')
param existingSystemTopicResourceGroup = readEnvironmentVariable('EVENT_GRID_SYSTEM_TOPIC_RESOURCE_GROUP', '')

// azure.yaml's hooks keep it: created by preprovision, cleared by postdown.
param keyVaultNameSalt = readEnvironmentVariable('REMEDIATOR_VAULT_SALT', '')

// The two Graph modules: 'true', 'false', or unset for on in the public cloud only (the
// Microsoft Graph Bicep extension's one cloud). false when the deployer cannot grant Microsoft
// Graph app roles or create applications (`python -m remediation preflight` says which; the
// manual steps are in infra/README.md).
param grantGraphPermission = readEnvironmentVariable('GRANT_GRAPH_PERMISSION', '')

// Comma-separated ids of more subscriptions to act on (optional).
param extraSubscriptionIds = empty(readEnvironmentVariable('REMEDIATOR_EXTRA_SUBSCRIPTION_IDS', '')) ? [] : split(readEnvironmentVariable('REMEDIATOR_EXTRA_SUBSCRIPTION_IDS', ''), ',')

// Comma-separated ids of subscriptions where the remediator may only read role assignments, for
// the migration plans: those of networks its clusters use and it does not act on (optional).
param roleAssignmentReadSubscriptionIds = empty(readEnvironmentVariable('REMEDIATOR_ROLE_ASSIGNMENT_READ_SUBSCRIPTION_IDS', '')) ? [] : split(readEnvironmentVariable('REMEDIATOR_ROLE_ASSIGNMENT_READ_SUBSCRIPTION_IDS', ''), ',')

// The API's Entra application: created here unless REMEDIATOR_CREATE_API_APP is false, in
// which case give the client id (and app ID URI) of one made by hand.
param createApiApplication = readEnvironmentVariable('REMEDIATOR_CREATE_API_APP', '')
param existingApiClientId = readEnvironmentVariable('REMEDIATOR_EXISTING_API_CLIENT_ID', '')
param existingApiAppIdUri = readEnvironmentVariable('REMEDIATOR_EXISTING_API_APP_ID_URI', '')

// Who may use the API: the deployer (azd sets AZURE_PRINCIPAL_ID to the signed-in user's
// object id) and comma-separated object ids of users, groups or service principals.
var deployer = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')
var writers = filter(map(split(readEnvironmentVariable('REMEDIATOR_API_WRITERS', ''), ','), id => trim(id)), id => !empty(id))
var readers = filter(map(split(readEnvironmentVariable('REMEDIATOR_API_READERS', ''), ','), id => trim(id)), id => !empty(id))
param apiWriterPrincipalIds = union(empty(deployer) ? [] : [deployer], writers)
param apiReaderPrincipalIds = readers

// Where alerts go (both optional).
param alertEmail = readEnvironmentVariable('REMEDIATOR_ALERT_EMAIL', '')
param alertWebhookUrl = readEnvironmentVariable('REMEDIATOR_ALERT_WEBHOOK_URL', '')
// The Log Analytics daily cap in GB (-1: none); an alert fires when it is reached.
param logDailyQuotaGb = int(readEnvironmentVariable('REMEDIATOR_LOG_DAILY_QUOTA_GB', '1'))

// Microsoft Graph endpoint for a cloud main.bicep does not know (optional). Not named
// REMEDIATOR_GRAPH_ENDPOINT: a local run's sandbox value must never reach a deployment.
param graphEndpoint = readEnvironmentVariable('REMEDIATOR_GRAPH_ENDPOINT_OVERRIDE', '')

// Guardrails (README.md: "One rotation per application, inside the operators' guardrails"), each read from
// the azd environment variable of the same name as the app setting, e.g. `azd env set REMEDIATOR_MODE observe`.
param mode = readEnvironmentVariable('REMEDIATOR_MODE', 'remediate')
param denySubscriptionIds = readEnvironmentVariable('REMEDIATOR_DENY_SUBSCRIPTION_IDS', '')
param allowResourceGroups = readEnvironmentVariable('REMEDIATOR_ALLOW_RESOURCE_GROUPS', '')
param denyResourceGroups = readEnvironmentVariable('REMEDIATOR_DENY_RESOURCE_GROUPS', '')
param optOutTag = readEnvironmentVariable('REMEDIATOR_OPT_OUT_TAG', 'aks-sp-remediator=off')
param maxResetsPerHour = int(readEnvironmentVariable('REMEDIATOR_MAX_RESETS_PER_HOUR', '20'))
param breakerFailures = int(readEnvironmentVariable('REMEDIATOR_BREAKER_FAILURES', '3'))
// Deleted applications: plan (default) or replace; and the roles a replacement may be given.
param replaceDeleted = readEnvironmentVariable('REMEDIATOR_REPLACE_DELETED', 'plan')
param assignableRoleIds = empty(readEnvironmentVariable('REMEDIATOR_ASSIGNABLE_ROLE_IDS', '')) ? [
  '4d97b98b-1d4f-4787-a291-c67834d212e7'
  '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  'b12aa53e-6015-4669-85d0-8515ebb3ae7f'
] : split(readEnvironmentVariable('REMEDIATOR_ASSIGNABLE_ROLE_IDS', ''), ',')
param retireAfterHours = int(readEnvironmentVariable('REMEDIATOR_RETIRE_AFTER_HOURS', '24'))
param retireForeignPasswords = bool(readEnvironmentVariable('REMEDIATOR_RETIRE_FOREIGN_PASSWORDS', 'false'))
// Fleet credential health check and rotation ahead of expiry (README.md), from the azd environment variables of
// the same names, e.g. `azd env set REMEDIATOR_ROTATION_WINDOW 'Sat,Sun 01:00-05:00'`.
param healthSchedule = readEnvironmentVariable('REMEDIATOR_HEALTH_SCHEDULE', '0 0 6 * * *')
param expiryWarningDays = int(readEnvironmentVariable('REMEDIATOR_EXPIRY_WARNING_DAYS', '30'))
param rotateTag = readEnvironmentVariable('REMEDIATOR_ROTATE_TAG', 'aks-sp-remediator=rotate')
param rotationWindow = readEnvironmentVariable('REMEDIATOR_ROTATION_WINDOW', '')
// Execute mode (infra/README.md, "Execute mode: moving clusters to managed identity"): off (default) or
// execute, e.g. `azd env set REMEDIATOR_MIGRATE execute`; the tag that opts a cluster in; and the resource
// group, existing in every managed subscription, that holds the identities the move creates.
param migrate = readEnvironmentVariable('REMEDIATOR_MIGRATE', 'off')
param migrateTag = readEnvironmentVariable('REMEDIATOR_MIGRATE_TAG', 'aks-sp-remediator=migrate')
param migrationIdentityGroup = readEnvironmentVariable('REMEDIATOR_MIGRATION_IDENTITY_GROUP', '')
