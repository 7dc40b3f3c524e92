"""Invariants that must hold across every interleaving the world can produce (Hypothesis stateful testing).

The world: two clusters sharing one application whose secret expired (one rotation must serve both),
their Activity Log, the queues and a host that retries and poisons as Azure Functions does. The rules
are what happens in production: operators' writes that fail and become events; events delivered
once, twice or late; sweeps; operators' requests; work messages duplicated, lost or delayed; the
worker killed at any adapter call, before or after the call takes effect; the clock jumping (even
past the new secret's expiry); a person repairing a cluster by hand. After every step the
invariants below hold; after the world calms down (no more crashes, the timer runs, the operators
try once more, the queues drain) both clusters work, every remediation has finished and no claim
is left.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from remediation.errors import InvalidInputError
from remediation.events import FailureEvent
from remediation.ids import ClusterId
from remediation.maintenance import choose_schedule
from remediation.runner import STALLED_AFTER
from remediation.service import RemediationRequest
from tests.conftest import APP_ID, CLUSTER, SUB, make_world
from tests.fakes import Crash, QueuedMessage
from tests.test_service import CRASH_POINTS

CO_TENANT = ClusterId(SUB, "rg-orders", "aks-orders")  # the same service principal as CLUSTER
CLUSTERS = (CLUSTER, CO_TENANT)


class RemediatorWorld(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = make_world()
        self.world.clusters.add(CO_TENANT, APP_ID, "old-secret")
        self.was_valid = dict.fromkeys(CLUSTERS, False)
        self.events: list[FailureEvent] = []
        self.breakages = 2  # both clusters start broken

    # ----- the world ---------------------------------------------------------------------------------

    def _trigger(self, call, *args):  # noqa: ANN001, ANN202 - a trigger invocation, as the host makes it
        """Run a trigger; a worker killed during it is replaced (an HTTP caller sees an error, a timer runs
        again next time, an event is redelivered)."""
        try:
            return call(*args)
        except Crash:
            self.world.faults.restart()
            return None

    def _observe_breakage(self) -> None:
        for cluster in CLUSTERS:
            valid = self.world.clusters.secret_valid(cluster)
            if self.was_valid[cluster] and not valid:
                self.breakages += 1
            self.was_valid[cluster] = valid

    @rule(cluster=st.sampled_from(CLUSTERS))
    def operator_writes(self, cluster: ClusterId) -> None:
        event = self.world.operate(cluster)
        if event is not None:
            self.events.append(event)

    @precondition(lambda self: self.events)
    @rule(data=st.data())
    def event_delivered(self, data: st.DataObject) -> None:
        # Any event, any number of times, in any order: duplicates and late deliveries included.
        event = data.draw(st.sampled_from(self.events))
        try:
            self._trigger(self.world.detector.accept_event, event)
        except InvalidInputError:
            pass  # too old by now: the trigger acknowledges it (tests/test_detection.py)

    @rule()
    def sweep(self) -> None:
        self._trigger(self.world.detector.sweep, SUB)

    @rule(cluster=st.sampled_from(CLUSTERS), force=st.booleans(), dry_run=st.booleans())
    def operator_requests(self, cluster: ClusterId, force: bool, dry_run: bool) -> None:
        self._trigger(self.world.remediations.request, RemediationRequest(cluster, dry_run=dry_run, force=force))

    @rule(rounds=st.integers(1, 3))
    def host_delivers(self, rounds: int) -> None:
        for _ in range(rounds):
            self.world.deliver_visible()

    @precondition(lambda self: self.world.queue.messages)
    @rule(data=st.data(), what=st.sampled_from(["lose", "duplicate", "delay"]))
    def work_message_mishap(self, data: st.DataObject, what: str) -> None:
        messages = self.world.queue.messages
        message = data.draw(st.sampled_from(messages))
        if what == "lose":
            messages.remove(message)
        elif what == "duplicate":  # the queue's own doing, not the worker's: no fault applies
            messages.append(QueuedMessage(message.visible_at, dict(message.body)))
        else:
            message.visible_at += timedelta(minutes=data.draw(st.integers(1, 30)))

    @rule(point=st.sampled_from(CRASH_POINTS))
    def worker_dies_at(self, point: tuple[str, bool]) -> None:
        call, after = point
        self.world.faults.die_at(call, after=after)

    @rule(seconds=st.sampled_from([1, 30, 300, 1200, 3600, 86_400, 200 * 86_400]))
    def clock_jumps(self, seconds: int) -> None:
        self.world.clock.advance(seconds=seconds)
        self._observe_breakage()

    @rule()
    def timer_resumes_stalled_work(self) -> None:
        self._trigger(self.world.remediations.resume_stalled)

    @rule(cluster=st.sampled_from(CLUSTERS))
    def person_fixes_by_hand(self, cluster: ClusterId) -> None:
        if not self.world.clusters.secret_valid(cluster):
            self.world.clusters.fix_by_hand(cluster)
        self._observe_breakage()

    # ----- what must always hold ----------------------------------------------------------------------

    @invariant()
    def at_most_one_stored_secret_per_observed_breakage(self) -> None:
        # A password minted and then lost to a crash before it was stored is removed again; it is the
        # stored ones, each a secret someone may use, that must not multiply.
        self._observe_breakage()
        stored = {k for k in self.world.directory.added if k in self.world.vault.stored_key_ids()}
        asked = sum(1 for r in self.world.store.all() if r.source == "manual" and not r.dry_run)
        assert len(stored) <= self.breakages + asked, (len(stored), self.breakages, asked)

    @invariant()
    def no_reset_of_a_healthy_cluster_unless_a_person_asked(self) -> None:
        # Each reset of a cluster whose own secret still signed in was asked for: an operator's request started
        # the rotation, or joined the cluster to one that was running (a request whose HTTP answer was lost to
        # a crash still asked).
        for cluster, secret in self.world.clusters.healthy_resets:
            remediation = self.world.store.get(self.world.vault.remediation_that_stored(secret) or "")
            target = remediation.target(cluster)
            assert remediation.source == "manual" or (target and target.joined_by == "request"), remediation.view()

    @invariant()
    def every_password_the_remediator_added_is_stored_in_use_or_removed(self) -> None:
        # The one exception: a worker died between addPassword and the vault write. Its remediation is not
        # finished, and its next run removes that password (after the queues drain there is none: teardown).
        for key_id in self._unstored_live_passwords():
            remediation = self.world.store.get(self._remediation_of(key_id))
            assert not remediation.status.terminal, (key_id, remediation.status)

    def _unstored_live_passwords(self) -> list[str]:
        live, stored = self.world.directory.live_key_ids(), self.world.vault.stored_key_ids()
        return [k for k in self.world.directory.added if k in live and k not in stored]

    def _remediation_of(self, key_id: str) -> str:
        name = next(p.display_name for a in self.world.directory.apps.values() for p in a.passwords
                    if p.key_id == key_id)
        return name.removeprefix("aks-sp-remediator ")

    @invariant()
    def one_active_remediation_per_cluster(self) -> None:
        active = [r for r in self.world.store.all() if not r.dry_run and not r.status.terminal]
        assert len(active) <= 1, [r.id for r in active]

    def teardown(self) -> None:
        """The world calms down: no more crashes, the timer and an operator's retry, and the queues drain."""
        world = self.world
        world.faults.planned.clear()
        world.faults.restart()
        for _ in range(3):
            world.drain()
            world.clock.advance(seconds=STALLED_AFTER.total_seconds())
            world.remediations.resume_stalled()
            world.drain()
            for cluster in CLUSTERS:
                event = world.operate(cluster)  # each operator tries the upgrade again; a failure becomes an event
                if event is not None:
                    world.detector.accept_event(event)
            world.drain()
        assert all(world.clusters.secret_valid(c) for c in CLUSTERS), [r.view() for r in world.store.all()]
        assert self._unstored_live_passwords() == []
        assert all(r.status.terminal for r in world.store.all())
        # A worker that died between finishing and releasing left a claim (it never blocks: a claim on a
        # finished remediation is taken over); the timer removes it, so none outlives a timer run.
        assert world.store.claims == {}


