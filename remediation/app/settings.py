"""Application settings: declared once, read once, validated once.

`SETTINGS` is the one table of every app setting the code reads: its name, the parser that turns its text into a
typed value, its default (written once, as an operator would write it), what it means, and where it comes from in
Azure. Everything else follows the table: `Settings.from_env` reads each row once and names every bad value; the
README's settings table and `local.settings.sample.json` are generated from it (`python -m tests.test_settings`
rewrites both, and a test fails while either is stale); and a test checks that the Bicep in `infra/` sets each row
marked `deployed`, from the row's parameter, with the row's default.

This module is the one place that names public-cloud hosts: they are the defaults of the endpoint settings, which the
Bicep fills from `environment()` for whichever cloud it is deployed to. Every other module takes its endpoints from
`Settings` (a test greps).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from remediation.decide.guardrails import (
    ControlTag,
    Guardrails,
    MigrateMode,
    Migration,
    Mode,
    ProactiveRotation,
    Replacement,
    Scope,
    names,
)
from remediation.errors import ConfigurationError

if TYPE_CHECKING:
    from remediation.decide.maintenance import ConfiguredWindow

# Storage names shared by the code, the function bindings and the Bicep.
TABLE_NAME = "remediations"
WORK_QUEUE = "remediation-steps"
INCIDENT_QUEUE = "incident-lookups"
CHECK_QUEUE = "credential-checks"
STORAGE_CONNECTION = "AzureWebJobsStorage"

# Public-cloud defaults (Azure Resource Manager, Microsoft Graph, Entra ID, Storage).
PUBLIC_ARM_ENDPOINT = "https://management.azure.com"
PUBLIC_GRAPH_ENDPOINT = "https://graph.microsoft.com"
PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"
PUBLIC_STORAGE_SUFFIX = "core.windows.net"
# Each cloud's ARM and Microsoft Graph endpoints, by the name azd and az give it (Microsoft Learn: national clouds;
# Microsoft Graph national cloud deployments). The app is told its endpoints by its settings; the operator's tools
# (`python -m remediation preflight --cloud NAME`) look them up here.
CLOUD_ENDPOINTS = {
    "AzureCloud": (PUBLIC_ARM_ENDPOINT, PUBLIC_GRAPH_ENDPOINT),
    "AzureUSGovernment": ("https://management.usgovcloudapi.net", "https://graph.microsoft.us"),
    "AzureChinaCloud": ("https://management.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
}

# Compiled on first use (by re's cache), when the settings are read: not at import.
_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# ------------------------------------------------------------------------------------------------ parsers
# Each takes the setting's text (stripped, never empty) and returns its typed value, or raises ValueError with what
# is wrong ("must be ..., got ..."); `Settings.from_env` puts the setting's name in front.


def text(raw: str) -> str:
    return raw


def url(raw: str) -> str:
    return raw.rstrip("/")


def lower(raw: str) -> str:
    return raw.lower()


def id_list(raw: str) -> tuple[str, ...]:
    """Comma-separated ids, lower-cased, in the order given."""
    return tuple(part.strip().lower() for part in raw.split(",") if part.strip())


def role_ids(raw: str) -> frozenset[str]:
    roles = names(raw)
    if bad := sorted(r for r in roles if not re.fullmatch(_GUID, r)):
        raise ValueError(f"holds role definition GUIDs, got {bad[0]!r}")
    return roles


def tag(raw: str) -> ControlTag:
    try:
        return ControlTag.parse(raw)
    except ValueError as err:
        raise ValueError(f"must be a tag key=value, got {raw!r}") from err


def flag(raw: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise ValueError(f"must be true or false, got {raw!r}")
    return raw.lower() == "true"


def window(raw: str) -> ConfiguredWindow | None:
    """REMEDIATOR_ROTATION_WINDOW's grammar (remediation/decide/maintenance.py); its errors name the setting."""
    from remediation.decide.maintenance import parse_window_setting  # settings are read once, at bootstrap

    try:
        return parse_window_setting(raw)
    except ConfigurationError as err:
        raise ValueError(str(err)) from err


