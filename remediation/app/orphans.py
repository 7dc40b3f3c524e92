"""Applications the remediator left behind: owned by it, or holding passwords it minted, and used by no
cluster it can see. Reported with their credentials' end dates and the command to delete them; nothing
is deleted here (a deleted application takes its secret from whatever else still uses it).

Service principals outlive the clusters they were made for (Microsoft's AKS docs: a cluster's
deletion leaves its service principal behind), and a replacement leaves the new application
behind when it fails before a cluster moved to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from remediation.decide.guardrails import Scope
from remediation.errors import NotFoundError
from remediation.model import Application
from remediation.ports import Directory, ManagedClusters, RemediationStore
from remediation.run.step import PASSWORD_PREFIX

RECORDS_READ = 1000

OWNED = "owned by the remediator"
MINTED = "holds passwords the remediator minted"


@dataclass(frozen=True)
class Orphan:
    application: Application
    reasons: tuple[str, ...]
    subscriptions: tuple[str, ...] = field(default=())  # the ones searched for clusters that use it

    def view(self, now: datetime) -> dict[str, Any]:
        app = self.application
        return {
            "appId": app.app_id, "objectId": app.object_id, "displayName": app.display_name,
            "reasons": list(self.reasons),
            "passwords": [{"keyId": p.key_id, "displayName": p.display_name, "hint": p.hint,
                           "endDateTime": p.end.isoformat() if p.end else None,
                           "expired": p.end is not None and p.end <= now} for p in app.passwords],
            "usedByClustersIn": list(self.subscriptions),
            "deleteCommand": f"az ad app delete --id {app.app_id}",
        }


def find_orphans(*, directory: Directory, clusters: ManagedClusters, store: RemediationStore, owner_id: str,
                 subscriptions: tuple[str, ...], scope: Scope) -> list[Orphan]:
    """Candidates (owned, or named by the remediator's records and holding its passwords) less the applications
    any cluster in the subscriptions uses, as its service principal or its legacy Azure AD applications."""
    candidates: dict[str, tuple[Application, set[str]]] = {}
    for app in directory.list_owned_applications(owner_id) if owner_id else ():
        candidates[app.app_id.lower()] = (app, {OWNED})
    records = store.list_recent(limit=RECORDS_READ)
    minted_for = {a.lower() for r in records for a in (r.client_id, r.replacement.new_client_id) if a}
    for app_id in minted_for - set(candidates):
        try:
            candidates[app_id] = (directory.get_application_by_app_id(app_id), set())
        except NotFoundError:
            continue  # deleted already
    for app, reasons in candidates.values():
        if any((p.display_name or "").startswith(PASSWORD_PREFIX) for p in app.passwords):
            reasons.add(MINTED)
    # Searched: the subscriptions the remediator manages, or (with none configured) those its records name.
    searched = subscriptions or tuple(sorted({r.cluster.subscription_id.lower() for r in records}))
    used = {app_id for sub in searched if not scope.refusal_of_subscription(sub)
            for info in clusters.list_clusters(sub)
            for app_id in (info.client_id.lower(), (info.aad_server_app_id or "").lower(),
                           (info.aad_client_app_id or "").lower()) if app_id}
    return sorted((Orphan(app, tuple(sorted(reasons)), searched) for app_id, (app, reasons) in candidates.items()
                   if reasons and app_id not in used), key=lambda o: (o.application.display_name, o.application.app_id))
