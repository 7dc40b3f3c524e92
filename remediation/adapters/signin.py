"""Signing in as an application with a secret, through azure-identity, to learn Entra ID's verdict.

No permission needed: it is the application's own sign-in (client credentials grant). The
token is for Resource Manager and is thrown away; only whether Entra ID issued it matters.
"""

from __future__ import annotations

import re

from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import ClientSecretCredential

from remediation.adapters.clients import SDK_RETRY, RetrySettings
from remediation.errors import TransientError
from remediation.model import SecretText, SignInResult

_AADSTS = re.compile(r"AADSTS(\d{4,9})")
# Entra ID's answers that are not a verdict on the secret: try again later.
_NO_VERDICT = frozenset({"90033", "50196", "90002"})  # transient error, request loop throttling, tenant not found


class EntraSignIn:
    def __init__(self, *, tenant_id: str, authority_host: str, scope: str, disable_instance_discovery: bool,
                 connection_verify: str | bool = True, retry: RetrySettings = SDK_RETRY) -> None:
        self._tenant_id = tenant_id
        self._authority = authority_host
        self._scope = scope
        self._discovery_off = disable_instance_discovery
        self._verify = connection_verify
        self._retry = retry.client_options()  # for the token request, which azure-identity sends through azure-core

    def sign_in(self, app_id: str, secret: SecretText) -> SignInResult:
        # A new credential each time: azure-identity caches tokens per credential, and a cached token says
        # nothing about whether the secret signs in now.
        credential = ClientSecretCredential(self._tenant_id, app_id, secret.reveal(), authority=self._authority,
                                            disable_instance_discovery=self._discovery_off,
                                            connection_verify=self._verify, **self._retry)
        try:
            credential.get_token(self._scope)
        except ClientAuthenticationError as err:
            found = _AADSTS.search(str(err.message if hasattr(err, "message") else err))
            if found is None or found.group(1) in _NO_VERDICT:
                raise TransientError(f"Entra ID gave no verdict on the sign-in of {app_id}") from err
            return SignInResult(ok=False, code=f"AADSTS{found.group(1)}",
                                message=f"Entra ID refused the sign-in of {app_id} (AADSTS{found.group(1)})")
        except ServiceRequestError as err:
            raise TransientError(f"could not reach Entra ID to sign in as {app_id}: {err}") from err
        finally:
            credential.close()
        return SignInResult(ok=True)
