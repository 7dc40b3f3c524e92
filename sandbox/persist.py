"""The sandbox's state on disk, so that `python -m sandbox serve --state-dir DIR` restarts where it stopped,
also after a SIGKILL: same tenant, ids, ports, CA, subscriptions, resource groups (with their tags), applications
(with their secrets, deleted ones too, uniqueName, api, appRoles, Graph permissions and directory roles), role
assignments, clusters (with their tags, write counts, legacy Azure AD profiles and maintenance configurations), function
apps (with their app settings), Event Grid system topics and their event subscriptions, the cloud's name, the Flex
Consumption regions, vault, Activity Log, tokens, operations in progress, clock offset and faults.

Layout of DIR (0700; every file but the CA certificate 0600, since they hold secret text or keys):

- `state.<n>.json`: the world of a fixed size (ids, subscriptions, resource groups, applications without
  passwords, deleted applications, role assignments, clusters, function apps with their app settings, system
  topics, the cloud's name and Flex regions, counts, faults, clock), generation n. After every
  request that changed anything, generation n+1 is written to a temporary file, renamed into place, and n
  deleted: a restart takes the newest generation, which is always whole. (Renamed onto a fresh name, not over
  the old file: ext4 flushes a file renamed over another, 0.3-1 ms a save instead of 0.08 ms.)
- What grows, appended as it happens, so that a save costs the same in a world of any age:
  `passwords.jsonl` (with their text), `removed.jsonl` (removed passwords, as the state shows them),
  `vault.jsonl` (each set, attribute update or delete of a secret version), `activity.jsonl`,
  `tokens.jsonl` (token hashes, never tokens), `operations.jsonl` (each change of an operation; the
  last line of an id wins). Appended before the generation is renamed into place, which records how
  many bytes of each it covers, so lines whose generation never landed are dropped on load.
- `sandbox-ca.pem` (the CA clients trust), `server.pem` (the servers' key and certificate chain),
  `identities.json` (written by `serve`), `lock` (one sandbox per directory).

No fsync: the files survive the sandbox's death (the kernel holds the writes), not the machine's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.directory import app_role
from sandbox.state import (
    DEFAULT_CLOUD_NAME,
    DEFAULT_FLEX_REGIONS,
    LOCATION,
    Application,
    Cluster,
    Fault,
    FunctionSite,
    Identities,
    Identity,
    LegacyAadProfile,
    MemberUser,
    Operation,
    Password,
    ResourceGroup,
    RoleAssignment,
    SandboxState,
    SecretVersion,
    Subscription,
    SystemTopic,
    SystemTopicSubscription,
    default_api,
)

# 2: subscriptions, resource groups, cluster subscriptions, tags and write counts. A format 1 directory (one
# subscription, no groups) still loads: what it lacks is filled in as that world had it.
# 3: applications' Graph permissions as a list, service principals made later, deleted applications, role
# assignments, legacy Azure AD profiles, node resource groups and subnets. A format 2 directory loads as a world
# without them (its applications' one permission becomes a list of one).
# 4: applications' uniqueName, api, appRoles (the full objects; format 3 kept value -> id), signInAudience and
# directory roles; the cloud's name, the Flex Consumption regions, function apps and Event Grid system topics. A
# format 3 directory loads with none of them: no directory roles, Graph's defaults, the default cloud and regions.
FORMAT = 4
READABLE_FORMATS = (1, 2, 3, 4)
LOGS = ("passwords", "removed", "vault", "activity", "tokens", "operations")  # in the order they are replayed


class StateDirLocked(RuntimeError):
    """Another sandbox serves from this state directory."""


class StateStore:
    """One state directory. `load()` once, then `attach()` a state: from then on `save()` writes it through."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_file = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:  # released by the kernel when the process dies, SIGKILL included
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(self._lock_file)
            raise StateDirLocked(f"another sandbox is serving from {self.directory}") from err
        self._save_lock = threading.Lock()
        self._logs: dict[str, int] = {}  # log name -> append-only descriptor
        self._sizes: dict[str, int] = dict.fromkeys(LOGS, 0)  # bytes of each log that the newest generation covers
        self._meta: dict[str, Any] = {}
        self._loaded = False
        self._last = b""
        self._key_pem: tuple[rsa.RSAPrivateKey, str] | None = None
        self._generation = 0

    def path(self, name: str) -> Path:
        return self.directory / name

    def _state_file(self, generation: int) -> Path:
        return self.path(f"state.{generation}.json")

    def _generations(self) -> list[int]:
        found = (p.name.split(".")[1] for p in self.directory.glob("state.*.json"))
        return sorted(int(n) for n in found if n.isdigit())

    # ------------------------------------------------------------------ loading

    def load(self) -> tuple[SandboxState, dict[str, Any]] | None:
        """The saved state and what else the sandbox saved with it (`attach`'s meta), or None in a new directory."""
        generations = self._generations()
        for stale in generations[:-1]:  # a kill between a rename and its unlink
            self._state_file(stale).unlink(missing_ok=True)
        for temporary in self.directory.glob("state.*.json.tmp"):  # a kill mid-write
            temporary.unlink(missing_ok=True)
        if not generations:
            return None
        self._generation = generations[-1]
        saved = json.loads(self._state_file(self._generation).read_bytes())
        if saved.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{self._state_file(self._generation)} has format {saved.get('format')!r}; this sandbox "
                             f"reads {', '.join(map(str, READABLE_FORMATS))}")
        state = _load_state(saved)
        for name in LOGS:
            for record in self._read_log(name, saved["logs"][name]):
                _replay(state, name, record)
        self._loaded = True
        return state, saved["meta"]

    def _read_log(self, name: str, size: int) -> list[Any]:
        """The first `size` bytes of a log, parsed; the file is cut there (the rest never made it into a generation)."""
        path = self.path(f"{name}.jsonl")
        with contextlib.suppress(FileNotFoundError):
            with path.open("r+b") as file:
                data = file.read(size)
                file.truncate(size)
            self._sizes[name] = len(data)
            return [json.loads(line) for line in data.splitlines() if line]
        return []

    # ------------------------------------------------------------------ saving

    def attach(self, state: SandboxState, meta: dict[str, Any]) -> None:
        """Write `state` through from now on (each `state.commit()`), with `meta` (scenario, identities, ports)."""
        self._meta = meta
        # A loaded world's logs hold it already (cut to what its generation covers); a new world's start empty.
        fresh = 0 if self._loaded else os.O_TRUNC
        for name in LOGS:
            self._logs[name] = os.open(self.path(f"{name}.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT | fresh,
                                       0o600)
        with state.lock:
            state.journal = []
            if not self._loaded:
                every = [*state.applications.values(), *state.deleted_applications.values()]
                state.journal += [("passwords", (a.app_id, p)) for a in every for p in a.passwords]
                state.journal += [("passwords", (a.app_id, p, "servicePrincipal")) for a in every
                                  for p in a.sp_passwords]
                state.journal += [("removed", (a.app_id, r)) for a in every for r in a.removed_passwords]
                state.journal += [("vault", ("set", name, v)) for name, versions in state.vault.items()
                                  for v in versions]
                state.journal += [("activity", e) for e in state.activity_log]
                state.journal += [("tokens", (k, *v)) for k, v in state.tokens.items()]
                state.journal += [("operations", o) for o in state.operations.values()]
            state.store = self
        self.save(state)

    def save(self, state: SandboxState) -> None:
        # The save lock keeps the files in the order the state changed; the state lock is held only to serialise
        # (the objects are live), not to write.
        with self._save_lock:
            with state.lock:
                pending, state.journal = state.journal or [], []
                lines: dict[str, list[bytes]] = {name: [] for name in LOGS}
                for name, item in pending:
                    lines[name].append(_compact(_log_record(name, item)) + b"\n")
                chunks = {name: b"".join(found) for name, found in lines.items()}
                sizes = {name: self._sizes[name] + len(chunks[name]) for name in LOGS}
                record = _dump_state(state, self._signing_key_pem(state.signing_key))
                data = _compact({"format": FORMAT, **record, "meta": self._meta, "logs": sizes})
            for name, chunk in chunks.items():
                if chunk:
                    _write_all(self._logs[name], chunk)
            self._sizes = sizes
            if data == self._last:
                return
            generation = self._generation + 1
            temporary = self.path(f"state.{generation}.json.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(descriptor, data)
            finally:
                os.close(descriptor)
            os.rename(temporary, self._state_file(generation))
            self._state_file(self._generation).unlink(missing_ok=True)
            self._generation, self._last = generation, data

    def _signing_key_pem(self, key: rsa.RSAPrivateKey) -> str:
        # Serialising an RSA key costs more than the rest of a save: once per key.
        if self._key_pem is None or self._key_pem[0] is not key:
            self._key_pem = (key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()).decode())
        return self._key_pem[1]

    def close(self, state: SandboxState | None = None) -> None:
        """A last save of `state`, then let go of the files and the directory's lock."""
        if state is not None and state.store is self:
            self.save(state)
            state.store, state.journal = None, None
        for descriptor in self._logs.values():
            os.close(descriptor)
        self._logs.clear()
        os.close(self._lock_file)


def _compact(record: Any) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def _write_all(descriptor: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]
    return len(data)


# ---------------------------------------------------------------------- the state as JSON (secret text included)


def _log_record(name: str, item: Any) -> Any:
    if name == "passwords":  # a third item, "servicePrincipal": the password is its service principal's
        app_id, p, *holder = item
        return [app_id, {"keyId": p.key_id, "displayName": p.display_name, "hint": p.hint,
                         "start": p.start.isoformat(), "end": p.end.isoformat(), "text": p._text}, *holder]
    if name == "removed":
        app_id, removed = item
        return [app_id, removed]
    if name == "vault":
        change, secret, version = item
        return [change, secret, _dump_version(version) if version else None]
    if name == "tokens":
        key, app_id, audience, expires = item
        return [key, app_id, audience, expires.isoformat()]
    if name == "operations":
        return {"id": item.id, "kind": item.kind, "cluster": item.cluster, "started": item.started.isoformat(),
                "readyAt": item.ready_at.isoformat(), "params": item.params, "status": item.status,
                "error": item.error, "ended": item.ended.isoformat() if item.ended else None}
    return item  # an Activity Log entry is JSON already


def _replay(state: SandboxState, name: str, record: Any) -> None:
    """One line of a log, applied to a state loaded from its generation."""
    if name in ("passwords", "removed"):
        app = state.application_record(record[0])
        if app is None:  # deleted for good (30 days in the deleted items) since the line was written
            return
        if name == "passwords":
            p = record[1]
            held = app.sp_passwords if record[2:] else app.passwords
            held.append(Password(p["keyId"], p["displayName"], p["hint"], datetime.fromisoformat(p["start"]),
                                 datetime.fromisoformat(p["end"]), p["text"]))
        else:
            if record[1].get("servicePrincipal"):
                app.sp_passwords = [p for p in app.sp_passwords if p.key_id != record[1]["keyId"]]
            else:
                app.passwords = [p for p in app.passwords if p.key_id != record[1]["keyId"]]
            app.removed_passwords.append(record[1])
    elif name == "vault":
        change, secret, version = record
        if change == "set":
            state.vault.setdefault(secret, []).append(_load_version(version))
        elif change == "update":
            versions = state.vault[secret]
            versions[[v.version for v in versions].index(version["version"])] = _load_version(version)
        else:
            state.deleted_secrets[secret] = state.vault.pop(secret)
    elif name == "activity":
        state.activity_log.append(record)
    elif name == "tokens":
        key, app_id, audience, expires = record
        state.tokens[key] = (app_id, audience, datetime.fromisoformat(expires))
    else:
        operation = _operation(record)
        if operation.cluster.count("/") == 1:  # format 1 keyed clusters by group/name, in its one subscription
            operation.cluster = f"{state.subscription_id}/{operation.cluster}"
        state.operations[operation.id] = operation


def _operation(record: dict[str, Any]) -> Operation:
    return Operation(id=record["id"], kind=record["kind"], cluster=record["cluster"],
                     started=datetime.fromisoformat(record["started"]),
                     ready_at=datetime.fromisoformat(record["readyAt"]), params=record["params"],
                     status=record["status"], error=record["error"],
                     ended=datetime.fromisoformat(record["ended"]) if record["ended"] else None)


def _dump_state(state: SandboxState, signing_key_pem: str) -> dict[str, Any]:
    return {
        "tenantId": state.tenant_id, "subscriptionId": state.subscription_id,
        "subscriptions": [{"subscriptionId": s.subscription_id, "displayName": s.display_name}
                          for s in state.subscriptions.values()],
        "resourceGroups": [{"subscriptionId": g.subscription_id, "name": g.name, "location": g.location,
                            "tags": g.tags} for g in state.resource_groups.values()],
        "clusterPageSize": state.cluster_page_size,
        "roleAssignmentPageSize": state.role_assignment_page_size,
        "clockOffsetSeconds": state.clock_offset.total_seconds(),
        "signingKey": signing_key_pem, "signingKeyId": state.signing_key_id,
        "applications": [_dump_application(a) for a in state.applications.values()],
        "deletedApplications": [_dump_application(a) for a in state.deleted_applications.values()],
        "users": [{"id": u.object_id, "displayName": u.display_name} for u in state.users.values()],
        "roleAssignments": [_dump_role_assignment(r) for r in state.role_assignments.values()],
        "clusters": [{"subscriptionId": c.subscription_id, "resourceGroup": c.resource_group, "name": c.name,
                      "clientId": c.client_id, "kubernetesVersion": c.kubernetes_version, "heldSecret": c._held_secret,
                      "provisioningState": c.provisioning_state, "operation": c.operation, "etag": c.etag,
                      "createdAt": _time(c.created_at), "lastModifiedAt": _time(c.last_modified_at),
                      "lastModifiedBy": c.last_modified_by,
                      "tags": c.tags, "writes": c.writes, "nodeResourceGroup": c.node_resource_group,
                      "vnetSubnetId": c.vnet_subnet_id, "aad": _dump_aad(c.aad),
                      "maintenanceConfigurations": c.maintenance_configurations,
                      "privateDnsZoneId": c.private_dns_zone_id, "identity": c.identity}
                     for c in state.clusters.values()],
        "userIdentities": list(state.user_identities.values()),
        "cloudName": state.cloud_name, "flexRegions": state.flex_regions,
        "functionApps": [_dump_site(site) for site in state.sites.values()],
        "systemTopics": [_dump_topic(topic) for topic in state.system_topics.values()],
        "requests": state.requests,
        "responses": state.responses,
        "requestsByCaller": state.requests_by_caller,
        "tokensIssued": state.tokens_issued,
        "faults": [vars(f) for f in state.faults],
        "world": {"propagationSeconds": state.propagation_seconds, "ingestionSeconds": state.ingestion_seconds,
                  "resetFailures": state.reset_failures, "operationSeconds": state.operation_seconds,
                  "principalReplicationSeconds": state.principal_replication_seconds,
                  "replicationIgnoresPrincipalType": state.replication_ignores_principal_type},
    }


def _dump_application(app: Application) -> dict[str, Any]:
    return {"objectId": app.object_id, "appId": app.app_id, "displayName": app.display_name,
            "owners": sorted(app.owners), "graphPermissions": sorted(app.graph_permissions),
            "armActions": sorted(app.arm_actions), "vaultDataActions": sorted(app.vault_data_actions),
            "armSubscriptions": sorted(app.arm_subscriptions) if app.arm_subscriptions is not None else None,
            "spObjectId": app.sp_object_id, "identifierUris": app.identifier_uris, "appRoles": app.app_role_objects,
            "uniqueName": app.unique_name, "api": app.api, "signInAudience": app.sign_in_audience,
            "directoryRoles": sorted(app.directory_roles),
            "grantedRoles": {k: sorted(v) for k, v in app.granted_roles.items()},
            "hasServicePrincipal": app.has_service_principal,
            "servicePrincipalCreatedAt": _time(app.service_principal_created_at), "createdAt": _time(app.created_at),
            "deletedAt": _time(app.deleted_at), "roleAssignmentCondition": app.role_assignment_condition,
            "notes": app.notes, "spOwners": sorted(app.sp_owners), "federatedCredentials": app.federated_credentials}


def _load_application(a: dict[str, Any]) -> Application:
    # Format 2 kept one permission (or none) as "graphPermission".
    permissions = a["graphPermissions"] if "graphPermissions" in a else [a["graphPermission"]] * bool(
        a.get("graphPermission"))
    return Application(
        object_id=a["objectId"], app_id=a["appId"], display_name=a["displayName"], owners=set(a["owners"]),
        graph_permissions=set(permissions), arm_actions=frozenset(a["armActions"]),
        arm_subscriptions=frozenset(a["armSubscriptions"]) if a.get("armSubscriptions") is not None else None,
        vault_data_actions=frozenset(a["vaultDataActions"]), sp_object_id=a["spObjectId"],
        identifier_uris=a["identifierUris"], app_role_objects=_app_roles(a["appRoles"]),
        unique_name=a.get("uniqueName"), api=a.get("api") or default_api(),
        sign_in_audience=a.get("signInAudience", "AzureADMyOrg"), directory_roles=set(a.get("directoryRoles", ())),
        granted_roles={k: set(v) for k, v in a["grantedRoles"].items()},
        has_service_principal=a.get("hasServicePrincipal", True),
        service_principal_created_at=_parsed(a.get("servicePrincipalCreatedAt")),
        created_at=_parsed(a.get("createdAt")), deleted_at=_parsed(a.get("deletedAt")),
        role_assignment_condition=a.get("roleAssignmentCondition"), notes=a.get("notes"),
        sp_owners=set(a.get("spOwners", ())), federated_credentials=a.get("federatedCredentials", []))


def _app_roles(saved: list[dict[str, Any]] | dict[str, str]) -> list[dict[str, Any]]:
    """The appRole objects; format 3 kept only value -> id (roles of the sandbox's API application)."""
    if isinstance(saved, dict):
        return [app_role(value, role_id) for value, role_id in saved.items()]
    return saved


def _dump_site(site: FunctionSite) -> dict[str, Any]:
    return {"subscriptionId": site.subscription_id, "resourceGroup": site.resource_group, "name": site.name,
            "location": site.location, "tags": site.tags, "appSettings": site.app_settings, "kind": site.kind}


def _load_site(s: dict[str, Any]) -> FunctionSite:
    return FunctionSite(s["subscriptionId"], s["resourceGroup"], s["name"], s["location"], s["tags"],
                        s["appSettings"], s["kind"])


def _dump_topic(topic: SystemTopic) -> dict[str, Any]:
    return {"subscriptionId": topic.subscription_id, "resourceGroup": topic.resource_group, "name": topic.name,
            "source": topic.source, "topicType": topic.topic_type, "metricResourceId": topic.metric_resource_id,
            "tags": topic.tags, "eventSubscriptions": [vars(e) for e in topic.event_subscriptions.values()]}


def _load_topic(t: dict[str, Any]) -> SystemTopic:
    subscriptions = [SystemTopicSubscription(**e) for e in t["eventSubscriptions"]]
    return SystemTopic(t["subscriptionId"], t["resourceGroup"], t["name"], t["source"], t["topicType"],
                       t["metricResourceId"], t["tags"], {e.name: e for e in subscriptions})


def _dump_role_assignment(r: RoleAssignment) -> dict[str, Any]:
    return {"name": r.name, "scope": r.scope, "roleDefinitionId": r.role_definition_id, "principalId": r.principal_id,
            "principalType": r.principal_type, "createdOn": r.created_on.isoformat(),
            "updatedOn": r.updated_on.isoformat(), "createdBy": r.created_by, "updatedBy": r.updated_by,
            "description": r.description, "condition": r.condition, "conditionVersion": r.condition_version}


def _load_role_assignment(r: dict[str, Any]) -> RoleAssignment:
    return RoleAssignment(
        name=r["name"], scope=r["scope"], role_definition_id=r["roleDefinitionId"], principal_id=r["principalId"],
        principal_type=r["principalType"], created_on=datetime.fromisoformat(r["createdOn"]),
        updated_on=datetime.fromisoformat(r["updatedOn"]), created_by=r["createdBy"], updated_by=r["updatedBy"],
        description=r["description"], condition=r["condition"], condition_version=r["conditionVersion"])


def _dump_aad(aad: LegacyAadProfile | None) -> dict[str, Any] | None:
    if aad is None:
        return None
    return {"clientAppId": aad.client_app_id, "serverAppId": aad.server_app_id, "tenantId": aad.tenant_id,
            "serverSecret": aad._server_secret}


def _load_aad(record: dict[str, Any] | None) -> LegacyAadProfile | None:
    if record is None:
        return None
    return LegacyAadProfile(record["clientAppId"], record["serverAppId"], record["tenantId"], record["serverSecret"])


def _dump_version(version: SecretVersion) -> dict[str, Any]:
    return {"version": version.version, "value": version._value, "contentType": version.content_type,
            "tags": version.tags, "enabled": version.enabled, "expires": version.expires,
            "notBefore": version.not_before, "created": version.created, "updated": version.updated}


def _load_state(saved: dict[str, Any]) -> SandboxState:
    key = serialization.load_pem_private_key(saved["signingKey"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    state = SandboxState(tenant_id=saved["tenantId"], subscription_id=saved["subscriptionId"], signing_key=key,
                         signing_key_id=saved["signingKeyId"])
    state.clock_offset = timedelta(seconds=saved["clockOffsetSeconds"])
    for s in saved.get("subscriptions", ()):
        state.subscriptions[s["subscriptionId"]] = Subscription(s["subscriptionId"], s["displayName"])
    for g in saved.get("resourceGroups", ()):
        group = ResourceGroup(g["subscriptionId"], g["name"], g["location"], g["tags"])
        state.resource_groups[group.key] = group
    state.cluster_page_size = saved.get("clusterPageSize", state.cluster_page_size)
    state.role_assignment_page_size = saved.get("roleAssignmentPageSize", state.role_assignment_page_size)
    for a in saved["applications"]:
        state.applications[a["appId"]] = _load_application(a)
    for a in saved.get("deletedApplications", ()):
        state.deleted_applications[a["appId"]] = _load_application(a)
    for u in saved.get("users", ()):
        state.users[u["id"]] = MemberUser(u["id"], u["displayName"])
    for r in saved.get("roleAssignments", ()):
        state.add_role_assignment(_load_role_assignment(r))
    for c in saved["clusters"]:
        cluster = Cluster(
            subscription_id=c.get("subscriptionId", state.subscription_id), resource_group=c["resourceGroup"],
            name=c["name"], client_id=c["clientId"], kubernetes_version=c["kubernetesVersion"],
            _held_secret=c["heldSecret"], provisioning_state=c["provisioningState"], operation=c["operation"],
            etag=c["etag"], created_at=_parsed(c.get("createdAt")), last_modified_at=_parsed(c.get("lastModifiedAt")),
            last_modified_by=c.get("lastModifiedBy"),
            tags=c.get("tags", {}), writes=Counter(c.get("writes", {})), aad=_load_aad(c.get("aad")),
            # Before format 3 a cluster's node resource group was only a name AKS's default gave it.
            node_resource_group=c.get("nodeResourceGroup") or f"MC_{c['resourceGroup']}_{c['name']}_{LOCATION}",
            vnet_subnet_id=c.get("vnetSubnetId"),
            # Added within format 3: a directory written before has none.
            maintenance_configurations=c.get("maintenanceConfigurations", {}),
            # Added within format 4 (a move to managed identity, sandbox/identities.py): absent before.
            private_dns_zone_id=c.get("privateDnsZoneId"), identity=c.get("identity"))
        state.clusters[cluster.key] = cluster
        if state.resource_group(cluster.resource_group, cluster.subscription_id) is None:  # format 1 had no groups
            state.add_resource_group(cluster.resource_group, subscription_id=cluster.subscription_id)
    for identity in saved.get("userIdentities", ()):
        state.user_identities[f"{identity['subscriptionId']}/{identity['resourceGroup']}/{identity['name']}".lower()] \
            = identity
    state.cloud_name = saved.get("cloudName", DEFAULT_CLOUD_NAME)  # added in format 4, as what follows
    state.flex_regions = list(saved.get("flexRegions", DEFAULT_FLEX_REGIONS))
    for site in map(_load_site, saved.get("functionApps", ())):
        state.sites[site.key] = site
    for topic in map(_load_topic, saved.get("systemTopics", ())):
        state.system_topics[topic.key] = topic
    for api, routes in saved["requests"].items():
        state.requests[api].update(routes)
    for api, routes in saved["responses"].items():
        for route, statuses in routes.items():
            state.responses[api][route].update(statuses)
    for caller, apis in saved["requestsByCaller"].items():
        for api, routes in apis.items():
            state.requests_by_caller[caller][api].update(routes)
    state.tokens_issued.update(saved["tokensIssued"])
    state.faults = [Fault(**f) for f in saved["faults"]]
    world = saved["world"]
    state.propagation_seconds, state.ingestion_seconds = world["propagationSeconds"], world["ingestionSeconds"]
    state.reset_failures, state.operation_seconds = world["resetFailures"], world["operationSeconds"]
    state.principal_replication_seconds = world.get("principalReplicationSeconds", 0.0)
    state.replication_ignores_principal_type = world.get("replicationIgnoresPrincipalType", False)
    return state


def _load_version(v: dict[str, Any]) -> SecretVersion:
    return SecretVersion(v["version"], v["value"], v["contentType"], v["tags"], v["enabled"], v["expires"],
                         v["notBefore"], v["created"], v["updated"])


# ---------------------------------------------------------------------- identities (kept in meta)


def dump_identities(identities: Identities) -> dict[str, Any]:
    return {"remediator": vars(identities.remediator), "operator": vars(identities.operator),
            "auditor": vars(identities.auditor), "apiClientId": identities.api_client_id,
            "apiAppIdUri": identities.api_app_id_uri}


def load_identities(record: dict[str, Any]) -> Identities:
    return Identities(Identity(**record["remediator"]), Identity(**record["operator"]), Identity(**record["auditor"]),
                      record["apiClientId"], record["apiAppIdUri"])


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _parsed(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