RemediatorWorld.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
TestRemediatorWorld = RemediatorWorld.TestCase


# ---------------------------------------------------------------------------------- proactive rotation (issue 11)

NODE_OS_WINDOW = {"aksManagedNodeOSUpgradeSchedule": {"maintenanceWindow": {
    "schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4, "startTime": "01:00", "utcOffset": "+00:00",
    "startDate": "2026-01-01"}}}
OPT_IN = {"aks-sp-remediator": "rotate"}


class ProactiveWorld(RuleBasedStateMachine):
    """Two clusters share an application whose secret ends in 20 days: CLUSTER is opted in and has a node OS window
    (01:00-05:00 UTC daily), CO_TENANT is not. Daily checks (and extra ones), queued credential checks delivered,
    duplicated or lost, crashes anywhere and the clock moving by minutes to months: proactive resets happen only to
    opted-in clusters, only inside their window, and never twice for one secret."""

    def __init__(self) -> None:
        super().__init__()
        self.world = make_world({"REMEDIATOR_EXPIRY_WARNING_DAYS": "30"})
        self.world.directory.apps[APP_ID].passwords[0].end = self.world.clock() + timedelta(days=20)
        self.world.clusters.add(CO_TENANT, APP_ID, "old-secret")
        found = self.world.clusters.clusters[CLUSTER.key]
        found.tags.update(OPT_IN)
        found.maintenance.update(NODE_OS_WINDOW)
        self.window = choose_schedule(NODE_OS_WINDOW)[1]

    def _trigger(self, call, *args):  # noqa: ANN001, ANN202
        try:
            return call(*args)
        except Crash:
            self.world.faults.restart()
            return None

    @rule()
    def health_check(self) -> None:
        self._trigger(self.world.services.health.check)

    @rule(rounds=st.integers(1, 3))
    def host_delivers(self, rounds: int) -> None:
        for _ in range(rounds):
            self.world.deliver_visible()

    @precondition(lambda self: any(q.messages for q in (self.world.checks, self.world.queue)))
    @rule()
    def time_passes_until_a_message_is_due(self) -> None:
        queues = (self.world.checks, self.world.queue, self.world.lookups)
        self.world.clock.now = max(self.world.clock.now, min(at for q in queues if (at := q.next_visible_at())))
        self.world.deliver_visible()

    @precondition(lambda self: self.world.checks.messages)
    @rule(data=st.data(), what=st.sampled_from(["lose", "duplicate", "early"]))
    def check_message_mishap(self, data: st.DataObject, what: str) -> None:
        messages = self.world.checks.messages
        message = data.draw(st.sampled_from(messages))
        if what == "lose":
            messages.remove(message)
        elif what == "duplicate":
            messages.append(QueuedMessage(message.visible_at, dict(message.body)))
        else:  # a clock skew between the sender and the queue: it arrives before the window opens
            message.visible_at -= timedelta(minutes=data.draw(st.integers(1, 90)))

    @rule(point=st.sampled_from(CRASH_POINTS))
    def worker_dies_at(self, point: tuple[str, bool]) -> None:
        call, after = point
        self.world.faults.die_at(call, after=after)

    @rule(seconds=st.sampled_from([60, 1800, 3 * 3600, 86_400, 10 * 86_400, 150 * 86_400]))
    def clock_jumps(self, seconds: int) -> None:
        self.world.clock.advance(seconds=seconds)

    @invariant()
    def a_working_cluster_is_reset_only_when_opted_in_and_inside_its_window(self) -> None:
        for cluster, started, healthy in self.world.clusters.reset_log:
            if healthy:
                assert cluster.key == CLUSTER.key, (cluster, started)
                assert self.window.window_at(started) is not None, started

    @invariant()
    def a_secret_is_rotated_ahead_of_expiry_once(self) -> None:
        # Proactive resets of one cluster are at least a secret's lifetime less the warning period apart.
        starts = [at for cluster, at, healthy in self.world.clusters.reset_log
                  if healthy and cluster.key == CLUSTER.key]
        assert all(b - a >= timedelta(days=180 - 30) for a, b in zip(starts, starts[1:], strict=False)), starts

    @invariant()
    def one_active_remediation_per_application(self) -> None:
        active = [r for r in self.world.store.all() if not r.dry_run and not r.status.terminal]
        assert len(active) <= 1, [r.id for r in active]


TestProactiveRotation = ProactiveWorld.TestCase
TestProactiveRotation.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
