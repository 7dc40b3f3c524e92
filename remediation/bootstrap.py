"""The one place that builds clients from settings.

Keyword overrides let tests pass stateful fakes for any outside system; everything not
overridden is the real SDK adapter. SDK modules are imported here, lazily, so that
importing `function_app` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from remediation.auth import ApiAuthenticator, TokenValidator
from remediation.detection import DetectionConfig, IncidentDetector
from remediation.ports import (
    ActivityLog,
    Directory,
    IncidentStore,
    ManagedClusters,
    RemediationStore,
    SecretStore,
    WorkQueue,
)
from remediation.service import Remediator, RemediatorConfig
from remediation.settings import INCIDENT_QUEUE, PUBLIC_AUTHORITY_HOST, TABLE_NAME, WORK_QUEUE, Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    remediator: Remediator
    detector: IncidentDetector
    api_auth: ApiAuthenticator


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


def bootstrap(
    settings: Settings | None = None,
    *,
    credential: Any = None,
    clusters: ManagedClusters | None = None,
    directory: Directory | None = None,
    vault: SecretStore | None = None,
    store: RemediationStore | None = None,
    queue: WorkQueue | None = None,
    activity_log: ActivityLog | None = None,
    incidents: IncidentStore | None = None,
    lookups: WorkQueue | None = None,
    token_validator: TokenValidator | None = None,
    ensure_storage: bool = True,
) -> Services:
    """Build the use cases; `ensure_storage` creates the table and queues if missing (one call each)."""
    settings = settings or Settings.from_env()
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
    if activity_log is None:
        from remediation.adapters.monitor import MonitorActivityLog

        activity_log = MonitorActivityLog(credential, endpoint=settings.arm_endpoint, connection_verify=verify)
    if None in (store, queue, incidents, lookups):
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
    remediator = Remediator(
        clusters=clusters, directory=directory, vault=vault, store=store, queue=queue,
        config=RemediatorConfig(
            secret_lifetime=timedelta(days=settings.secret_lifetime_days),
            reset_wait_seconds=settings.reset_wait_seconds,
            retry_delay_seconds=settings.retry_delay_seconds,
            reset_timeout=timedelta(minutes=settings.reset_timeout_minutes)))
    detector = IncidentDetector(
        activity_log=activity_log, incidents=incidents, lookups=lookups, clusters=clusters, directory=directory,
        remediator=remediator,
        config=DetectionConfig(lookup_delay_seconds=settings.lookup_delay_seconds,
                               lookup_timeout=timedelta(minutes=settings.lookup_timeout_minutes)))
    if token_validator is None:
        from remediation.adapters.entra_tokens import EntraTokenValidator

        token_validator = EntraTokenValidator(authority_host=settings.authority_host, tenant_id=settings.tenant_id,
                                              audiences=(settings.api_client_id, settings.api_app_id_uri),
                                              ca_bundle=settings.ca_bundle)
    return Services(settings, remediator, detector, ApiAuthenticator(token_validator))