class Number:
    """A finite number at least `minimum`; with `whole`, an int."""

    __slots__ = ("minimum", "whole")

    def __init__(self, minimum: float = 0, *, whole: bool = False) -> None:
        self.minimum, self.whole = minimum, whole

    def __call__(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"must be a number, got {raw!r}")
        if value < self.minimum:
            raise ValueError(f"must not be negative, got {raw!r}" if self.minimum == 0
                             else f"must be at least {self.minimum:g}, got {raw!r}")
        if self.whole and value != int(value):
            raise ValueError(f"must be a whole number, got {raw!r}")
        return int(value) if self.whole else value


class Duration(Number):
    """A number of `unit` ("days", "hours", "minutes" or "seconds") as a timedelta; `whole_units` drops a fraction."""

    __slots__ = ("unit", "whole_units")

    def __init__(self, unit: str, minimum: float = 0, *, whole: bool = False, whole_units: bool = False) -> None:
        super().__init__(minimum, whole=whole)
        self.unit, self.whole_units = unit, whole_units

    def __call__(self, raw: str) -> timedelta:  # type: ignore[override]
        amount = super().__call__(raw)
        try:
            return timedelta(**{self.unit: int(amount) if self.whole_units else amount})
        except OverflowError as err:
            raise ValueError(f"is too long, got {raw!r}") from err


class OneOf:
    """One of a few words, in any case; `make` turns the word, spelled as in `choices`, into the value."""

    __slots__ = ("choices", "make")

    def __init__(self, choices: tuple[str, ...], make: Callable[[str], Any]) -> None:
        self.choices, self.make = choices, make

    def __call__(self, raw: str) -> Any:
        for choice in self.choices:
            if raw.lower() == choice.lower():
                return self.make(choice)
        *first, last = self.choices
        raise ValueError(f"must be {', '.join(first)} or {last}, got {raw!r}")


# -------------------------------------------------------------------------------------------------- table


class Setting(NamedTuple):
    """One app setting. `default` is its text when unset or empty (None: no value); `field` the `Settings`
    attribute that holds the parsed value as it is (None: it goes into a composite, such as the guardrails or the
    storage endpoints, or only the Functions host reads it); `deployed` whether the Bicep sets it in Azure and
    `bicep` the main.bicep parameter it comes from (None: the template fills it from what it creates); `example`
    what local.settings.sample.json shows instead of the default."""

    name: str
    parse: Callable[[str], Any]
    default: str | None
    doc: str
    field: str | None = None
    required: bool = False
    deployed: bool = True
    bicep: str | None = None
    example: str | None = None


