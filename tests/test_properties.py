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

import json
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from remediation.app.bootstrap import Services
from remediation.decide.maintenance import choose_schedule
from remediation.errors import InvalidInputError, RemediationError
from remediation.ids import ClusterId
from remediation.intake.detection import IncidentLookup
from remediation.intake.events import FailureEvent
from remediation.intake.requests import RemediationRequest
from remediation.run.chain import WorkItem
from remediation.run.runner import STALLED_AFTER
from tests.support.fakes import Crash, FakeQueue, Faults, QueuedMessage
from tests.support.world import APP_ID, CLUSTER, CRASH_POINTS, SUB, make_world

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
TestRemediatorWorld.pytestmark = [pytest.mark.slow]


# ---------------------------------------------------------------------------------- proactive rotation

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


# ---------------------------------------------------------------------------------- two workers


class _Invocation:
    """One trigger invocation on a worker, on its own thread, stopped at every adapter call (before it, and after it
    took effect) until the test lets it take one more step: the thread runs only while the test's thread waits."""

    def __init__(self, name: str, call: Callable[[], Any], message: tuple[FakeQueue, QueuedMessage] | None,
                 started_at: datetime) -> None:
        self.name, self.message, self.started_at = name, message, started_at
        self.point: tuple[str, bool] | None = None  # where it stopped
        self.done = self.killed = self.crashed = False
        self.error: BaseException | None = None
        self._go, self._stopped = threading.Semaphore(0), threading.Semaphore(0)
        self._thread = threading.Thread(target=self._run, args=(call,), name=f"invocation-{name}", daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        _running.invocation = self
        self._go.acquire()
        try:
            call()
        except Crash:
            self.crashed = True
        except Exception as err:  # noqa: BLE001 - the host catches what a function raises; the test judges it
            self.error = err
        finally:
            self.done = True
            self._stopped.release()

    def stop_at(self, point: tuple[str, bool]) -> None:
        """On the invocation's thread: wait here until the test says go on (or kills the worker)."""
        self.point = point
        self._stopped.release()
        self._go.acquire()
        if self.killed:
            raise Crash(f"killed at {point}")

    def step(self) -> None:
        """Let it run to its next adapter call (or to its end)."""
        if not self.done:
            self._go.release()
            self._stopped.acquire()

    def kill(self) -> None:
        """SIGKILL at the call it stopped at: nothing more of it runs."""
        self.killed = True
        self.step()


_running = threading.local()


class InterleavedFaults(Faults):
    """The world's faults, shared by every fake: an adapter call made on an invocation's thread stops there, unless
    it is made while a `cached_property` is computed: Python 3.11's holds one lock per class meanwhile (3.12 dropped
    it), so the other worker's thread would wait for it and the test for that thread."""

    def check(self, call: str, *, after: bool) -> None:
        invocation = getattr(_running, "invocation", None)
        if invocation is None:
            super().check(call, after=after)
        elif invocation.killed:
            raise Crash(f"killed (at {call})")
        elif not _computing_cached_property():
            invocation.stop_at((call, after))


_CACHED_PROPERTY_GET = cached_property.__get__.__code__


def _computing_cached_property() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code is _CACHED_PROPERTY_GET:
            return True
        frame = frame.f_back
    return False


def _is_write(call: str) -> bool:
    """A fake's call that changes something (its name, as Faults knows it: "store.create_claimed")."""
    return not call.partition(".")[2].startswith(("get", "list", "find", "sign_in"))


WORKERS = (0, 1)
_TIMEOUT = json.loads((Path(__file__).resolve().parent.parent / "host.json").read_text())["functionTimeout"]
FUNCTION_TIMEOUT = timedelta(**dict(zip(("hours", "minutes", "seconds"), map(int, _TIMEOUT.split(":")), strict=True)))
INVOCATIONS = ("event", "lookup", "work", "request", "sweep", "resume")


class TwoWorkersWorld(RuleBasedStateMachine):
    """Two instances of the app (as Flex Consumption runs them) on one storage and one Azure: two clusters sharing an
    application whose secret expired. Each worker runs one invocation at a time (an event, a queued lookup or work
    message, an operator's request, a sweep, the stall timer), and the steps of the two interleave in any order, at
    every adapter call; either worker may be killed at any of them (its message comes back after the visibility
    timeout), the clock moves, the queue duplicates a message. After every step: at most one password per
    application per breakage (and one per worker killed after minting it), at most one reset per cluster, no
    password the remediator minted is lost (stored, or its remediation has not finished), one rotation at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.world = make_world()
        self.world.clusters.add(CO_TENANT, APP_ID, "old-secret")
        faults = InterleavedFaults()
        for part in (self.world, *vars(self.world).values()):
            if hasattr(part, "faults"):
                part.faults = faults
        self.workers = (self.world.services, self.world.second_worker())
        self.running: list[_Invocation | None] = [None, None]
        self.events: list[FailureEvent] = []
        self.kills = 0

    @initialize()
    def an_upgrade_fails(self) -> None:
        self.operator_writes(CLUSTER)

    # ----- a worker's invocations --------------------------------------------------------------------

    def _receive(self, names: tuple[str, ...]) -> tuple[FakeQueue, QueuedMessage] | None:
        """The first visible message of the first of these queues that has one, made invisible while it runs."""
        for queue in (getattr(self.world, name) for name in names):
            visible = [m for m in queue.messages if m.visible_at <= self.world.clock()]
            if visible:
                queue.messages.remove(visible[0])
                visible[0].dequeue_count += 1
                return queue, visible[0]
        return None

    def _handler(self, services: Services, queue: FakeQueue, message: QueuedMessage) -> Callable[[], Any]:
        body = json.dumps(message.body)
        if queue is self.world.lookups:
            return lambda: services.detector.look_up(IncidentLookup.from_message(body))
        if queue is self.world.poison:
            return lambda: services.remediations.fail_poisoned(WorkItem.from_message(body), message.dequeue_count)
        return lambda: services.remediations.advance(WorkItem.from_message(body))

    @precondition(lambda self: None in self.running)
    @rule(data=st.data(), what=st.sampled_from(INVOCATIONS))
    def a_worker_begins(self, data: st.DataObject, what: str) -> None:
        worker = data.draw(st.sampled_from([w for w in WORKERS if self.running[w] is None]), label="worker")
        self._begin(worker, what, data)

    @precondition(lambda self: self.running == [None, None])
    @rule(data=st.data(), what=st.sampled_from(INVOCATIONS))
    def both_workers_begin(self, data: st.DataObject, what: str) -> None:
        """The same kind of work reaches both at once (a storm: the same hint by two paths, a duplicated message)."""
        for worker in WORKERS:
            self._begin(worker, what, data)

    def _begin(self, worker: int, what: str, data: st.DataObject) -> None:
        services = self.workers[worker]
        message = None
        if what == "event":
            if not self.events:
                return
            event = data.draw(st.sampled_from(self.events), label="event")
            call = lambda: services.detector.accept_event(event)  # noqa: E731
        elif what in ("lookup", "work"):
            message = self._receive(("lookups",) if what == "lookup" else ("queue", "poison"))
            if message is None:
                return
            call = self._handler(services, *message)
        elif what == "request":
            cluster = data.draw(st.sampled_from(CLUSTERS), label="cluster")
            call = lambda: services.remediations.request(RemediationRequest(cluster))  # noqa: E731
        elif what == "sweep":
            call = lambda: services.detector.sweep(SUB)  # noqa: E731
        else:
            call = services.remediations.resume_stalled
        self.running[worker] = invocation = _Invocation(f"{worker}:{what}", call, message, self.world.clock())
        invocation.step()  # to its first adapter call
        self._settle(worker)

    @precondition(lambda self: any(self.running))
    @rule(data=st.data(), steps=st.integers(1, 4))
    def a_worker_goes_on(self, data: st.DataObject, steps: int) -> None:
        worker = data.draw(st.sampled_from([w for w in WORKERS if self.running[w]]), label="worker")
        for _ in range(steps):
            if (invocation := self.running[worker]) is not None:
                invocation.step()
                self._settle(worker)

    @precondition(lambda self: any(self.running))
    @rule(data=st.data(), after=st.booleans())
    def a_worker_runs_to_its_next_write(self, data: st.DataObject, after: bool) -> None:
        """On to just before (or just after) its next write: where a race between two workers is won or lost."""
        worker = data.draw(st.sampled_from([w for w in WORKERS if self.running[w]]), label="worker")
        invocation = self.running[worker]
        assert invocation is not None
        while not invocation.done:
            invocation.step()
            if invocation.point and invocation.point[1] == after and _is_write(invocation.point[0]):
                break
        self._settle(worker)

    @precondition(lambda self: any(self.running))
    @rule(data=st.data())
    def a_worker_is_killed(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from([w for w in WORKERS if self.running[w]]), label="worker")
        invocation = self.running[worker]
        assert invocation is not None
        invocation.kill()
        self.kills += 1
        self._settle(worker)

    def _settle(self, worker: int) -> None:
        """An invocation that ended: its message is deleted, or back after the visibility timeout (to the poison
        queue after the last try), as the host does; what no trigger may raise fails the test."""
        invocation = self.running[worker]
        if invocation is None or not invocation.done:
            return
        self.running[worker] = None
        error = invocation.error
        if error is not None and not isinstance(error, (RemediationError, InvalidInputError)):
            raise error
        if invocation.message is not None and (invocation.crashed or error is not None):
            self.world._retry(*invocation.message)

    # ----- the world ---------------------------------------------------------------------------------

    @rule(cluster=st.sampled_from(CLUSTERS))
    def operator_writes(self, cluster: ClusterId) -> None:
        event = self.world.operate(cluster)
        if event is not None:
            self.events.append(event)

    @precondition(lambda self: self.world.queue.messages)
    @rule(data=st.data())
    def the_queue_delivers_a_message_twice(self, data: st.DataObject) -> None:
        message = data.draw(st.sampled_from(self.world.queue.messages))
        self.world.queue.messages.append(QueuedMessage(message.visible_at, dict(message.body)))

    @rule(seconds=st.sampled_from([1, 30, 300, 1200, 3600]))
    def clock_moves(self, seconds: int) -> None:
        self.world.clock.advance(seconds=seconds)
        # The host stops an invocation that outlives host.json's functionTimeout: a worker paused that long is gone.
        for worker, invocation in enumerate(self.running):
            if invocation is not None and self.world.clock() - invocation.started_at > FUNCTION_TIMEOUT:
                invocation.kill()
                self.kills += 1
                self._settle(worker)

    # ----- what must always hold ----------------------------------------------------------------------

    @invariant()
    def one_password_per_application_per_breakage(self) -> None:
        # One breakage (the shared application's expiry; the clock never reaches the new secret's); a worker killed
        # between addPassword and the vault write loses that secret, and the next run mints another.
        added = self.world.directory.added
        assert len(added) <= 1 + self.kills, (added, self.kills)
        stored = [k for k in added if k in self.world.vault.stored_key_ids()]
        assert len(stored) <= 1, stored

    @invariant()
    def one_reset_per_cluster(self) -> None:
        resets = Counter(cluster.key for cluster, _, _ in self.world.clusters.reset_log)
        assert all(n <= 1 for n in resets.values()), resets

    @invariant()
    def no_minted_password_is_lost(self) -> None:
        # Live and not in the vault: only while its remediation runs (the vault write is still to come, or its
        # worker died before it and the next run removes the password).
        live, stored = self.world.directory.live_key_ids(), self.world.vault.stored_key_ids()
        for key_id in (k for k in self.world.directory.added if k in live and k not in stored):
            name = next(p.display_name for a in self.world.directory.apps.values() for p in a.passwords
                        if p.key_id == key_id)
            remediation = self.world.store.get(name.removeprefix("aks-sp-remediator "))
            assert not remediation.status.terminal, (key_id, remediation.status)

    @invariant()
    def one_rotation_at_a_time(self) -> None:
        active = [r.id for r in self.world.store.all() if not r.dry_run and not r.status.terminal]
        assert len(active) <= 1, active

    def teardown(self) -> None:
        """The workers finish what they run; then the world calms down, as RemediatorWorld's does."""
        for worker in WORKERS:
            while (invocation := self.running[worker]) is not None:
                invocation.step()
                self._settle(worker)
        world = self.world
        for _ in range(3):
            world.drain()
            world.clock.advance(seconds=STALLED_AFTER.total_seconds())
            world.remediations.resume_stalled()
            world.drain()
            for cluster in CLUSTERS:
                event = world.operate(cluster)
                if event is not None:
                    world.detector.accept_event(event)
            world.drain()
        assert all(world.clusters.secret_valid(c) for c in CLUSTERS), [r.view() for r in world.store.all()]
        assert all(r.status.terminal for r in world.store.all())
        assert world.store.claims == {}
        self.one_password_per_application_per_breakage()
        self.one_reset_per_cluster()
        self.no_minted_password_is_lost()


TestTwoWorkers = TwoWorkersWorld.TestCase
TestTwoWorkers.pytestmark = [pytest.mark.slow]
TestTwoWorkers.settings = settings(max_examples=300, stateful_step_count=60, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
