"""`python -m remediation migrate plan`: the plan to move service-principal clusters to managed identity
(remediation/decide/migration.py), computed on the operator's machine with the operator's own sign-in (`az login`, or
the sandbox's operator with --sandbox). Nothing is written to Azure: the plan reads the cluster, its service
principal (Graph), the principal's role assignments and the cluster's maintenance configurations. The planning itself
is remediation/app/migration_plans.py's, shared with the HTTP API (`GET /api/clusters/migration-plan`,
`GET /api/migration-plans`, which read as the remediator's identity; `migrate plans` fetches the latter).

Why also locally: the operator may read role assignments where the remediator's identity may not (a network in a
subscription the deployment was not given), and it is the operator who runs the plan's commands; so it reads as the
operator, the way `doctor` does. The guardrails it checks (REMEDIATOR_ASSIGNABLE_ROLE_IDS, the deny lists,
REMEDIATOR_ROTATION_WINDOW, REMEDIATOR_RETIRE_AFTER_HOURS) are read from the environment, as the deployment's
settings name them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from remediation.app.migration_plans import PlanReads, plan_clusters
from remediation.decide.guardrails import Guardrails
from remediation.decide.migration import NOT_APPLICABLE
from remediation.errors import NotFoundError
from remediation.ids import ClusterId

USED_SETTINGS = ("REMEDIATOR_ASSIGNABLE_ROLE_IDS", "REMEDIATOR_DENY_SUBSCRIPTION_IDS",
                 "REMEDIATOR_DENY_RESOURCE_GROUPS", "REMEDIATOR_ALLOW_RESOURCE_GROUPS", "REMEDIATOR_SUBSCRIPTION_IDS",
                 "REMEDIATOR_ROTATION_WINDOW", "REMEDIATOR_RETIRE_AFTER_HOURS")


class SettingsError(Exception):
    """A setting the plan reads is malformed."""


def guardrails_from(environ: Mapping[str, str]) -> tuple[Guardrails, Any]:
    """The guardrails and the retirement grace as the deployment's settings give them (the same parsers)."""
    from remediation.app.settings import _guardrails, _read

    values, problems = _read(environ)
    bad = [p for p in problems if p.startswith(USED_SETTINGS)]
    if bad:
        raise SettingsError("; ".join(bad))
    return _guardrails(values), values["REMEDIATOR_RETIRE_AFTER_HOURS"]


def readers(*, credential: Any, arm: str, graph: str, verify: str | bool) -> PlanReads:
    from remediation.adapters.aks import AksManagedClusters
    from remediation.adapters.graph import GraphDirectory
    from remediation.adapters.resources import ArmClusterDocuments
    from remediation.adapters.roles import ArmRoleAssignments

    return PlanReads(ArmClusterDocuments(credential, endpoint=arm, connection_verify=verify),
                     AksManagedClusters(credential, endpoint=arm, connection_verify=verify),
                     ArmRoleAssignments(credential, endpoint=arm, connection_verify=verify),
                     GraphDirectory(credential, endpoint=graph, ca_bundle=verify if isinstance(verify, str) else None))


def targets(given: Sequence[str], subscriptions: Sequence[str], aks: Any) -> list[ClusterId]:
    """The clusters named, then every service-principal cluster of each subscription given."""
    found = [ClusterId.parse(c) for c in given]
    for subscription in subscriptions:
        for info in aks.list_clusters(subscription):
            if not info.uses_managed_identity:
                found.append(ClusterId.parse(info.id))
    return list(dict.fromkeys(found))