SETTINGS: tuple[Setting, ...] = (
    # Storage and identity: filled by the template from what it creates.
    Setting("AzureWebJobsStorage", text, None,
            "The storage connection string of a local run (Azurite); in Azure, the identity-based settings below.",
            field="storage_connection_string", deployed=False, example="UseDevelopmentStorage=true"),
    Setting("AzureWebJobsStorage__accountName", text, None,
            "Storage account of the tables and queues, reached with the managed identity; public-cloud endpoints are"
            " derived from it when the two service URIs are not set."),
    Setting("AzureWebJobsStorage__tableServiceUri", url, None,
            "Table endpoint of that account (the host's identity-based form; the Bicep fills it for whichever cloud)."),
    Setting("AzureWebJobsStorage__queueServiceUri", url, None,
            "Queue endpoint of that account (the host's identity-based form; the Bicep fills it for whichever cloud)."),
    Setting("AZURE_CLIENT_ID", text, None,
            "Client id of the identity the remediator runs as (its user-assigned managed identity in Azure).",
            field="client_id", example="<client id of the remediator identity>"),
    Setting("AZURE_TENANT_ID", text, None, "Entra ID tenant of the clusters' service principals.",
            field="tenant_id", required=True, example="<tenant id>"),
    Setting("AZURE_CLIENT_SECRET", text, None, "Client secret of the remediator's own app registration, locally.",
            field="client_secret", deployed=False, example=""),
    Setting("REMEDIATOR_KEY_VAULT_URL", url, None, "Key Vault that keeps every secret the remediator mints.",
            field="key_vault_url", required=True, example="https://<vault-name>.vault.azure.net"),
    # Endpoints: each also the audience (or issuer) of its tokens.
    Setting("REMEDIATOR_ARM_ENDPOINT", url, PUBLIC_ARM_ENDPOINT,
            "Azure Resource Manager endpoint; also the audience of its tokens.",
            field="arm_endpoint", bicep="armEndpoint"),
    Setting("REMEDIATOR_GRAPH_ENDPOINT", url, PUBLIC_GRAPH_ENDPOINT,
            "Microsoft Graph endpoint (without /v1.0); also the audience of its tokens.",
            field="graph_endpoint", bicep="graphEndpoint"),
    Setting("REMEDIATOR_AUTHORITY_HOST", url, PUBLIC_AUTHORITY_HOST,
            "Entra ID authority host: where the remediator signs in, and the issuer of the tokens its API accepts.",
            field="authority_host", bicep="authorityHost"),
    Setting("REMEDIATOR_API_CLIENT_ID", text, None,
            "Client id of the remediator API's Entra application: callers of the HTTP API present a token for it.",
            field="api_client_id", required=True,
            example="<client id of the remediator API's Entra application>"),
    Setting("REMEDIATOR_API_APP_ID_URI", url, "",
            "Application ID URI of that application, also accepted as a token audience; empty: `api://<client id>`."),
    Setting("REMEDIATOR_CA_BUNDLE", text, None, "CA file to trust for the sandbox's HTTPS endpoints.",
            field="ca_bundle", deployed=False, example=""),
    # Scope and guardrails (remediation/decide/guardrails.py).
    Setting("REMEDIATOR_SUBSCRIPTION_IDS", id_list, "",
            "Comma-separated subscriptions the remediator manages (its scope) and the timer sweeps; empty: any.",
            field="subscription_ids", example="<subscription id>[,<subscription id>...]"),
    Setting("REMEDIATOR_DENY_SUBSCRIPTION_IDS", names, "",
            "Comma-separated subscriptions never touched, whatever else allows them.", bicep="denySubscriptionIds"),
    Setting("REMEDIATOR_ALLOW_RESOURCE_GROUPS", names, "",
            "Comma-separated resource groups (a name, or `<subscription id>/<name>`) the remediator may act in;"
            " empty: any.", bicep="allowResourceGroups"),
    Setting("REMEDIATOR_DENY_RESOURCE_GROUPS", names, "",
            "Comma-separated resource groups (a name, or `<subscription id>/<name>`) never touched.",
            bicep="denyResourceGroups"),
    Setting("REMEDIATOR_OPT_OUT_TAG", tag, "aks-sp-remediator=off",
            "key=value: a cluster or resource group with this tag is left alone.", bicep="optOutTag"),
    Setting("REMEDIATOR_MODE", OneOf(tuple(m.value for m in Mode), Mode), "remediate",
            "remediate: decide and act; observe: decide, plan and record, but write nothing to Azure.",
            bicep="mode"),
    Setting("REMEDIATOR_MAX_RESETS_PER_HOUR", Number(whole=True), "20",
            "Most cluster resets started in any hour across the fleet (a reset re-images nodes).",
            bicep="maxResetsPerHour"),
    Setting("REMEDIATOR_BREAKER_FAILURES", Number(whole=True), "3",
            "Failed remediations of one cluster or application within the breaker window that stop further ones.",
            bicep="breakerFailures"),
    Setting("REMEDIATOR_BREAKER_WINDOW_HOURS", Duration("hours"), "24", "The circuit breaker's window, in hours.",
            bicep="breakerWindowHours"),
    # A deleted application (remediation/run/replacement.py).
    Setting("REMEDIATOR_REPLACE_DELETED", OneOf(tuple(r.value for r in Replacement), Replacement), "plan",
            "plan: a cluster whose application was deleted gets a recorded plan (steps and az commands); replace: a"
            " new application and service principal with the old one's role assignments.", bicep="replaceDeleted"),
    Setting("REMEDIATOR_ASSIGNABLE_ROLE_IDS", role_ids, "",
            "Comma-separated role definition GUIDs a replacement may be given (the condition of the remediator's role"
            " assignment administrator role, from the Bicep); a replacement needing another is planned, not started;"
            " empty: any. The Bicep's default: Network Contributor, AcrPull, Private DNS Zone Contributor, and with"
            " REMEDIATOR_MIGRATE=execute also Managed Identity Operator.",
            bicep="assignableRoleIds",
            example="4d97b98b-1d4f-4787-a291-c67834d212e7,7f951dda-4ed3-4680-a7ca-43fe172d538d,"
                    "b12aa53e-6015-4669-85d0-8515ebb3ae7f"),
    # The move to managed identity (remediation/run/migration.py).
    Setting("REMEDIATOR_MIGRATE", OneOf(tuple(m.value for m in MigrateMode), MigrateMode), "off",
            "off: clusters are only planned for the move to managed identity; execute: clusters tagged with"
            " REMEDIATOR_MIGRATE_TAG are moved inside their maintenance window (needs the permissions the Bicep grants"
            " with migrate=execute).", bicep="migrate"),
    Setting("REMEDIATOR_MIGRATE_TAG", tag, "aks-sp-remediator=migrate",
            "key=value: a cluster with this tag is moved to managed identity when REMEDIATOR_MIGRATE is execute.",
            bicep="migrateTag"),
    Setting("REMEDIATOR_MIGRATION_IDENTITY_GROUP", text, "",
            "Resource group (a name, in each migrated cluster's subscription) that holds the user-assigned identities"
            " the move creates; required when REMEDIATOR_MIGRATE is execute.", bicep="migrationIdentityGroup"),
    Setting("REMEDIATOR_PRINCIPAL_ID", lower, "",
            "Object id of the remediator's own service principal (its managed identity): owner of what it creates.",
            field="principal_id"),
    # A rotation (remediation/run/rotation.py).
    Setting("REMEDIATOR_RETIRE_AFTER_HOURS", Duration("hours"), "24",
            "Hours after every cluster is verified before the passwords a rotation replaced are removed; 0 keeps"
            " them.", field="retire_after", bicep="retireAfterHours"),
    Setting("REMEDIATOR_RETIRE_FOREIGN_PASSWORDS", flag, "false",
            "true to also remove unexpired passwords someone else added, once every cluster holds the new one.",
            field="retire_foreign_passwords", bicep="retireForeignPasswords"),
    Setting("REMEDIATOR_PROPAGATION_SUCCESSES", Number(whole=True), "3",
            "Sign-ins in a row the new secret must pass before any cluster is reset with it.",
            field="propagation_successes", bicep="propagationSuccesses"),
    Setting("REMEDIATOR_PROPAGATION_INTERVAL_SECONDS", Number(), "10", "Seconds between those sign-ins.",
            field="propagation_interval_seconds", bicep="propagationIntervalSeconds"),
    Setting("REMEDIATOR_PROPAGATION_TIMEOUT_MINUTES", Duration("minutes"), "20",
            "How long to wait for the new secret to sign in before the rotation fails.",
            field="propagation_timeout", bicep="propagationTimeoutMinutes"),
    # Timers: only the Functions host reads these (the bindings' %REMEDIATOR_..._SCHEDULE%).
    Setting("REMEDIATOR_SWEEP_SCHEDULE", text, "0 */15 * * * *", "NCRONTAB schedule of the Activity Log sweep.",
            bicep="sweepSchedule"),
    Setting("REMEDIATOR_HEALTH_SCHEDULE", text, "0 0 6 * * *",
            "NCRONTAB schedule of the fleet credential health check (Resource Graph, Graph $batch; acts on what it"
            " finds).", bicep="healthSchedule"),
    # Rotation ahead of expiry (remediation/intake/health.py, remediation/decide/maintenance.py).
    Setting("REMEDIATOR_EXPIRY_WARNING_DAYS", Duration("days", whole=True), "30",
            "A secret ending within this many days is reported as expiring (and rotated, on opted-in clusters).",
            bicep="expiryWarningDays"),
    Setting("REMEDIATOR_ROTATE_TAG", tag, "aks-sp-remediator=rotate",
            "key=value: a cluster with this tag has its secret rotated ahead of expiry, inside its maintenance window.",
            bicep="rotateTag"),
    Setting("REMEDIATOR_ROTATION_WINDOW", window, "",
            "The window for proactive rotation of clusters without an AKS planned maintenance configuration, such as"
            " `Sat,Sun 01:00-05:00` or `Mon-Fri 22:00-02:00 +01:00`; empty: such clusters are never rotated ahead.",
            bicep="rotationWindow"),
    # Telemetry and outcome events.
    Setting("REMEDIATOR_OUTCOME_TOPIC_ENDPOINT", url, "",
            "Event Grid custom topic endpoint that receives outcome events (CloudEvents); empty: none are sent.",
            field="outcome_topic_endpoint"),
    Setting("APPLICATIONINSIGHTS_CONNECTION_STRING", text, "",
            "Application Insights connection string: the remediator's metrics and traces go there (OpenTelemetry);"
            " empty: none are exported.", field="appinsights_connection_string"),
    Setting("REMEDIATOR_SDK_LOG_LEVEL", OneOf(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), str), "WARNING",
            "Log level of the Azure SDKs', httpx's and MSAL's own loggers (their HTTP logging writes every header set"
            " at INFO).", field="sdk_log_level", bicep="sdkLogLevel"),
    # Timing of the work (remediation/run/, remediation/intake/detection.py).
    Setting("REMEDIATOR_SECRET_LIFETIME_DAYS", Duration("days", minimum=1, whole_units=True), "180",
            "Lifetime of a minted client secret, in whole days (a fraction is dropped).",
            field="secret_lifetime", bicep="secretLifetimeDays"),
    Setting("REMEDIATOR_RESET_POLL_SECONDS", Number(), "30",
            "Seconds between looks at a running reset when ARM's answer names none (Retry-After comes first; no"
            " invocation waits on one: a queue message comes back).",
            field="reset_poll_seconds", bicep="resetPollSeconds"),
    Setting("REMEDIATOR_RETRY_DELAY_SECONDS", Number(), "30",
            "Base delay before a remediation step is tried again from the queue (it doubles, up to 15 minutes).",
            field="retry_delay_seconds", bicep="retryDelaySeconds"),
    Setting("REMEDIATOR_LEASE_SECONDS", Duration("seconds", minimum=1), "660",
            "How long one invocation holds a remediation; a worker that dies holding it is taken over after this. "
            "Longer than host.json's functionTimeout (600 s), so the host stops a slow holder before it is taken over.",
            field="lease", bicep="leaseSeconds"),
    Setting("REMEDIATOR_LOOKUP_DELAY_SECONDS", Number(), "60",
            "Delay between looks for the Activity Log entry that explains a failure event.",
            field="lookup_delay_seconds", bicep="lookupDelaySeconds"),
    Setting("REMEDIATOR_LOOKUP_TIMEOUT_MINUTES", Number(), "30",
            "How long to keep looking for that entry before giving up on the event.",
            field="lookup_timeout_minutes", bicep="lookupTimeoutMinutes"),
    Setting("REMEDIATOR_RESET_TIMEOUT_MINUTES", Duration("minutes"), "120",
            "How long a reset may run before the remediation is marked failed.",
            field="reset_timeout", bicep="resetTimeoutMinutes"),
)


