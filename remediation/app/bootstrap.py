"""The one place that builds clients from settings.

Keyword overrides let tests pass stateful fakes for any outside system; everything not
overridden is the real SDK adapter. SDK modules are imported here, lazily, so that
importing `function_app` stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from remediation import telemetry
from remediation.app.migration_plans import MigrationPlanner, PlanReads
from remediation.app.migrations import Migrations
from remediation.app.service import RemediationService
from remediation.app.settings import (
    CHECK_QUEUE,
    INCIDENT_QUEUE,
    PUBLIC_AUTHORITY_HOST,
    TABLE_NAME,
    WORK_QUEUE,
    Settings,
)
from remediation.auth import ApiAuthenticator, TokenValidator
from remediation.decide.migration import ClusterDocuments
from remediation.decide.observation import Readers
from remediation.decide.reconcile import Reconciler
from remediation.intake.detection import DetectionConfig, IncidentDetector
from remediation.intake.health import FleetHealth
from remediation.ports import (
    ActivityLog,
    ClusterInventory,
    Directory,
    IncidentStore,
    ManagedClusters,
    ManagedIdentities,
    OutcomePublisher,
    RemediationStore,
    ResourceGroups,
    RoleAssignments,
    SecretStore,
    SignIn,
    WorkQueue,
)
from remediation.run.admission import Admission
from remediation.run.chain import WorkChain
from remediation.run.runner import RemediationRunner
from remediation.run.step import MigrationPorts, StepConfig

# Loggers of the SDKs underneath: azure-core's HTTP logging policy logs every request's and response's
# headers at INFO, and the Functions worker sets the root logger to INFO.
SDK_LOGGERS = ("azure", "httpx", "httpcore", "msal", "urllib3", "kiota_http", "kiota_authentication_azure")


@dataclass(frozen=True)
class Services:
    settings: Settings
    remediations: RemediationService
    detector: IncidentDetector
    api_auth: ApiAuthenticator
    health: FleetHealth
    migrations: MigrationPlanner


def quiet_sdk_loggers(level: str) -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(level)


def build_credential(settings: Settings) -> Any:
    """A client secret for local runs; the user-assigned managed identity in Azure."""
    if settings.client_secret:
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(
            settings.tenant_id, settings.client_id or "", settings.client_secret,
            authority=settings.authority_host,
            # Instance discovery asks the public cloud about the authority; a private authority has no entry.
            disable_instance_discovery=settings.authority_host != PUBLIC_AUTHORITY_HOST,
            connection_verify=settings.ca_bundle or True)
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=settings.client_id)


def build_outcomes(settings: Settings, credential: Any) -> OutcomePublisher:
    """The outcome topic's publisher, or one that publishes nothing when no topic is configured."""
    from remediation.adapters.outcomes import EventGridOutcomes, NoOutcomes

    if not settings.outcome_topic_endpoint:
        return NoOutcomes()
    endpoint = settings.outcome_topic_endpoint
    if not endpoint.endswith("/api/events"):  # the topic's endpoint property includes it; accept either
        endpoint += "/api/events"
    # The source names the remediator: its API application's URI is stable and unique per deployment.
    return EventGridOutcomes(endpoint, credential, source=settings.api_app_id_uri,
                             connection_verify=settings.ca_bundle or True)


def step_config(settings: Settings) -> StepConfig:
    """The steps' limits, as typed and defaulted by the settings table (durations are already timedeltas)."""
    return StepConfig(
        secret_lifetime=settings.secret_lifetime, poll_seconds=settings.reset_poll_seconds,
        retry_delay_seconds=settings.retry_delay_seconds, reset_timeout=settings.reset_timeout, lease=settings.lease,
        propagation_successes=settings.propagation_successes,
        propagation_interval_seconds=settings.propagation_interval_seconds,
        propagation_timeout=settings.propagation_timeout, retire_after=settings.retire_after,
        retire_foreign_passwords=settings.retire_foreign_passwords, guardrails=settings.guardrails,
        subscriptions=settings.subscription_ids, owner_id=settings.principal_id)


