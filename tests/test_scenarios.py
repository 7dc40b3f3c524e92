"""The outside tester's scenarios (benchmarks/scenarios.py), smaller: over HTTP, against the sandbox, with
the function app in its own worker process that the sandbox kills. `make bench` runs them full size."""

from __future__ import annotations

import pytest

from benchmarks.scenarios import ADD_PASSWORD, RESET, crash_at, crash_mid_reset, hostile, live_world, storm

# Minutes of worker processes over HTTP: out of the inner loop (`pytest -m "not slow"`), in `make test`.
pytestmark = pytest.mark.slow

def test_a_storm_of_hints_about_one_breakage_mints_one_password_and_resets_once() -> None:
    with live_world() as live:
        figures = storm(live, deliveries=40, requests=12, sweeps=3)
        log = live.worker.log_text()
    # The worker runs with the root logger at INFO, as Azure's does; the SDKs' HTTP logging stays quiet.
    assert "remediation" in log and "Executed 'Functions." in log
    assert "Request URL:" not in log and "Response status:" not in log
    assert figures["passwordsMinted"] == 1 and figures["resetsStarted"] == 1, figures
    assert not any(status.split()[-1].startswith("5") for status in figures["statuses"]), figures["statuses"]
    # Requests after the repair are refused from the present: the secret the remediator stored signs in.
    assert set(figures["decisions"]) <= {"Confirmed", "Requested", "JoinedRunning", "DuplicateIncident",
                                         "StaleBeforeRepair", "CredentialValid"}, figures["decisions"]


@pytest.mark.parametrize(("api", "route", "when"), [("graph", ADD_PASSWORD, "after"), ("arm", RESET, "after")],
                         ids=["after-addPassword", "after-reset-POST"])
def test_a_worker_killed_at_a_write_converges_with_one_reset(api: str, route: str, when: str) -> None:
    with live_world() as live:
        figures = crash_at(live, api, route, when)
    assert figures["workerRestarted"] and figures["resetsStarted"] == 1, figures
    assert figures["liveUnstoredPasswords"] == 0, figures


def test_a_worker_killed_during_a_long_reset_never_starts_a_second_one() -> None:
    with live_world() as live:
        figures = crash_mid_reset(live, reset_seconds=12)
    assert figures["resetsStarted"] == 1 and figures["passwordsMinted"] == 1, figures


def test_hostile_requests_and_events_get_no_5xx_and_write_nothing() -> None:
    with live_world() as live:
        figures = hostile(live, count=300)
    assert figures["serverErrors"] == 0, figures
    assert figures["writesToAzure"] == 0 and not figures["queuedWork"], figures
