"""A world of stateful fakes (tests/support/fakes.py) with the app's use cases built over them by `bootstrap`, and the
constants the product's tests share: one subscription, one cluster on an expired application, one on a managed
identity. tests/conftest.py hands a fresh one to each test as the `world` fixture; `make_world` takes settings."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from remediation.app.bootstrap import Services, bootstrap
from remediation.app.settings import Settings
from remediation.decide.hints import Decision
from remediation.ids import ClusterId
from remediation.intake.detection import IncidentLookup
from remediation.intake.events import FailureEvent
from remediation.intake.health import CredentialCheck
from remediation.intake.requests import RemediationRequest
from remediation.model import ActivityLogEntry
from remediation.run.chain import WorkItem
from remediation.run.step import vault_secret_name
from tests.support.fakes import (
    REMEDIATOR_PRINCIPAL_ID,
    Crash,
    FakeActivityLog,
    FakeClock,
    FakeClusters,
    FakeDirectory,
    FakeIncidentStore,
    FakeOutcomes,
    FakeQueue,
    FakeResourceGraph,
    FakeResourceGroups,
    FakeRoleAssignments,
    FakeSignIn,
    FakeStore,
    FakeVault,
    Faults,
    QueuedMessage,
)

SUB = "6f1c2d3e-0000-4000-8000-000000000001"
CLUSTER = ClusterId(SUB, "rg-payments", "aks-payments")
MSI_CLUSTER = ClusterId(SUB, "rg-payments", "aks-msi")
APP_ID = "11111111-2222-4333-8444-555555555555"
# The host's queue settings (host.json): failed messages come back after the visibility timeout, and go
# to the poison queue after maxDequeueCount deliveries.
VISIBILITY_SECONDS = 30
MAX_DEQUEUE = 5
SETTINGS = {"AZURE_TENANT_ID": "72f988bf-0000-4000-8000-000000000001", "REMEDIATOR_KEY_VAULT_URL": "https://kv",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true", "REMEDIATOR_API_CLIENT_ID": "api",
            "REMEDIATOR_SUBSCRIPTION_IDS": SUB, "REMEDIATOR_RETRY_DELAY_SECONDS": "30",
            "REMEDIATOR_RESET_POLL_SECONDS": "30", "REMEDIATOR_LOOKUP_DELAY_SECONDS": "60",
            "REMEDIATOR_LOOKUP_TIMEOUT_MINUTES": "30", "REMEDIATOR_PROPAGATION_SUCCESSES": "1",
            "REMEDIATOR_RETIRE_AFTER_HOURS": "0", "REMEDIATOR_PRINCIPAL_ID": REMEDIATOR_PRINCIPAL_ID}


def expired_secret_message(app_id: str) -> str:
    """An Activity Log statusMessage as AKS writes it for an expired service-principal secret."""
    return json.dumps({"status": "Failed", "error": {
        "code": "ResourceOperationFailure", "message": "The resource operation completed with terminal provisioning"
        " state 'Failed'.", "details": [{"code": "ServicePrincipalValidationClientError", "message": (
            "service principal is not valid: adal: Refresh request failed. Status Code = '401'. Response body: "
            '{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app '
            f"'{app_id}' are expired.\"}}")}]}})


@dataclass
class World:
    """The fakes, and the use cases built over them by `bootstrap` (the app's own composition root).

    `deliver_visible` and `drain` play the Functions host: they hand each visible message to its
    function, put a failed one back after the visibility timeout, and move it to the poison queue
    after the last try; a crash restarts the worker.
    """

    clock: FakeClock
    faults: Faults
    directory: FakeDirectory
    clusters: FakeClusters
    vault: FakeVault
    store: FakeStore
    queue: FakeQueue
    poison: FakeQueue
    activity_log: FakeActivityLog
    incidents: FakeIncidentStore
    lookups: FakeQueue
    checks: FakeQueue
    inventory: FakeResourceGraph
    outcomes: FakeOutcomes
    sign_in: FakeSignIn
    resource_groups: FakeResourceGroups
    roles: FakeRoleAssignments
    services: Services

    @property
    def remediations(self):
        return self.services.remediations

    @property
    def detector(self):
        return self.services.detector

    # ----- the world's own events ---------------------------------------------------------------

    def operate(self, cluster: ClusterId = CLUSTER) -> FailureEvent | None:
        """An operator's write (an upgrade): it succeeds, or fails, is logged and becomes a failure event."""
        found = self.clusters.clusters[cluster.key]
        if not self.clusters.write_fails(cluster):
            found.last_modified_at = self.clock()
            return None
        correlation = str(uuid.uuid4())
        self.activity_log.entries.append(ActivityLogEntry(
            correlation, str(cluster), "Microsoft.ContainerService/managedClusters/write", "EndRequest", "Failed",
            self.clock(), expired_secret_message(found.client_id)))
        return FailureEvent(event_id=str(uuid.uuid4()), event_type="Microsoft.Resources.ResourceWriteFailure",
                            cluster=cluster, resource_uri=str(cluster),
                            operation_name="Microsoft.ContainerService/managedClusters/write",
                            correlation_id=correlation, event_time=self.clock())

    # ----- the host ---------------------------------------------------------------------------------

    def deliver_visible(self, only: tuple[str, ...] = ("lookups", "work", "poison", "checks")) -> int:
        delivered = 0
        handlers: tuple[tuple[FakeQueue, Callable[[QueuedMessage], Any]], ...] = (
            (self.lookups, lambda m: self.detector.look_up(IncidentLookup.from_message(json.dumps(m.body)))),
            (self.queue, lambda m: self.remediations.advance(WorkItem.from_message(json.dumps(m.body)))),
            (self.poison, lambda m: self.remediations.fail_poisoned(WorkItem.from_message(json.dumps(m.body)),
                                                                    m.dequeue_count)),
            (self.checks, lambda m: self.services.health.recheck(CredentialCheck.from_message(json.dumps(m.body)))))
        for queue, handle in handlers:
            if queue.name not in only:
                continue
            for message in queue.receive_visible():
                delivered += 1
                message.dequeue_count += 1
                try:
                    handle(message)
                except Crash:
                    self.faults.restart()  # the host starts a new worker; the message comes back later
                    self._retry(queue, message)
                except Exception:  # noqa: BLE001 - the host retries whatever a function raised
                    self._retry(queue, message)
        return delivered

    def _retry(self, queue: FakeQueue, message: QueuedMessage) -> None:
        if message.dequeue_count >= MAX_DEQUEUE:
            if queue is self.queue:
                self.poison.messages.append(QueuedMessage(self.clock(), message.body, message.dequeue_count))
            return
        message.visible_at = self.clock() + timedelta(seconds=VISIBILITY_SECONDS)
        queue.messages.append(message)

    def drain(self, max_rounds: int = 500) -> None:
        """Deliver messages until none is left, moving the clock to each next visible time."""
        for _ in range(max_rounds):
            if not self.deliver_visible():
                upcoming = [at for q in (self.queue, self.lookups, self.poison, self.checks)
                            if (at := q.next_visible_at())]
                if not upcoming:
                    return
                self.clock.now = max(self.clock.now, min(upcoming))
        raise AssertionError("the queues did not drain")

    def second_worker(self) -> Services:
        """Another instance of the app (Flex scales out): its own in-process state, the same storage and Azure."""
        return bootstrap(self.services.settings, credential=object(), clusters=self.clusters,
                         directory=self.directory, vault=self.vault, sign_in=self.sign_in,
                         resource_groups=self.resource_groups, roles=self.roles, store=self.store, queue=self.queue,
                         activity_log=self.activity_log, incidents=self.incidents, lookups=self.lookups,
                         checks=self.checks, inventory=self.inventory, outcomes=self.outcomes,
                         token_validator=object(), clock=self.clock)  # type: ignore[arg-type]

    def remediator_passwords(self) -> list[str]:
        return [p.key_id for p in self.directory.apps[APP_ID].passwords if p.display_name.startswith("aks-sp-")]


def make_world(settings: dict[str, str] | None = None) -> World:
    clock, faults = FakeClock(), Faults()
    directory = FakeDirectory(clock, faults)
    directory.create_app(APP_ID, secret="old-secret", expires_in=timedelta(days=-3))
    clusters = FakeClusters(directory, clock, faults)
    clusters.add(CLUSTER, APP_ID, "old-secret")
    clusters.add(MSI_CLUSTER, "msi", None)
    vault, store, incidents = FakeVault(faults), FakeStore(faults), FakeIncidentStore(faults)
    queue, poison, lookups = FakeQueue(clock, faults, "work"), FakeQueue(clock, faults, "poison"), \
        FakeQueue(clock, faults, "lookups")
    checks, inventory, outcomes = FakeQueue(clock, faults, "checks"), FakeResourceGraph(clusters), FakeOutcomes(faults)
    activity_log, sign_in, groups = FakeActivityLog(), FakeSignIn(directory, faults), FakeResourceGroups()
    roles = FakeRoleAssignments(directory, clock, faults)
    services = bootstrap(Settings.from_env({**SETTINGS, **(settings or {})}), credential=object(),
                         clusters=clusters, directory=directory, vault=vault, sign_in=sign_in, resource_groups=groups,
                         roles=roles, store=store, queue=queue, activity_log=activity_log, incidents=incidents,
                         lookups=lookups, checks=checks, inventory=inventory, outcomes=outcomes,
                         token_validator=object(), clock=clock)  # type: ignore[arg-type]
    return World(clock, faults, directory, clusters, vault, store, queue, poison, activity_log, incidents, lookups,
                 checks, inventory, outcomes, sign_in, groups, roles, services)


# ----- asking, and what a test looks at afterwards ----------------------------------------------------------------

def request(world: World, *, dry_run: bool = False, cluster: ClusterId = CLUSTER, force: bool = False) -> Decision:
    return world.remediations.request(RemediationRequest(cluster, dry_run=dry_run, force=force))


def remediation_of(world: World, decision: Decision):
    assert decision.remediation is not None, decision.verdict
    return world.store.get(decision.remediation.id)


def assert_repaired_once(world: World) -> None:
    """The cluster works, one reset applied one password, and that password's secret is in Key Vault."""
    assert world.clusters.secret_valid(CLUSTER)
    assert world.clusters.resets_started == 1
    [ours] = world.remediator_passwords()
    held = world.clusters.clusters[CLUSTER.key].held_secret
    assert world.directory.text_of(ours) == held
    assert world.vault.current_value(vault_secret_name(APP_ID)) == held
    assert world.store.claims == {}


# Every call a remediation makes, before and after it takes effect in Azure: a worker killed there.
CRASH_POINTS = [(call, after) for call in ("directory.add_password", "vault.set_secret", "store.save",
                                           "clusters.begin_reset", "clusters.get_operation", "clusters.get_cluster",
                                           "store.delete_claim", "work.send")
                for after in (False, True)]


# ----- a fleet: several clusters on the one expired application, spread over the operators' limits ----------------

OTHER_SUB = "6f1c2d3e-0000-4000-8000-000000000002"
SHARED = [ClusterId(SUB, "rg-payments", "aks-payments-2"), ClusterId(SUB, "rg-orders", "aks-orders")]
OPTED_OUT = ClusterId(SUB, "rg-orders", "aks-legacy")
OPTED_OUT_GROUP = ClusterId(SUB, "rg-frozen", "aks-frozen")
DENIED_GROUP = ClusterId(SUB, "rg-prod-core", "aks-core")
ELSEWHERE = ClusterId(OTHER_SUB, "rg-payments", "aks-payments-eu")  # a subscription the remediator does not manage


def fleet(**settings: str) -> World:
    """Seven clusters on one expired application (and one with a managed identity), spread over the limits."""
    world = make_world({"REMEDIATOR_DENY_RESOURCE_GROUPS": "rg-prod-core", **settings})
    for cluster in (*SHARED, OPTED_OUT, OPTED_OUT_GROUP, DENIED_GROUP, ELSEWHERE):
        world.clusters.add(cluster, APP_ID, "old-secret")
    world.clusters.clusters[OPTED_OUT.key].tags = {"aks-sp-remediator": "off"}
    world.resource_groups.tags[(SUB, "rg-frozen")] = {"Aks-SP-Remediator": "Off"}
    return world


def rotations(world: World) -> list:
    return world.store.all()
