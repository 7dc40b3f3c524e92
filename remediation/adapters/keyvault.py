"""Secrets in Key Vault through azure-keyvault-secrets.

Permission: the `Key Vault Secrets Officer` data role on this vault only
(secrets/set, secrets/get, secrets/readMetadata).
"""

from __future__ import annotations

from datetime import datetime

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

from remediation.adapters.azure_errors import translate
from remediation.adapters.clients import SDK_RETRY, RetrySettings
from remediation.model import SecretText, StoredSecretVersion


class KeyVaultSecrets:
    def __init__(self, vault_url: str, credential: TokenCredential, *, connection_verify: str | bool = True,
                 verify_challenge_resource: bool = True, retry: RetrySettings = SDK_RETRY) -> None:
        self._client = SecretClient(vault_url, credential, connection_verify=connection_verify,
                                    verify_challenge_resource=verify_challenge_resource, **retry.client_options())

    def set_secret(self, name: str, value: SecretText, *, tags: dict[str, str], content_type: str,
                   expires: datetime) -> StoredSecretVersion:
        try:
            secret = self._client.set_secret(name, value.reveal(), tags=tags, content_type=content_type,
                                             expires_on=expires)
        except AzureError as err:
            raise translate(err, f"storing secret {name}") from err
        return StoredSecretVersion(name=secret.name or name, version=secret.properties.version or "",
                                   tags=dict(secret.properties.tags or {}), expires=secret.properties.expires_on)

    def get_secret(self, name: str, version: str) -> SecretText:
        try:
            secret = self._client.get_secret(name, version)
        except AzureError as err:
            raise translate(err, f"reading secret {name}/{version}") from err
        return SecretText(secret.value or "")

    def list_versions(self, name: str) -> list[StoredSecretVersion]:
        try:
            return [
                StoredSecretVersion(name=p.name or name, version=p.version or "", tags=dict(p.tags or {}),
                                    expires=p.expires_on)
                for p in self._client.list_properties_of_secret_versions(name)
            ]
        except ResourceNotFoundError:
            return []
        except AzureError as err:
            raise translate(err, f"listing versions of secret {name}") from err
