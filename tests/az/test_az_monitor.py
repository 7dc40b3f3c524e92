"""`az monitor activity-log list`: the $filter az writes (bare times, status/caller/resourceId/resourceGroupName eq)
is the one the sandbox's Activity Log reads, and it lists exactly the entries asked for."""

from __future__ import annotations

from tests.support.az import Az

BROKEN = ("-g", "rg-payments", "-n", "aks-payments")


def test_activity_log_lists_exactly_the_failed_entries_in_every_form(az: Az) -> None:
    az.fails("aks", "update", *BROKEN, "--tags", "attempt=1")  # the expired secret fails the write
    cluster_id = az("aks", "show", *BROKEN)["id"]
    with az.sandbox.state.lock:
        expected = {e["eventDataId"] for e in az.sandbox.state.activity_log if e["status"]["value"] == "Failed"}
    failed = az("monitor", "activity-log", "list", "--status", "Failed", "--offset", "1d")
    assert failed and {e["eventDataId"] for e in failed} == expected
    assert all(e["status"]["value"] == "Failed" for e in failed)
    operator = az.sandbox.operator.client_id
    for narrowing in (("--resource-group", "rg-payments"), ("--resource-id", cluster_id)):
        found = az("monitor", "activity-log", "list", *narrowing, "--status", "Failed", "--caller", operator,
                   "--offset", "1d")
        assert found and all(e["caller"] == operator and e["status"]["value"] == "Failed" for e in found)
        assert all(e["resourceGroupName"].lower() == "rg-payments" for e in found)
    correlation = failed[0]["correlationId"]
    by_correlation = az("monitor", "activity-log", "list", "--correlation-id", correlation, "--offset", "1d")
    assert by_correlation and {e["correlationId"] for e in by_correlation} == {correlation}
    assert az("monitor", "activity-log", "list", "--status", "Failed", "--start-time", "2000-01-01T00:00:00Z",
              "--offset", "1d") == []
