"""Execute mode of the move to managed identity (issue 22), end to end against the sandbox and Azurite, through the
function app's own triggers: the daily check decides, the work queue runs the migration's steps.

The fleet: 12 service-principal clusters of 4 shapes (own subnet, private DNS zone, attached registry, plain), 3 of
them opted in (`aks-sp-remediator=migrate`) with maintenance windows opening at different times (open now, in 3
hours, in 27 hours), the other 9 with a window open now and no tag. The clock the remediator reads moves forward
between checks (the sandbox keeps real time, so the long-running writes still take theirs).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

import function_app
from remediation.adapters.storage import StorageTarget, TableRemediationStore
from remediation.app.bootstrap import bootstrap
from remediation.app.settings import CHECK_QUEUE, INCIDENT_QUEUE, TABLE_NAME, WORK_QUEUE, Settings
from remediation.model import Status
from remediation.record import Remediation
from sandbox import Sandbox
from sandbox.azurite import Azurite
from sandbox.fleets import fleet
from sandbox.rbac import BUILT_IN_ROLES
from sandbox.state import WorldOptions
from sandbox.wiring import remediator_settings
from tests.test_function_app import call, queue_message, timer
from tests.test_migration import SHAPES, give_shape

pytestmark = pytest.mark.slow

IDENTITY_GROUP = "rg-aks-identities"
OPT_IN = {"aks-sp-remediator": "migrate"}
# What infra/ lets a migrating remediator assign (main.bicep's assignableRoleIds with migrate=execute).
ASSIGNABLE = frozenset({"Network Contributor", "AcrPull", "Private DNS Zone Contributor", "Managed Identity Operator"})


class WorkerDied(BaseException):
    """The worker process ends here: nothing after it runs, no handler sees it (a BaseException, as a kill is)."""


class DiesAtStepBoundaries:
    """The remediation store of a worker that dies once at each named step's boundary: after the step did its work
    in Azure, before the record saying so is saved. The next delivery of the message finds the step not done."""

    def __init__(self, inner: TableRemediationStore, steps: set[str]) -> None:
        self._inner, self.pending, self.died_at = inner, set(steps), []
        self.earlier = inner.earlier

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save(self, remediation: Remediation) -> Remediation:
        for step in sorted(self.pending):
            if remediation.migrate and remediation.done(step) and not self._inner.get(remediation.id).done(step):
                self.pending.discard(step)
                self.died_at.append(step)
                raise WorkerDied(step)
        return self._inner.save(remediation)


def window_opening(at: datetime) -> dict[str, Any]:
    """A weekly AKS planned maintenance configuration whose 4-hour window opens at `at` (UTC, whole minutes)."""
    return {"maintenanceWindow": {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": at.strftime("%A")}},
                                  "durationHours": 4, "startTime": at.strftime("%H:%M"), "utcOffset": "+00:00"}}


def fleet_document(now: datetime) -> tuple[dict[str, Any], dict[str, datetime]]:
    """12 clusters, 3 of each shape, every password valid for months; 3 opted in, their windows opening at different
    times; the others' windows open now."""
    document = fleet(clusters=12, subscriptions=1, applications=4, expired=0.0, managed_identity=0,
                     opted_out_clusters=0, opted_out_groups=0, groups_per_subscription=2, seed=22)
    sub = document["subscriptions"][0]["subscriptionId"]
    document["resourceGroups"] += [{"subscriptionId": sub, "name": name, "location": "westeurope", "tags": {}}
                                   for name in ("rg-network", "rg-acr", IDENTITY_GROUP)]
    started = now.replace(second=0, microsecond=0)
    opens = {0: started - timedelta(hours=1), 5: started + timedelta(hours=3), 2: started + timedelta(hours=27)}
    opted: dict[str, datetime] = {}
    for index, body in enumerate(document["clusters"]):
        give_shape(body, SHAPES[index % 4], sub)
        body["maintenanceConfigurations"] = {"aksManagedNodeOSUpgradeSchedule": window_opening(
            opens.get(index, started - timedelta(hours=1)))}
        if index in opens:
            body["tags"] = {**(body.get("tags") or {}), **OPT_IN}
            opted[body["name"]] = opens[index]
    return document, opted