@dataclass(frozen=True)
class Settings:
    """Validated, typed settings. Build with `Settings.from_env()`; `SETTINGS` declares each field's source."""

    tenant_id: str
    key_vault_url: str
    client_id: str | None
    # Local-run credentials and a connection string: kept out of repr so they never reach a log line.
    client_secret: str | None = field(repr=False)
    storage_connection_string: str | None = field(repr=False)
    table_service_uri: str | None
    queue_service_uri: str | None
    arm_endpoint: str
    graph_endpoint: str
    authority_host: str
    api_client_id: str
    api_app_id_uri: str
    ca_bundle: str | None
    subscription_ids: tuple[str, ...]
    principal_id: str
    guardrails: Guardrails
    secret_lifetime: timedelta
    reset_poll_seconds: float
    retry_delay_seconds: float
    reset_timeout: timedelta
    lease: timedelta
    propagation_successes: int
    propagation_interval_seconds: float
    propagation_timeout: timedelta
    retire_after: timedelta
    retire_foreign_passwords: bool
    lookup_delay_seconds: float
    lookup_timeout_minutes: float
    sdk_log_level: str
    outcome_topic_endpoint: str
    appinsights_connection_string: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read each setting once and validate it; ConfigurationError names every bad or missing one at once."""
        values, problems = _read(os.environ if environ is None else environ)
        storage = _storage_endpoints(values, problems)
        if values["REMEDIATOR_MIGRATE"] is MigrateMode.EXECUTE and not values["REMEDIATOR_MIGRATION_IDENTITY_GROUP"]:
            problems.append("REMEDIATOR_MIGRATION_IDENTITY_GROUP is required when REMEDIATOR_MIGRATE is execute (the"
                            " resource group the user-assigned identities are created in)")
        if problems:
            raise ConfigurationError("invalid settings: " + "; ".join(problems))
        return cls(**{s.field: values[s.name] for s in SETTINGS if s.field}, **storage,
                   api_app_id_uri=url(values["REMEDIATOR_API_APP_ID_URI"]
                                      or f"api://{values['REMEDIATOR_API_CLIENT_ID']}"),
                   guardrails=_guardrails(values))


def _read(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Every setting's typed value by name (None: unset without a default), and what is wrong, each problem naming
    its setting."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for setting in SETTINGS:
        raw = env.get(setting.name, "").strip() or setting.default
        values[setting.name] = None
        if raw is None:
            if setting.required:
                problems.append(f"{setting.name} is required ({setting.doc})")
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as err:
            message = str(err)
            problems.append(message if message.startswith(setting.name) else f"{setting.name} {message}")
    return values, problems


def _storage_endpoints(values: Mapping[str, Any], problems: list[str]) -> dict[str, str | None]:
    """The table and queue endpoints: as given, else the public cloud's for the account name (the host's rule)."""
    connection_string = values["AzureWebJobsStorage"]
    account = values["AzureWebJobsStorage__accountName"]
    table, queue = values["AzureWebJobsStorage__tableServiceUri"], values["AzureWebJobsStorage__queueServiceUri"]
    if not connection_string and not account and not (table and queue):
        problems.append("set AzureWebJobsStorage (a connection string), AzureWebJobsStorage__tableServiceUri and"
                        " __queueServiceUri, or AzureWebJobsStorage__accountName")
    if account and not connection_string:
        table = table or f"https://{account}.table.{PUBLIC_STORAGE_SUFFIX}"
        queue = queue or f"https://{account}.queue.{PUBLIC_STORAGE_SUFFIX}"
    return {"table_service_uri": table or None, "queue_service_uri": queue or None}


def _guardrails(values: Mapping[str, Any]) -> Guardrails:
    return Guardrails(
        scope=Scope(subscriptions=frozenset(values["REMEDIATOR_SUBSCRIPTION_IDS"]),
                    deny_subscriptions=values["REMEDIATOR_DENY_SUBSCRIPTION_IDS"],
                    resource_groups=values["REMEDIATOR_ALLOW_RESOURCE_GROUPS"],
                    deny_resource_groups=values["REMEDIATOR_DENY_RESOURCE_GROUPS"]),
        opt_out=values["REMEDIATOR_OPT_OUT_TAG"], mode=values["REMEDIATOR_MODE"],
        max_resets_per_hour=values["REMEDIATOR_MAX_RESETS_PER_HOUR"],
        breaker_failures=values["REMEDIATOR_BREAKER_FAILURES"],
        breaker_window=values["REMEDIATOR_BREAKER_WINDOW_HOURS"],
        replacement=values["REMEDIATOR_REPLACE_DELETED"], assignable_roles=values["REMEDIATOR_ASSIGNABLE_ROLE_IDS"],
        rotation=ProactiveRotation(opt_in=values["REMEDIATOR_ROTATE_TAG"],
                                   within=values["REMEDIATOR_EXPIRY_WARNING_DAYS"],
                                   window=values["REMEDIATOR_ROTATION_WINDOW"]),
        migration=Migration(mode=values["REMEDIATOR_MIGRATE"], opt_in=values["REMEDIATOR_MIGRATE_TAG"],
                            identity_group=values["REMEDIATOR_MIGRATION_IDENTITY_GROUP"]))