def bootstrap(
    settings: Settings | None = None,
    *,
    credential: Any = None,
    clusters: ManagedClusters | None = None,
    cluster_documents: ClusterDocuments | None = None,
    directory: Directory | None = None,
    vault: SecretStore | None = None,
    sign_in: SignIn | None = None,
    resource_groups: ResourceGroups | None = None,
    roles: RoleAssignments | None = None,
    store: RemediationStore | None = None,
    queue: WorkQueue | None = None,
    activity_log: ActivityLog | None = None,
    incidents: IncidentStore | None = None,
    lookups: WorkQueue | None = None,
    checks: WorkQueue | None = None,
    inventory: ClusterInventory | None = None,
    identities: ManagedIdentities | None = None,
    outcomes: OutcomePublisher | None = None,
    token_validator: TokenValidator | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ensure_storage: bool = True,
) -> Services:
    """Build the use cases; `ensure_storage` creates the table and queues if missing (one call each)."""
    settings = settings or Settings.from_env()
    quiet_sdk_loggers(settings.sdk_log_level)
    telemetry.configure(settings.appinsights_connection_string)
    verify: str | bool = settings.ca_bundle or True
    if credential is None:
        credential = build_credential(settings)
    if clusters is None:
        from remediation.adapters.aks import AksManagedClusters

        clusters = AksManagedClusters(credential, endpoint=settings.arm_endpoint, connection_verify=verify)
    if directory is None:
        from remediation.adapters.graph import GraphDirectory

        directory = GraphDirectory(credential, endpoint=settings.graph_endpoint, ca_bundle=settings.ca_bundle)
    if vault is None:
        from remediation.adapters.keyvault import KeyVaultSecrets

        # The challenge names the vault's resource, which only a vault on a Key Vault domain can match;
        # a stand-in with its own CA is not checked.
        vault = KeyVaultSecrets(settings.key_vault_url, credential, connection_verify=verify,
                                verify_challenge_resource=settings.ca_bundle is None)
    if sign_in is None:
        from remediation.adapters.signin import EntraSignIn

        sign_in = EntraSignIn(tenant_id=settings.tenant_id, authority_host=settings.authority_host,
                              scope=f"{settings.arm_endpoint}/.default",
                              disable_instance_discovery=settings.authority_host != PUBLIC_AUTHORITY_HOST,
                              connection_verify=verify)
    if activity_log is None:
        from remediation.adapters.monitor import MonitorActivityLog

        activity_log = MonitorActivityLog(credential, endpoint=settings.arm_endpoint, connection_verify=verify)
    if None in (store, queue, incidents, lookups, checks):
        from remediation.adapters.storage import (
            StorageTarget,
            StorageWorkQueue,
            TableIncidentStore,
            TableRemediationStore,
        )

        target = StorageTarget(connection_string=settings.storage_connection_string,
                               table_endpoint=settings.table_service_uri, queue_endpoint=settings.queue_service_uri,
                               credential=credential)
        table = target.table(TABLE_NAME)
        if ensure_storage:
            TableRemediationStore(table).ensure_table()
        store = store or TableRemediationStore(table)
        incidents = incidents or TableIncidentStore(table)

        def work_queue(name: str) -> StorageWorkQueue:
            created = StorageWorkQueue(target.queue(name))
            if ensure_storage:
                created.ensure_queue()
            return created

        queue = queue or work_queue(WORK_QUEUE)
        lookups = lookups or work_queue(INCIDENT_QUEUE)
        checks = checks or work_queue(CHECK_QUEUE)
    assert store and queue and incidents and lookups and checks
    if resource_groups is None:
        from remediation.adapters.resources import ArmResourceGroups

        resource_groups = ArmResourceGroups(credential, endpoint=settings.arm_endpoint, connection_verify=verify)
    if inventory is None:
        from remediation.adapters.resourcegraph import ResourceGraphClusters

        inventory = ResourceGraphClusters(credential, endpoint=settings.arm_endpoint, connection_verify=verify)
    if roles is None:
        from remediation.adapters.roles import ArmRoleAssignments

        roles = ArmRoleAssignments(credential, endpoint=settings.arm_endpoint, connection_verify=verify)
    if cluster_documents is None:
        from remediation.adapters.resources import ArmClusterDocuments

        cluster_documents = ArmClusterDocuments(credential, endpoint=settings.arm_endpoint, connection_verify=verify)
    if outcomes is None:
        outcomes = build_outcomes(settings, credential)
    config = step_config(settings)
    chain = WorkChain(store=store, queue=queue, clock=clock)
    reconciler = Reconciler(Readers(clusters=clusters, directory=directory, store=store, incidents=incidents,
                                    vault=vault, sign_in=sign_in, resource_groups=resource_groups),
                            guardrails=settings.guardrails, owner_id=settings.principal_id,
                            stalled_after=config.stalled_after, clock=clock)
    admission = Admission(incidents=incidents, store=store, chain=chain, guardrails=settings.guardrails, clock=clock)
    plan_reads = PlanReads(clusters=cluster_documents, maintenance=clusters, roles=roles, directory=directory)
    moving: MigrationPorts | None = None
    if settings.guardrails.migration.enabled:  # the move's writes exist only in a deployment that enables them
        if identities is None:
            from remediation.adapters.resources import ArmManagedIdentities

            identities = ArmManagedIdentities(credential, endpoint=settings.arm_endpoint, connection_verify=verify)
        moving = MigrationPorts(identities=identities, moves=clusters, documents=cluster_documents)  # type: ignore[arg-type]
    runner = RemediationRunner(
        clusters=clusters, directory=directory, vault=vault, sign_in=sign_in, resource_groups=resource_groups,
        incidents=incidents, store=store, chain=chain, roles=roles, clock=clock, config=config, outcomes=outcomes,
        reconciler=reconciler, inventory=inventory, migration=moving)
    detector = IncidentDetector(
        activity_log=activity_log, incidents=incidents, lookups=lookups, reconciler=reconciler, admission=admission,
        clock=clock, config=DetectionConfig(lookup_delay_seconds=settings.lookup_delay_seconds,
                                            lookup_timeout=timedelta(minutes=settings.lookup_timeout_minutes)))
    if token_validator is None:
        from remediation.adapters.entra_tokens import EntraTokenValidator

        token_validator = EntraTokenValidator(authority_host=settings.authority_host, tenant_id=settings.tenant_id,
                                              audiences=(settings.api_client_id, settings.api_app_id_uri),
                                              ca_bundle=settings.ca_bundle)
    service = RemediationService(reconciler=reconciler, admission=admission, runner=runner, store=store,
                                 incidents=incidents,
                                 clusters=clusters, directory=directory, owner_id=settings.principal_id,
                                 subscriptions=settings.subscription_ids, scope=settings.guardrails.scope)
    moves = Migrations(clusters=clusters, resource_groups=resource_groups, store=store, admission=admission,
                       plans=plan_reads, guardrails=settings.guardrails, retire_after=settings.retire_after,
                       clock=clock) if moving is not None else None
    health = FleetHealth(inventory=inventory, directory=directory, reconciler=reconciler, admission=admission,
                         checks=checks,
                         guardrails=settings.guardrails, subscriptions=settings.subscription_ids, outcomes=outcomes,
                         migrate=moves.consider if moves is not None else None, clock=clock)
    # The migration plans read as the remediator (the clusters port also lists maintenance configurations).
    migrations = MigrationPlanner(reads=plan_reads, health=health, guardrails=settings.guardrails,
                                  retire_after=settings.retire_after, clock=clock)
    return Services(settings, service, detector, ApiAuthenticator(token_validator), health, migrations)
