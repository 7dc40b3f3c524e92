"""Point the remediator at a running sandbox and Azurite: the app settings a local run uses."""

from __future__ import annotations

from typing import Any

from sandbox.rbac import BUILT_IN_ROLES

# main.bicep's assignableRoleIds default: what an AKS service principal typically holds on its subnet, registry and
# private DNS zone.
DEFAULT_ASSIGNABLE_ROLE_IDS = tuple(BUILT_IN_ROLES[name] for name in
                                    ("Network Contributor", "AcrPull", "Private DNS Zone Contributor"))


# The new secret tested twice, a second apart: for harnesses that replay many rotations (crashes, storms) and
# measure what they end in, not what one costs.
FAST_PROPAGATION = {"REMEDIATOR_PROPAGATION_SUCCESSES": "2", "REMEDIATOR_PROPAGATION_INTERVAL_SECONDS": "1"}


def remediator_settings(sandbox: Any, storage_connection: str, **overrides: str) -> dict[str, str]:
    """The same settings `local.settings.json` holds, filled in for this sandbox.

    The waits a repair costs are production's, so a local run's figures are what Azure would cost: the first look
    at a reset and the next come when ARM's `Retry-After` says (the sandbox's ARM sends 1 s, its reset takes 0.5 s),
    and the new secret is tested by production's propagation policy (REMEDIATOR_PROPAGATION_SUCCESSES sign-ins,
    REMEDIATOR_PROPAGATION_INTERVAL_SECONDS apart). Harnesses that replay many rotations and are not about their
    cost pass `FAST_PROPAGATION`. Unlike production, the backoff after a failed reset is one second instead of 30,
    and the replaced passwords are kept (below). The sweep
    schedule is the sample's: the timer's binding names it (`%REMEDIATOR_SWEEP_SCHEDULE%`), and the host, like the
    runner, does not index a function whose binding names a missing setting. Every subscription of the sandbox is
    in scope.
    """
    return {
        "AzureWebJobsStorage": storage_connection,
        "AZURE_TENANT_ID": sandbox.tenant_id,
        "AZURE_CLIENT_ID": sandbox.remediator.client_id,
        "AZURE_CLIENT_SECRET": sandbox.remediator.client_secret,
        "REMEDIATOR_KEY_VAULT_URL": sandbox.endpoints["vault"],
        "REMEDIATOR_ARM_ENDPOINT": sandbox.endpoints["arm"],
        "REMEDIATOR_GRAPH_ENDPOINT": sandbox.endpoints["graph"],
        "REMEDIATOR_AUTHORITY_HOST": sandbox.endpoints["login"],
        "REMEDIATOR_API_CLIENT_ID": sandbox.api_client_id,
        "REMEDIATOR_API_APP_ID_URI": sandbox.api_app_id_uri,
        "REMEDIATOR_CA_BUNDLE": sandbox.ca_path,
        "REMEDIATOR_SUBSCRIPTION_IDS": ",".join(sandbox.subscription_ids),
        "REMEDIATOR_SWEEP_SCHEDULE": "0 */15 * * * *",
        "REMEDIATOR_HEALTH_SCHEDULE": "0 0 6 * * *",
        "REMEDIATOR_OUTCOME_TOPIC_ENDPOINT": f"{sandbox.endpoints['topic']}/api/events",
        "REMEDIATOR_RETRY_DELAY_SECONDS": "1",
        # The replaced passwords kept, so a local rotation ends when its clusters are verified instead of a day
        # later (pass overrides to see retirement).
        "REMEDIATOR_RETIRE_AFTER_HOURS": "0",
        # What infra/ sets from the identity's principal id and main.bicep's assignableRoleIds default.
        "REMEDIATOR_PRINCIPAL_ID": sandbox.state.applications[sandbox.remediator.client_id].sp_object_id,
        "REMEDIATOR_ASSIGNABLE_ROLE_IDS": ",".join(DEFAULT_ASSIGNABLE_ROLE_IDS),
        **overrides,
    }