@pytest.fixture
def moving(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Start a world: the sandbox with the fleet, the remediator with REMEDIATOR_MIGRATE=execute and the migrate
    permissions, its clock `offset` ahead of the sandbox's; returns (sandbox, offset list, store, opted)."""
    opened: list[Sandbox] = []

    def start(*, die_at: set[str] | None = None) -> tuple[Sandbox, list[timedelta], Any, dict[str, datetime]]:
        now = datetime.now(UTC)
        document, opted = fleet_document(now)
        sandbox = Sandbox(fleet=document, options=WorldOptions(remediator_migrates=True,
                                                                remediator_role_assignment_roles=ASSIGNABLE))
        sandbox.__enter__()
        opened.append(sandbox)
        env = remediator_settings(sandbox, azurite.connection_string, REMEDIATOR_MIGRATE="execute",
                                  REMEDIATOR_MIGRATION_IDENTITY_GROUP=IDENTITY_GROUP,
                                  REMEDIATOR_ASSIGNABLE_ROLE_IDS=",".join(BUILT_IN_ROLES[r] for r in ASSIGNABLE),
                                  REMEDIATOR_RESET_POLL_SECONDS="1", REMEDIATOR_PROPAGATION_INTERVAL_SECONDS="1",
                                  REMEDIATOR_LEASE_SECONDS="2")
        for queue in (WORK_QUEUE, INCIDENT_QUEUE, CHECK_QUEUE):
            client = QueueClient.from_connection_string(azurite.connection_string, queue)
            try:
                client.create_queue()
            except ResourceExistsError:
                client.clear_messages()
        offset = [timedelta(0)]
        table = StorageTarget(connection_string=azurite.connection_string).table(TABLE_NAME)
        store = TableRemediationStore(table)
        store.ensure_table()
        store.earlier = {r.id for r in store.list_recent(limit=100)}
        if die_at:
            store = DiesAtStepBoundaries(store, die_at)
        services = bootstrap(Settings.from_env(env), store=store, clock=lambda: datetime.now(UTC) + offset[0])
        monkeypatch.setattr(function_app, "built_services", lambda: services)
        return sandbox, offset, store, opted

    yield start
    for sandbox in opened:
        sandbox.__exit__(None, None, None)


def run_work(azurite: Azurite, until: Callable[[], bool], timeout: float = 90) -> int:
    """Deliver the work queue's messages to `advance_remediation` through the library's converter, as the host
    does; a worker that dies leaves its message to come back after its visibility timeout. The deaths seen."""
    client = QueueClient.from_connection_string(azurite.connection_string, WORK_QUEUE)
    deadline, deaths = time.monotonic() + timeout, 0
    while not until():
        assert time.monotonic() < deadline, f"the migrations did not finish in time: {last_decisions()[-5:]}"
        for m in client.receive_messages(max_messages=8, visibility_timeout=2):
            try:
                call("advance_remediation", queue_message(
                    base64.b64decode(m.content), message_id=m.id, dequeue_count=m.dequeue_count,
                    inserted_on=m.inserted_on, expires_on=m.expires_on, next_visible_on=m.next_visible_on,
                    pop_receipt=m.pop_receipt))
            except WorkerDied:
                deaths += 1
                continue
            client.delete_message(m.id, m.pop_receipt)
        time.sleep(0.2)
    return deaths


def last_decisions() -> list[Any]:
    """What an operator would look at: the last decisions, and where each migration stands."""
    service = function_app.services().remediations
    return [(d["clusterResourceId"].rsplit("/", 1)[1], d["code"], d["message"])
            for d in service.list_decisions(limit=4)] + [
        (r.cluster.name, r.created_at, r.status.value, r.reason, {n: (s.code, s.attempts) for n, s in r.steps.items()})
        for r in service.list_recent(limit=5) if r.migrate]


def migrations(store: Any) -> list[Remediation]:
    """This world's migrations (the table outlives a test: an earlier world's are left out)."""
    return [r for r in store.list_recent(limit=100) if r.migrate and r.id not in store.earlier]


def finished(store: Any, count: int) -> Callable[[], bool]:
    return lambda: len(found := migrations(store)) == count and all(r.status.terminal for r in found)


def clusters(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in sandbox.snapshot()["clusters"]}


def writes_to(cluster: dict[str, Any]) -> int:
    return cluster["writes"]["put"] + cluster["writes"]["reset"] + cluster["writes"].get("nodeImage", 0)


def identities_in(sandbox: Sandbox) -> list[dict[str, Any]]:
    with sandbox.state.lock:
        return [{**i, "principalId": sandbox.state.applications[i["appId"]].sp_object_id}
                for i in sandbox.state.user_identities.values() if i["resourceGroup"].lower() == IDENTITY_GROUP]


def assignments_of(sandbox: Sandbox, principals: set[str]) -> list[tuple[str, str, str]]:
    return sorted((a["principalId"], a["scope"].lower(), a["roleDefinitionId"].rsplit("/", 1)[-1].lower())
                  for a in sandbox.snapshot()["roleAssignments"] if a["principalId"] in principals)


def test_execute_migrates_exactly_the_opted_in_clusters_each_inside_its_window(moving, azurite: Azurite) -> None:
    sandbox, offset, store, opted = moving()
    first, second, third = sorted(opted, key=opted.get)
    before = clusters(sandbox)
    started = time.monotonic()

    call("check_fleet_health", timer())  # the window of `first` is open; the others' open later
    call("check_fleet_health", timer())  # a second run of the check (another instance) while the first move waits
    assert [r.cluster.name for r in migrations(store)] == [first]  # it holds the application: no second migration
    run_work(azurite, finished(store, 1))
    offset[0] = timedelta(hours=3, minutes=10)  # the second one's window has opened
    call("check_fleet_health", timer())
    run_work(azurite, finished(store, 2))
    offset[0] = timedelta(hours=27, minutes=10)  # and the third's, a day later
    call("check_fleet_health", timer())
    run_work(azurite, finished(store, 3))
    seconds = time.monotonic() - started
    offset[0] = timedelta(hours=27, minutes=20)
    call("check_fleet_health", timer())  # the next check: nothing left to move
    time.sleep(0.5)

    done = {r.cluster.name: r for r in migrations(store)}
    assert set(done) == set(opted) and all(r.status is Status.SUCCEEDED for r in done.values()), \
        {n: (r.status, r.reason) for n, r in done.items()}
    assert [r.cluster.name for r in sorted(done.values(), key=lambda r: r.created_at)] == [first, second, third]
    after = clusters(sandbox)
    for name in opted:
        moved = after[name]
        assert moved["clientId"] == "msi" and moved["provisioningState"] == "Succeeded"
        # The kubelet took its new identity with the node-image upgrade; one switch, one upgrade of its one pool.
        assert moved["identity"]["kubeletInUse"] == moved["identity"]["kubelet"]
        assert moved["writes"]["put"] == 1 and moved["writes"]["nodeImage"] == 1 and moved["writes"]["reset"] == 0
        assert done[name].migration.verified_at
    for name, cluster in after.items():  # the 9 not opted in: not one write, whatever their window
        if name not in opted:
            assert writes_to(cluster) == writes_to(before[name]) == 0 and cluster["clientId"] != "msi", name
    assert len(migrations(store)) == 3  # the last check found the three on managed identity: no fourth
    decisions = [(d["clusterResourceId"].rsplit("/", 1)[1], d["code"])
                 for d in function_app.services().remediations.list_decisions(limit=100) if d["source"] == "migration"]
    assert {code for name, code in decisions if name == third} == {"OutsideMaintenanceWindow", "MigrationReady"}
    assert "MigrationUnderWay" in {code for name, code in decisions if name == first}
    assert {name for name, _code in decisions} == set(opted)  # the 9 without the tag are never considered
    print(f"\nexecute: 12 clusters, 3 opted in, migrated in {seconds:.1f} s of work; 0 writes to the other 9")


def test_a_worker_dying_at_every_step_boundary_still_makes_one_migration(moving, azurite: Azurite) -> None:
    steps = {"plan_move", "create_identities", "assign_roles", "await_roles", "switch_identity",
             "upgrade_node_images", "verify_migration", "retire_old_secret"}
    sandbox, _offset, store, opted = moving(die_at=steps)
    [name] = [n for n, at in opted.items() if at <= datetime.now(UTC)]  # the one whose window is open now

    call("check_fleet_health", timer())
    deaths = run_work(azurite, finished(store, 1), timeout=120)
    [migration] = migrations(store)
    assert sorted(store.died_at) == sorted(steps) and deaths == len(steps)
    assert migration.status is Status.SUCCEEDED, migration.reason
    moved = clusters(sandbox)[name]
    assert moved["clientId"] == "msi" and moved["writes"]["put"] == 1  # one switch
    made = identities_in(sandbox)
    assert sorted(i["name"] for i in made) == sorted(migration.migration.names.values())  # one identity per name
    principals = {i["principalId"] for i in made}
    granted = assignments_of(sandbox, principals)
    planned = sorted((migration.migration.made[r["identity"]].principal_id, r["scope"].lower(), r["role"])
                     for r in migration.migration.roles)
    assert granted == planned  # the same role set, each once
    assert moved["identity"]["kubeletInUse"] == moved["identity"]["kubelet"]
