"""Who may do what on ARM: one answer for every ARM route and for Azure Resource Graph, so that both show a caller
the same resources.

An identity's own `arm_actions` (infra/'s custom roles, and the operator's `*`) hold in every subscription of the
world, as before, or only in its `arm_subscriptions` when it has them (the subscriptions infra/ assigns the custom
role on). On top of them, a role assignment (sandbox/authorization.py) of a built-in role in `GRANTING_ROLES`
grants that role's actions (their definitions: sandbox/rbac.py) at its scope and below, as Azure RBAC does: Reader
on one subscription lets an identity read that subscription's clusters, and no others'. Roles outside
`GRANTING_ROLES` grant nothing here (the sandbox serves no network, registry or storage resources to use them on),
and an assignment with an ABAC condition grants nothing either: a condition the sandbox does not evaluate must never
widen access (sandbox/rbac.py evaluates only the delegation template, which constrains role assignment writes, not
reads).

Pure functions over the state; callers hold no lock.
"""

from __future__ import annotations

import re
from functools import cache

from sandbox.rbac import BUILT_IN_ROLE_DEFINITIONS, BUILT_IN_ROLES
from sandbox.state import Application, SandboxState

# The built-in roles whose assignments grant ARM access here, with their Actions and NotActions (sandbox/rbac.py).
GRANTING_ROLES = ("Reader", "Contributor")
ROLE_ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    BUILT_IN_ROLES[name]: (BUILT_IN_ROLE_DEFINITIONS[BUILT_IN_ROLES[name]].actions,
                           BUILT_IN_ROLE_DEFINITIONS[BUILT_IN_ROLES[name]].not_actions) for name in GRANTING_ROLES}


def permits(state: SandboxState, caller: Application, action: str, scope: str) -> bool:
    """Whether `caller` may perform `action` at `scope` (a subscription, resource group or resource id)."""
    own = "*" in caller.arm_actions or action in caller.arm_actions
    if own and _own_actions_hold(caller, _subscription_of(scope)):
        return True
    return any(_grants(role, action) for role in _roles_over(state, caller, scope))


def reaches(state: SandboxState, caller: Application, subscription_id: str) -> bool:
    """Whether `caller` holds any ARM access in the subscription: its own actions (held everywhere), or a role
    assignment at or below the subscription (the sandbox has no scope above one). ARG answers AccessDenied when a
    query reaches none of the subscriptions it names."""
    if caller.arm_actions and _own_actions_hold(caller, subscription_id):
        return True
    prefix = f"/subscriptions/{subscription_id}".lower()
    with state.lock:
        return any(a.principal_id == caller.sp_object_id and a.condition is None
                   and a.role_definition_id in ROLE_ACTIONS and _within(a.scope.lower(), prefix)
                   for a in state.role_assignments.values())


def _own_actions_hold(caller: Application, subscription_id: str | None) -> bool:
    """Whether the caller's own actions hold in the subscription (a scope above every subscription: only when they
    hold in all)."""
    if caller.arm_subscriptions is None:
        return True
    return subscription_id is not None and subscription_id.lower() in caller.arm_subscriptions


def _subscription_of(scope: str) -> str | None:
    parts = scope.strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[0].lower() == "subscriptions" else None


def _roles_over(state: SandboxState, caller: Application, scope: str) -> list[str]:
    """The role definition GUIDs assigned to `caller`, without a condition, at `scope` or above it."""
    target = scope.lower().rstrip("/")
    with state.lock:
        return [a.role_definition_id for a in state.role_assignments.values()
                if a.principal_id == caller.sp_object_id and a.condition is None and _within(target, a.scope.lower())]


def _within(scope: str, ancestor: str) -> bool:
    """`scope` is `ancestor` or lies below it (path segments, case-insensitive: callers pass lower case)."""
    return scope == ancestor or scope.startswith(ancestor.rstrip("/") + "/")


def _grants(role: str, action: str) -> bool:
    actions, not_actions = ROLE_ACTIONS.get(role, ((), ()))
    return any(_pattern(a).match(action) for a in actions) and not any(_pattern(n).match(action) for n in not_actions)


@cache
def _pattern(wildcard: str) -> re.Pattern[str]:
    """An action pattern as Azure RBAC matches it: `*` stands for any characters, case-insensitively."""
    return re.compile("^" + ".*".join(re.escape(part) for part in wildcard.split("*")) + "$", re.IGNORECASE)
