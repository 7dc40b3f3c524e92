"""Application settings: declared once, read once, validated once.

`SETTINGS` is the single list of every app setting the code reads. The Bicep in
`infra/` sets each one marked `deployed`, and `local.settings.sample.json` lists them
all; a test keeps the three in step.

This module is the one place that names public-cloud hosts: they are the defaults of
the endpoint settings, which the Bicep fills from `environment()` for whichever cloud it
is deployed to. Every other module takes its endpoints from `Settings` (a test greps).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from remediation.decide.guardrails import Guardrails, Mode, OptOutTag, ProactiveRotation, Replacement, Scope, names
from remediation.errors import ConfigurationError

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

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class SettingSpec:
    name: str
    description: str
    default: str | None = None
    required: bool = False
    # False for settings only a local run uses (the sandbox's CA, a client secret).
    deployed: bool = True


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "AzureWebJobsStorage",
        "Storage connection string (local runs; Azure uses the __accountName form).",
        deployed=False,
    ),
    SettingSpec(
        "AzureWebJobsStorage__accountName",
        "Storage account for tables and queues, reached with the managed identity (public-cloud endpoints"
        " are derived from it when the service URIs below are not set).",
    ),
    SettingSpec(
        "AzureWebJobsStorage__tableServiceUri",
        "Table endpoint of that account (the host's identity-based form; cloud-aware, set by the Bicep).",
    ),
    SettingSpec(
        "AzureWebJobsStorage__queueServiceUri",
        "Queue endpoint of that account (the host's identity-based form; cloud-aware, set by the Bicep).",
    ),
    SettingSpec(
        "AZURE_CLIENT_ID",
        "Client id of the identity the remediator runs as (user-assigned managed identity in Azure).",
    ),
    SettingSpec(
        "AZURE_TENANT_ID",
        "Entra ID tenant of the clusters' service principals.",
        required=True,
    ),
    SettingSpec(
        "AZURE_CLIENT_SECRET",
        "Local runs only: client secret of the remediator's own app registration.",
        deployed=False,
    ),
    SettingSpec(
        "REMEDIATOR_KEY_VAULT_URL",
        "Key Vault that keeps every secret the remediator mints.",
        required=True,
    ),
    SettingSpec(
        "REMEDIATOR_ARM_ENDPOINT",
        "Azure Resource Manager endpoint; also the audience of its tokens.",
        default=PUBLIC_ARM_ENDPOINT,
    ),
    SettingSpec(
        "REMEDIATOR_GRAPH_ENDPOINT",
        "Microsoft Graph endpoint (without /v1.0); also the audience of its tokens.",
        default=PUBLIC_GRAPH_ENDPOINT,
    ),
    SettingSpec(
        "REMEDIATOR_AUTHORITY_HOST",
        "Entra ID authority host: where the remediator signs in, and the issuer of the tokens its API accepts.",
        default=PUBLIC_AUTHORITY_HOST,
    ),
    SettingSpec(
        "REMEDIATOR_API_CLIENT_ID",
        "Client id of the remediator API's Entra application: callers of the HTTP API present a token for it.",
        required=True,
    ),
    SettingSpec(
        "REMEDIATOR_API_APP_ID_URI",
        "Application ID URI of that application (tokens may name it as their audience); empty for api://<client id>.",
        default="",
    ),
    SettingSpec(
        "REMEDIATOR_CA_BUNDLE",
        "Local runs only: CA file to trust for the sandbox's HTTPS endpoints.",
        deployed=False,
    ),
    SettingSpec(
        "REMEDIATOR_SUBSCRIPTION_IDS",
        "Comma-separated subscriptions the remediator manages (its scope) and the timer sweeps; empty: any.",
        default="",
    ),
    SettingSpec(
        "REMEDIATOR_DENY_SUBSCRIPTION_IDS",
        "Comma-separated subscriptions never touched, whatever else allows them.",
        default="",
    ),
    SettingSpec(
        "REMEDIATOR_ALLOW_RESOURCE_GROUPS",
        "Comma-separated resource groups (a name, or <subscription id>/<name>) the remediator may act in; empty: any.",
        default="",
    ),
    SettingSpec(
        "REMEDIATOR_DENY_RESOURCE_GROUPS",
        "Comma-separated resource groups (a name, or <subscription id>/<name>) never touched.",
        default="",
    ),
    SettingSpec(
        "REMEDIATOR_OPT_OUT_TAG",
        "key=value: a cluster or resource group with this tag is left alone.",
        default="aks-sp-remediator=off",
    ),
    SettingSpec(
        "REMEDIATOR_MODE",
        "remediate: decide and act; observe: decide, plan and record, but write nothing to Azure.",
        default="remediate",
    ),
    SettingSpec(
        "REMEDIATOR_MAX_RESETS_PER_HOUR",
        "Most cluster resets started in any hour across the fleet (a reset re-images nodes).",
        default="20",
    ),
    SettingSpec(
        "REMEDIATOR_BREAKER_FAILURES",
        "Failed remediations of one cluster or application within the breaker window that stop further ones.",
        default="3",
    ),
    SettingSpec(
        "REMEDIATOR_BREAKER_WINDOW_HOURS",
        "The circuit breaker's window, in hours.",
        default="24",
    ),
    SettingSpec(
        "REMEDIATOR_REPLACE_DELETED",
        "plan: a cluster whose application was deleted gets a recorded plan (steps and az commands); replace: a new"
        " application and service principal with the old one's role assignments.",
        default="plan",
    ),
    SettingSpec(
        "REMEDIATOR_ASSIGNABLE_ROLE_IDS",
        "Comma-separated role definition GUIDs a replacement may be given (the condition of the remediator's role"
        " assignment administrator role, from the Bicep); a replacement needing another is planned, not started.",
        default="",
    ),
    SettingSpec(
        "REMEDIATOR_PRINCIPAL_ID",
        "Object id of the remediator's own service principal (its managed identity): owner of what it creates.",
        default="",
    ),
    SettingSpec(
        "REMEDIATOR_RETIRE_AFTER_HOURS",
        "Hours after every cluster is verified before the passwords a rotation replaced are removed; 0 keeps them.",
        default="24",
    ),
    SettingSpec(
        "REMEDIATOR_RETIRE_FOREIGN_PASSWORDS",
        "true to also remove unexpired passwords someone else added, once every cluster holds the new one.",
        default="false",
    ),
    SettingSpec(
        "REMEDIATOR_PROPAGATION_SUCCESSES",
        "Sign-ins in a row the new secret must pass before any cluster is reset with it.",
        default="3",
    ),
    SettingSpec(
        "REMEDIATOR_PROPAGATION_INTERVAL_SECONDS",
        "Seconds between those sign-ins.",
        default="10",
    ),
    SettingSpec(
        "REMEDIATOR_PROPAGATION_TIMEOUT_MINUTES",
        "How long to wait for the new secret to sign in before the rotation fails.",
        default="20",
    ),
    SettingSpec(
        "REMEDIATOR_SWEEP_SCHEDULE",
        "NCRONTAB schedule of the Activity Log sweep.",
        default="0 */15 * * * *",
    ),
    SettingSpec(
        "REMEDIATOR_HEALTH_SCHEDULE",
        "NCRONTAB schedule of the fleet credential health check (Resource Graph, Graph $batch; acts on what it finds).",
        default="0 0 6 * * *",
    ),
    SettingSpec(
        "REMEDIATOR_EXPIRY_WARNING_DAYS",
        "A secret ending within this many days is reported as expiring (and rotated, on opted-in clusters).",
        default="30",
    ),
    SettingSpec(
        "REMEDIATOR_ROTATE_TAG",
        "key=value: a cluster with this tag has its secret rotated ahead of expiry, inside its maintenance window.",
        default="aks-sp-remediator=rotate",
    ),
    SettingSpec(
        "REMEDIATOR_ROTATION_WINDOW",
        "The window for proactive rotation of clusters without an AKS planned maintenance configuration, such as"
        " 'Sat,Sun 01:00-05:00' or 'Mon-Fri 22:00-02:00 +01:00'; empty: such clusters are never rotated ahead.",
        default="",
    ),
    SettingSpec(
        "REMEDIATOR_OUTCOME_TOPIC_ENDPOINT",
        "Event Grid custom topic endpoint that receives outcome events (CloudEvents); empty: none are sent.",
        default="",
    ),
    SettingSpec(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "Application Insights connection string: the remediator's metrics and traces go there (OpenTelemetry);"
        " empty: none are exported.",
        default="",
    ),
    SettingSpec(
        "REMEDIATOR_SECRET_LIFETIME_DAYS",
        "Lifetime of a minted client secret, in days.",
        default="180",
    ),
    SettingSpec(
        "REMEDIATOR_RESET_POLL_SECONDS",
        "Seconds between looks at a running reset (no invocation waits on one; a queue message comes back).",
        default="30",
    ),
    SettingSpec(
        "REMEDIATOR_RETRY_DELAY_SECONDS",
        "Delay before a remediation step is tried again from the queue.",
        default="30",
    ),
    SettingSpec(
        "REMEDIATOR_LEASE_SECONDS",
        "How long one invocation holds a remediation; a worker that dies holding it is taken over after this.",
        default="300",
    ),
    SettingSpec(
        "REMEDIATOR_SDK_LOG_LEVEL",
        "Log level of the Azure SDKs' and httpx's own loggers (their HTTP logging writes every header set at INFO).",
        default="WARNING",
    ),
    SettingSpec(
        "REMEDIATOR_LOOKUP_DELAY_SECONDS",
        "Delay between looks for the Activity Log entry that explains a failure event.",
        default="60",
    ),
    SettingSpec(
        "REMEDIATOR_LOOKUP_TIMEOUT_MINUTES",
        "How long to keep looking for that entry before giving up on the event.",
        default="30",
    ),
    SettingSpec(
        "REMEDIATOR_RESET_TIMEOUT_MINUTES",
        "How long a reset may run before the remediation is marked failed.",
        default="120",
    ),
)

_SPECS = {spec.name: spec for spec in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Validated, typed settings. Build with `Settings.from_env()`."""

    tenant_id: str
    key_vault_url: str
    client_id: str | None = None
    # A local-run credential: kept out of repr so it never reaches a log line.
    client_secret: str | None = field(default=None, repr=False)
    storage_connection_string: str | None = None
    storage_account_name: str | None = None
    table_service_uri: str | None = None
    queue_service_uri: str | None = None
    arm_endpoint: str = PUBLIC_ARM_ENDPOINT
    graph_endpoint: str = PUBLIC_GRAPH_ENDPOINT
    authority_host: str = PUBLIC_AUTHORITY_HOST
    api_client_id: str = ""
    api_app_id_uri: str = ""
    ca_bundle: str | None = None
    subscription_ids: tuple[str, ...] = ()
    principal_id: str = ""
    sweep_schedule: str = "0 */15 * * * *"
    secret_lifetime_days: int = 180
    reset_poll_seconds: float = 30.0
    lease_seconds: float = 300.0
    sdk_log_level: str = "WARNING"
    retry_delay_seconds: float = 30.0
    reset_timeout_minutes: float = 120.0
    lookup_delay_seconds: float = 60.0
    lookup_timeout_minutes: float = 30.0
    guardrails: Guardrails = field(default_factory=Guardrails)
    retire_after_hours: float = 24.0
    retire_foreign_passwords: bool = False
    propagation_successes: int = 3
    propagation_interval_seconds: float = 10.0
    propagation_timeout_minutes: float = 20.0
    health_schedule: str = "0 0 6 * * *"
    outcome_topic_endpoint: str = ""
    appinsights_connection_string: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise ConfigurationError naming each problem."""
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            if value:
                return value
            spec = _SPECS[name]
            if spec.required:
                problems.append(f"{name} is required ({spec.description})")
            return spec.default

        def number(name: str) -> Any:
            raw = get(name)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                problems.append(f"{name} must be a number, got {raw!r}")
                return 0
            if value < 0:
                problems.append(f"{name} must not be negative, got {raw!r}")
            return value

        connection_string = get("AzureWebJobsStorage")
        account_name = get("AzureWebJobsStorage__accountName")
        table_uri, queue_uri = get("AzureWebJobsStorage__tableServiceUri"), get("AzureWebJobsStorage__queueServiceUri")
        if not connection_string and not account_name and not (table_uri and queue_uri):
            problems.append("set AzureWebJobsStorage (a connection string), AzureWebJobsStorage__tableServiceUri and"
                            " __queueServiceUri, or AzureWebJobsStorage__accountName")
        if account_name and not connection_string:
            table_uri = table_uri or f"https://{account_name}.table.{PUBLIC_STORAGE_SUFFIX}"
            queue_uri = queue_uri or f"https://{account_name}.queue.{PUBLIC_STORAGE_SUFFIX}"
        api_client_id = get("REMEDIATOR_API_CLIENT_ID") or ""
        subscriptions = tuple(s.strip().lower() for s in (get("REMEDIATOR_SUBSCRIPTION_IDS") or "").split(",")
                              if s.strip())

        def flag(name: str) -> bool:
            raw = (get(name) or "").lower()
            if raw not in ("true", "false"):
                problems.append(f"{name} must be true or false, got {raw!r}")
            return raw == "true"

        def whole(name: str) -> int:
            value = number(name)
            if value != int(value):
                problems.append(f"{name} must be a whole number, got {value!r}")
            return int(value)

        try:
            opt_out = OptOutTag.parse(get("REMEDIATOR_OPT_OUT_TAG") or "")
        except ValueError as err:
            problems.append(f"REMEDIATOR_OPT_OUT_TAG: {err}")
            opt_out = OptOutTag()
        mode_text = (get("REMEDIATOR_MODE") or "").lower()
        if mode_text not in {m.value for m in Mode}:
            problems.append(f"REMEDIATOR_MODE must be remediate or observe, got {mode_text!r}")
            mode_text = Mode.REMEDIATE.value
        replacement = (get("REMEDIATOR_REPLACE_DELETED") or "").lower()
        if replacement not in {r.value for r in Replacement}:
            problems.append(f"REMEDIATOR_REPLACE_DELETED must be plan or replace, got {replacement!r}")
            replacement = Replacement.PLAN.value
        assignable = names(get("REMEDIATOR_ASSIGNABLE_ROLE_IDS") or "")
        if bad := sorted(r for r in assignable if not _GUID.match(r)):
            problems.append(f"REMEDIATOR_ASSIGNABLE_ROLE_IDS holds role definition GUIDs, got {bad[0]!r}")
        try:
            opt_in = OptOutTag.parse(get("REMEDIATOR_ROTATE_TAG") or "")
        except ValueError as err:
            problems.append(f"REMEDIATOR_ROTATE_TAG: {err}")
            opt_in = OptOutTag("aks-sp-remediator", "rotate")
        from remediation.decide.maintenance import parse_window_setting  # settings are read once, at bootstrap

        try:
            window = parse_window_setting(get("REMEDIATOR_ROTATION_WINDOW") or "")
        except ConfigurationError as err:
            problems.append(f"REMEDIATOR_ROTATION_WINDOW: {err}")
            window = None
        rotation = ProactiveRotation(opt_in=opt_in, within=timedelta(days=whole("REMEDIATOR_EXPIRY_WARNING_DAYS")),
                                     window=window)
        guardrails = Guardrails(
            scope=Scope(subscriptions=frozenset(s.lower() for s in subscriptions),
                        deny_subscriptions=names(get("REMEDIATOR_DENY_SUBSCRIPTION_IDS") or ""),
                        resource_groups=names(get("REMEDIATOR_ALLOW_RESOURCE_GROUPS") or ""),
                        deny_resource_groups=names(get("REMEDIATOR_DENY_RESOURCE_GROUPS") or "")),
            opt_out=opt_out, mode=Mode(mode_text),
            max_resets_per_hour=whole("REMEDIATOR_MAX_RESETS_PER_HOUR"),
            breaker_failures=whole("REMEDIATOR_BREAKER_FAILURES"),
            breaker_window=timedelta(hours=number("REMEDIATOR_BREAKER_WINDOW_HOURS")),
            replacement=Replacement(replacement), assignable_roles=assignable, rotation=rotation)
        settings = cls(
            tenant_id=get("AZURE_TENANT_ID") or "",
            key_vault_url=(get("REMEDIATOR_KEY_VAULT_URL") or "").rstrip("/"),
            client_id=get("AZURE_CLIENT_ID"),
            client_secret=get("AZURE_CLIENT_SECRET"),
            storage_connection_string=connection_string,
            storage_account_name=account_name,
            table_service_uri=(table_uri or "").rstrip("/") or None,
            queue_service_uri=(queue_uri or "").rstrip("/") or None,
            arm_endpoint=(get("REMEDIATOR_ARM_ENDPOINT") or "").rstrip("/"),
            graph_endpoint=(get("REMEDIATOR_GRAPH_ENDPOINT") or "").rstrip("/"),
            authority_host=(get("REMEDIATOR_AUTHORITY_HOST") or "").rstrip("/"),
            api_client_id=api_client_id,
            api_app_id_uri=(get("REMEDIATOR_API_APP_ID_URI") or f"api://{api_client_id}").rstrip("/"),
            ca_bundle=get("REMEDIATOR_CA_BUNDLE"),
            subscription_ids=subscriptions,
            principal_id=(get("REMEDIATOR_PRINCIPAL_ID") or "").lower(),
            sweep_schedule=get("REMEDIATOR_SWEEP_SCHEDULE") or "",
            secret_lifetime_days=int(number("REMEDIATOR_SECRET_LIFETIME_DAYS")),
            reset_poll_seconds=number("REMEDIATOR_RESET_POLL_SECONDS"),
            lease_seconds=number("REMEDIATOR_LEASE_SECONDS"),
            sdk_log_level=(get("REMEDIATOR_SDK_LOG_LEVEL") or "").upper(),
            retry_delay_seconds=number("REMEDIATOR_RETRY_DELAY_SECONDS"),
            reset_timeout_minutes=number("REMEDIATOR_RESET_TIMEOUT_MINUTES"),
            lookup_delay_seconds=number("REMEDIATOR_LOOKUP_DELAY_SECONDS"),
            lookup_timeout_minutes=number("REMEDIATOR_LOOKUP_TIMEOUT_MINUTES"),
            guardrails=guardrails,
            retire_after_hours=number("REMEDIATOR_RETIRE_AFTER_HOURS"),
            retire_foreign_passwords=flag("REMEDIATOR_RETIRE_FOREIGN_PASSWORDS"),
            propagation_successes=whole("REMEDIATOR_PROPAGATION_SUCCESSES"),
            propagation_interval_seconds=number("REMEDIATOR_PROPAGATION_INTERVAL_SECONDS"),
            propagation_timeout_minutes=number("REMEDIATOR_PROPAGATION_TIMEOUT_MINUTES"),
            health_schedule=get("REMEDIATOR_HEALTH_SCHEDULE") or "",
            outcome_topic_endpoint=(get("REMEDIATOR_OUTCOME_TOPIC_ENDPOINT") or "").rstrip("/"),
            appinsights_connection_string=get("APPLICATIONINSIGHTS_CONNECTION_STRING") or "",
        )
        if settings.sdk_log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            problems.append(f"REMEDIATOR_SDK_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got"
                            f" {settings.sdk_log_level!r}")
        if settings.lease_seconds < 1 and not problems:
            problems.append("REMEDIATOR_LEASE_SECONDS must be at least 1")
        if settings.secret_lifetime_days < 1 and not problems:
            problems.append("REMEDIATOR_SECRET_LIFETIME_DAYS must be at least 1")
        if problems:
            raise ConfigurationError("invalid settings: " + "; ".join(problems))
        return settings