def plan_all(clusters: Sequence[ClusterId], reads: PlanReads, guardrails: Guardrails, *, retire_after: Any,
             identity_group: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Every cluster's plan, with the counts; the result `-o json` prints."""
    return plan_clusters(clusters, reads, guardrails, retire_after=retire_after, identity_group=identity_group,
                         now=now).view()


def render(result: Mapping[str, Any]) -> str:
    """The plans as text: per cluster its status, identities, roles, blockers, window, commands and what follows."""
    lines: list[str] = []
    for plan in result.get("value", ()):
        lines.append(f"{plan['cluster']}")
        lines.append(f"  status: {plan['status']} - {plan['reason']}")
        if plan["status"] == NOT_APPLICABLE:
            lines.append("")
            continue
        lines.append(f"  control-plane identity: {plan['controlPlaneIdentity']}"
                     + (f" (required: {plan['userAssignedWhy']})" if plan.get("userAssignedWhy") else ""))
        lines.append(f"  kubelet identity: {plan['kubeletIdentity']}")
        for role in plan["roles"]:
            held = f"{role['heldRole']} -> " if role.get("heldRole") else ""
            mark = f"  BLOCKED {role['blocker']}: {role['blockerReason']}" if role.get("blocker") else ""
            lines.append(f"  {role['identity']:<12} {held}{role['grantRole']} on {role['scope']}{mark}")
        for item in plan.get("leftAlone", ()):
            lines.append(f"  left alone: {item['role']} on {item['scope']} ({item['why']})")
        for item in plan.get("unread", ()):
            lines.append(f"  NOT READ {item['what']} at {item['scope']}: {item['code']}")
        window = plan.get("window") or {}
        lines.append(f"  window: {window.get('description') or window.get('error') or 'none'}"
                     + (f"; next opening {window['nextOpening']}" if window.get("nextOpening") else ""))
        lines.append("  commands:")
        lines.extend(f"    {command}" for command in plan["commands"])
        lines.append("  disruption:")
        lines.extend(f"    - {item}" for item in plan["disruption"])
        lines.append("  afterwards:")
        lines.extend(f"    - {item}" for item in plan["afterwards"])
        lines.append("")
    for failure in result.get("errors", ()):
        lines.extend([f"{failure['cluster']}", f"  not planned: {failure['code']}: {failure['message']}", ""])
    counts = result.get("counts", {})
    report = result.get("healthReport")
    lines.append(f"{len(result.get('value', ()))} cluster(s): {counts.get('ready', 0)} ready, "
                 f"{counts.get('blocked', 0)} blocked, {counts.get(NOT_APPLICABLE, 0)} already managed identity"
                 + (f", {len(result['errors'])} not planned" if result.get("errors") else "")
                 + (f" (from the health report of {report['generatedAt']})" if report else "")
                 + f"; nothing was written ({result.get('seconds', 0)} s).")
    return "\n".join(lines) + "\n"


def run(args: Any, *, sandbox_azure: Any, azure_credential: Any, usage_error: type[Exception]) -> dict[str, Any]:
    """`migrate plan`'s work, for the edge in commands.py."""
    from remediation.app.settings import PUBLIC_ARM_ENDPOINT, PUBLIC_GRAPH_ENDPOINT

    if not args.cluster_ids and not args.subscription:
        raise usage_error("name a cluster (its ARM resource id) or --subscription ID")
    try:
        guardrails, retire_after = guardrails_from(os.environ)
    except SettingsError as err:
        raise usage_error(str(err)) from err
    if args.sandbox:
        if args.credential:
            raise usage_error("--sandbox names the identity: drop --credential")
        sandbox = sandbox_azure(Path(args.sandbox))
        reads = readers(credential=sandbox.credential, arm=sandbox.arm, graph=sandbox.graph, verify=sandbox.ca)
    else:
        reads = readers(credential=azure_credential(args.credential or "cli"), arm=PUBLIC_ARM_ENDPOINT,
                        graph=PUBLIC_GRAPH_ENDPOINT, verify=True)
    try:
        clusters = targets(args.cluster_ids, args.subscription or (), reads.maintenance)
        return plan_all(clusters, reads, guardrails, retire_after=retire_after, identity_group=args.identity_group)
    except NotFoundError as err:
        raise usage_error(f"not found: {err}") from err
