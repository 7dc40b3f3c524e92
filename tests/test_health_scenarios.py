"""The credential health scenarios of benchmarks/health.py, over HTTP against the sandbox with the function
app in its own worker process: the daily check over a fleet where nothing has failed yet, and the fast path."""

from __future__ import annotations

import pytest

from benchmarks.health import check, fastpath

# Minutes of worker processes over HTTP: out of the inner loop (`pytest -m "not slow"`), in `make test`.
pytestmark = pytest.mark.slow

def test_the_daily_check_repairs_what_expired_rotates_inside_windows_and_touches_nothing_else() -> None:
    figures = check()
    resets = figures["resets"]
    # Expired now: both clusters of the application moved, once, though no write of theirs ever failed.
    assert resets["aks-expired-1"] == resets["aks-expired-2"] == 1, figures
    assert figures["failedActivityLogEntries"] == 0, figures
    # Expiring and opted in: rotated inside the open window; the other only once its window opened.
    assert resets["aks-window"] == 1 and resets["aks-later"] == 1, figures
    assert figures["laterResetsBeforeItsWindow"] == 0, figures
    assert figures["laterResetStarted"] >= figures["laterWindowOpened"], figures
    # Not opted in, opted out, healthy, managed identity: not one write.
    assert figures["writesToUntouched"] == 0, figures
    assert {name for name, valid in figures["secretValid"].items() if not valid} == {"aks-opted-out"}, figures
    assert ("aks-opted-out", "OptedOut") in figures["decisions"], figures
    assert ("aks-later", "OutsideMaintenanceWindow") in figures["decisions"], figures
    # One password per rotated application, each rotation its own record.
    assert figures["addPassword"] == 3, figures
    assert sorted(source for source, status, _ in figures["remediations"]
                  if status == "Succeeded") == ["rotation", "rotation", "scan"], figures


def test_a_failure_on_an_expired_application_is_acted_on_before_the_activity_log_has_it() -> None:
    figures = fastpath(ingestion_seconds=300)
    assert figures["status"] == "Succeeded" and figures["resets"] == 1, figures
    assert figures["decision"] == ["Confirmed"], figures
    # Repaired while the Activity Log still showed nothing (its entry was 5 minutes away): it did not wait for it.
    assert figures["activityLogEntriesVisibleWhenRepaired"] == 0, figures
