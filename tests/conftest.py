"""Shared fixtures: a world of stateful fakes, Azurite (npm) and the local Azure sandbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from remediation.detection import DetectionConfig, IncidentDetector, IncidentLookup
from remediation.ids import ClusterId
from remediation.service import Remediator, RemediatorConfig, WorkItem
from sandbox.azurite import Azurite
from tests.fakes import (
    FakeActivityLog,
    FakeClock,
    FakeClusters,
    FakeDirectory,
    FakeIncidentStore,
    FakeQueue,
    FakeStore,
    FakeVault,
)

SUB = "6f1c2d3e-0000-4000-8000-000000000001"
CLUSTER = ClusterId(SUB, "rg-payments", "aks-payments")
MSI_CLUSTER = ClusterId(SUB, "rg-payments", "aks-msi")
APP_ID = "11111111-2222-4333-8444-555555555555"


@dataclass
class World:
    clock: FakeClock
    directory: FakeDirectory
    clusters: FakeClusters
    vault: FakeVault
    store: FakeStore
    queue: FakeQueue
    remediator: Remediator
    activity_log: FakeActivityLog
    incidents: FakeIncidentStore
    lookups: FakeQueue
    detector: IncidentDetector

    def drain(self, max_rounds: int = 50) -> None:
        """Deliver messages of both queues as the Functions host would, moving the clock to each visible time."""
        for _ in range(max_rounds):
            delivered = self.deliver_visible()
            if not delivered:
                upcoming = [at for at in (self.queue.next_visible_at(), self.lookups.next_visible_at()) if at]
                if not upcoming:
                    return
                self.clock.now = min(upcoming)
        raise AssertionError("the queues did not drain")

    def deliver_visible(self) -> int:
        lookups, work = self.lookups.receive_visible(), self.queue.receive_visible()
        for message in lookups:
            self.detector.look_up(IncidentLookup.from_message(json.dumps(message)))
        for message in work:
            self.remediator.advance(WorkItem.from_message(json.dumps(message)))
        return len(lookups) + len(work)

    def remediator_passwords(self) -> list[str]:
        return [p.key_id for p in self.directory.apps[APP_ID].passwords if p.display_name.startswith("aks-sp-")]


@pytest.fixture
def world() -> World:
    clock = FakeClock()
    directory = FakeDirectory(clock)
    directory.create_app(APP_ID, secret="old-secret", expires_in=timedelta(days=-3))
    clusters = FakeClusters(directory)
    clusters.add(CLUSTER, APP_ID, "old-secret")
    clusters.add(MSI_CLUSTER, "msi", None)
    vault, store, queue = FakeVault(), FakeStore(), FakeQueue(clock)
    remediator = Remediator(clusters=clusters, directory=directory, vault=vault, store=store, queue=queue,
                            config=RemediatorConfig(retry_delay_seconds=30), clock=clock)
    activity_log, incidents, lookups = FakeActivityLog(), FakeIncidentStore(), FakeQueue(clock)
    detector = IncidentDetector(activity_log=activity_log, incidents=incidents, lookups=lookups, clusters=clusters,
                                directory=directory, remediator=remediator,
                                config=DetectionConfig(lookup_delay_seconds=60,
                                                       lookup_timeout=timedelta(minutes=30)), clock=clock)
    return World(clock, directory, clusters, vault, store, queue, remediator, activity_log, incidents, lookups,
                 detector)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture
def unique_name() -> str:
    """A fresh table/queue name, so tests sharing one Azurite never see each other's rows."""
    return "t" + uuid.uuid4().hex[:12]
