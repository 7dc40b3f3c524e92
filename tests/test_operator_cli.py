"""The operator CLI (`python -m remediation list|show|decisions|dry-run`) as an operator runs it against
the local sandbox: `main()` in this process, over HTTP to the function app in its own worker process
(as under the Functions host), with tokens from the sandbox's Entra ID stand-in.

Every command's output, errors included, is checked for the function key, the identities' client
secrets and any token (a JWT starts with `eyJ`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediation.__main__ import main
from remediation.cli.api import ApiClient, Target
from remediation.cli.commands import _complain
from remediation.cli.render import decisions_table, remediations_table, timeline
from sandbox import Sandbox
from sandbox.azurite import Azurite, free_port
from sandbox.wiring import remediator_settings
from sandbox.worker import WorkerProcess

REASON = "checking before the change window"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
ENV = ("REMEDIATOR_API_URL", "REMEDIATOR_FUNCTION_KEY", "REMEDIATOR_API_APP_ID_URI")


@dataclass
class Live:
    sandbox: Sandbox
    worker: WorkerProcess
    info: Path
    directory: Path

    @property
    def cluster_id(self) -> str:
        return (f"/subscriptions/{self.sandbox.subscription_id}/resourceGroups/rg-payments"
                "/providers/Microsoft.ContainerService/managedClusters/aks-payments")

    @property
    def secrets(self) -> list[str]:
        # And every password text the sandbox holds: `doctor` reads cached secrets and must never print one.
        held = [p._text for app in self.sandbox.state.applications.values() for p in app.passwords]
        return [self.worker.function_key, self.sandbox.operator.client_secret, self.sandbox.auditor.client_secret,
                self.sandbox.remediator.client_secret, *held]

    def info_file(self, name: str, **changes: Any) -> Path:
        """An info file like `serve`'s line, with some values changed."""
        path = self.directory / name
        path.write_text(json.dumps({**json.loads(self.info.read_text()), **changes}) + "\n")
        return path


@dataclass
class Run:
    status: int
    out: str
    err: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Azurite, the sandbox and the function app in a worker process, and the info file `python -m sandbox
    serve | tee info.json` would leave (its identities file beside it, as serve writes it)."""
    directory = tmp_path_factory.mktemp("operator-cli")
    with Azurite() as azurite, Sandbox(scenario="expired-secret") as sandbox:
        worker = WorkerProcess(log_path=directory / "worker.log")
        worker.start(remediator_settings(sandbox, azurite.connection_string))
        try:
            identities = directory / "identities.json"
            identities.touch(mode=0o600)
            identities.write_text(json.dumps({
                "remediatorClientId": sandbox.remediator.client_id,
                "remediatorClientSecret": sandbox.remediator.client_secret,
                "operatorClientId": sandbox.operator.client_id, "operatorClientSecret": sandbox.operator.client_secret,
                "auditorClientId": sandbox.auditor.client_id, "auditorClientSecret": sandbox.auditor.client_secret}))
            info = directory / "info.json"
            info.write_text(json.dumps({
                **sandbox.endpoints, "functions": worker.url, "functionKey": worker.function_key,
                "ca": sandbox.ca_path, "tenantId": sandbox.tenant_id, "subscriptionId": sandbox.subscription_id,
                "remediatorClientId": sandbox.remediator.client_id, "operatorClientId": sandbox.operator.client_id,
                "auditorClientId": sandbox.auditor.client_id, "apiClientId": sandbox.api_client_id,
                "apiAppIdUri": sandbox.api_app_id_uri, "identitiesFile": str(identities), "stateDir": None,
                "storage": azurite.connection_string, "workerLog": str(worker.log_path)}) + "\n")
            yield Live(sandbox, worker, info, directory)
        finally:
            worker.stop()


def run_main(live: Live, *args: str) -> Run:
    """`python -m remediation ARGS` in this process; asserts its output holds no secret, token or traceback."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            status = exit_.code if isinstance(exit_.code, int) else 2
    result = Run(status, out.getvalue(), err.getvalue())
    for text in (result.out, result.err):
        assert "eyJ" not in text, "a token was printed"
        assert "Traceback" not in text
        for secret in live.secrets:
            assert secret not in text, "a secret was printed"
    return result


@pytest.fixture
def cli(live: Live, monkeypatch: pytest.MonkeyPatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "160")
    return lambda *args: run_main(live, *args)


@pytest.fixture(scope="module")
def planned(live: Live) -> dict[str, Any]:
    """One dry run through the CLI, with what Azure held before and after it and the writes Azure saw."""
    before = _azure(live.sandbox)
    live.sandbox.state.requests.clear()
    run = run_main(live, "dry-run", live.cluster_id, "--reason", REASON, "--sandbox", str(live.info))
    # The outcome topic is told the plan (a Remediator.Remediation.Planned event): a notice, not a change to Azure.
    # A Resource Graph query is a POST that reads (the fan-out's clusters).
    writes = [route for name, api in live.sandbox.snapshot()["requests"].items() if name != "topic" for route in api
              if route.startswith(WRITES) and route != "POST Microsoft.ResourceGraph/resources"]
    return {"run": run, "before": before, "after": _azure(live.sandbox), "writes": writes}


def _azure(sandbox: Sandbox) -> dict[str, Any]:
    snapshot = sandbox.snapshot()
    clusters = [{k: c[k] for k in ("provisioningState", "clientId", "heldKeyId")} for c in snapshot["clusters"]]
    return {"applications": snapshot["applications"], "keyVault": snapshot["keyVault"], "clusters": clusters}


def _one_remediation(live: Live, cli) -> dict[str, Any]:
    listed = cli("list", "--cluster", live.cluster_id, "--json", "--sandbox", str(live.info))
    assert listed.status == 0, listed.err
    [remediation] = json.loads(listed.out)["value"]
    return remediation


# ------------------------------------------------------------------------------------ against the sandbox


def test_dry_run_prints_the_decision_and_the_plan_and_writes_nothing_to_azure(planned: dict[str, Any]) -> None:
    run = planned["run"]
    assert run.status == 0, run.err
    assert "Decision DryRun: checking before the change window" in run.out  # the operator's own words
    assert "of rg-payments/aks-payments" in run.out
    assert "Planned: dry run planned" in run.out
    plan = run.out.split("Plan (nothing was written)\n", 1)[1]
    assert plan.startswith("  1. add a password named 'aks-sp-remediator ")
    numbered = [line.split(".")[0].strip() for line in plan.splitlines() if not line.startswith("     ")]
    assert numbered == [str(n) for n in range(1, len(numbered) + 1)] and len(numbered) >= 3
    assert "az aks update-credentials -g rg-payments -n aks-payments" in " ".join(plan.split())  # wrapped lines
    # Nothing written to Azure: the same passwords, secrets and cluster, and not one write but sign-ins.
    assert planned["after"] == planned["before"]
    assert [route for route in planned["writes"] if "token" not in route] == []


def test_list_shows_the_dry_run_as_a_table(live: Live, cli, planned: dict[str, Any]) -> None:
    remediation = _one_remediation(live, cli)
    run = cli("list", "--sandbox", str(live.info))
    assert run.status == 0, run.err
    header, *rows = run.out.splitlines()
    assert header.split() == ["ID", "CLUSTER", "STATUS", "SOURCE", "CREATED", "(UTC)", "REASON"]
    [row] = [row for row in rows if row.startswith(remediation["id"][:8])]
    assert row.split()[1:4] == ["rg-payments/aks-payments", "Planned", "manual"]
    assert row.rstrip().endswith("dry run planned")
    assert remediation["id"] not in run.out  # the short id, the table stays narrow
    # --active: unfinished ones only; a planned dry run is finished.
    active = cli("list", "--active", "--cluster", live.cluster_id, "--sandbox", str(live.info))
    assert (active.status, active.out) == (0, "No remediations.\n")


def test_show_prints_the_timeline_by_full_or_short_id(live: Live, cli, planned: dict[str, Any]) -> None:
    remediation = _one_remediation(live, cli)
    full = cli("show", remediation["id"], "--sandbox", str(live.info))
    short = cli("show", remediation["id"][:8], "--sandbox", str(live.info))
    assert full.status == short.status == 0, full.err + short.err
    assert full.out == short.out
    out = full.out
    assert out.startswith(f"Remediation {remediation['id']} (dry run)\n")
    operator = live.sandbox.state.applications[live.sandbox.operator.client_id]
    for line in ("  cluster         rg-payments/aks-payments", "  status          Planned: dry run planned",
                 "  source          manual", "  resource id     " + live.cluster_id,
                 f"  requested by    object {operator.sp_object_id}, app {live.sandbox.operator.client_id}"):
        assert line in out.splitlines(), line
    steps = out.split("Steps\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert steps[0].split() == ["TIME", "(UTC)", "STEP", "CODE", "DETAIL"]
    [plan_step] = [row for row in steps[1:] if row.split()[2:4] == ["plan", "Planned"]]
    assert " ".join(plan_step.split()[4:]).startswith("dry run: nothing was written")
    assert "Plan (nothing was written)\n  1. add a password" in out
    as_json = cli("show", remediation["id"], "--json", "--sandbox", str(live.info))
    assert json.loads(as_json.out) == remediation


def test_decisions_show_the_reason_codes(live: Live, cli, planned: dict[str, Any]) -> None:
    remediation = _one_remediation(live, cli)
    run = cli("decisions", "--cluster", live.cluster_id, "--sandbox", str(live.info))
    assert run.status == 0, run.err
    header, *rows = run.out.splitlines()
    assert header.split() == ["TIME", "(UTC)", "CLUSTER", "SOURCE", "CODE", "ACT", "REMEDIATION", "MESSAGE"]
    [row] = [row for row in rows if remediation["id"][:8] in row]
    assert row.split()[2:7] == ["rg-payments/aks-payments", "manual", "DryRun", "start", remediation["id"][:8]]
    as_json = json.loads(cli("decisions", "--json", "--cluster", live.cluster_id, "--sandbox", str(live.info)).out)
    assert [d["code"] for d in as_json["value"]] == ["DryRun"]


def test_the_auditor_may_list_but_not_start_a_dry_run(live: Live, cli, planned: dict[str, Any]) -> None:
    listed = cli("list", "--as", "auditor", "--sandbox", str(live.info))
    assert listed.status == 0 and "rg-payments/aks-payments" in listed.out
    count = len(json.loads(cli("list", "--json", "--sandbox", str(live.info)).out)["value"])

    refused = cli("dry-run", live.cluster_id, "--as", "auditor", "--sandbox", str(live.info))

    assert refused.status == 1
    assert refused.out == ""
    assert refused.err.startswith("error: 403 MissingRole: the caller (object id ")
    assert "lacks the app role Remediations.Write" in refused.err
    assert len(json.loads(cli("list", "--json", "--sandbox", str(live.info)).out)["value"]) == count


def test_api_errors_exit_1_with_their_code_and_message_and_3_when_not_found(live: Live, cli) -> None:
    # As az: 3 for what does not exist, one line on stderr.
    unknown = cli("show", "0" * 32, "--sandbox", str(live.info))
    assert unknown.status == 3 and unknown.out == ""
    assert unknown.err == f"error: 404 RemediationNotFound: there is no remediation {'0' * 32}\n"
    no_prefix = cli("show", "zzzz", "--sandbox", str(live.info))
    assert no_prefix.status == 3 and "no remediation id starts with zzzz" in no_prefix.err
    assert len(no_prefix.err.splitlines()) == 1
    # A wrong function key: the host's empty 401, explained; the wrong key is not echoed either.
    wrong_key = live.info_file("wrong-key.json", functionKey="not-the-key-" + "k" * 20)
    refused = cli("list", "--sandbox", str(wrong_key))
    assert refused.status == 1 and "401 Unauthorized: the function key was refused" in refused.err
    assert "kkkk" not in refused.err
    # A managed-identity cluster: the decision's reason code, as the API answers it.
    decided = cli("dry-run", live.cluster_id.replace("aks-payments", "aks-msi"), "--sandbox", str(live.info))
    assert decided.status == 1
    assert decided.err.startswith("error: 409 ManagedIdentityCluster: cluster aks-msi uses a managed identity")


def test_usage_errors_exit_2_and_connection_errors_1_with_a_clear_message(live: Live, cli,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: str, says: str, status: int = 2) -> None:
        run = cli(*args)
        assert run.status == status, (args, run)
        assert run.out == ""
        assert says in run.err, (args, run.err)
        # A usage error: the command's usage, then the one line saying what is wrong; any other error: one line.
        assert len(run.err.splitlines()) == 1 or (status == 2 and run.err.startswith("usage: python -m remediation")
                                                  and run.err.splitlines()[-1].startswith("python -m remediation ")
                                                  and ": error: " in run.err.splitlines()[-1]), run.err

    refused("list", says="missing --api URL (or REMEDIATOR_API_URL), --function-key KEY")
    refused("list", "--api", "not a url", "--function-key", "k", "--app-id-uri", "api://x",
            says="--api must be the function app's base URL")
    refused("list", "--api", "http://func.example.com", "--function-key", "k", "--app-id-uri", "api://x",
            says="--api must use https")
    refused("list", "--api", "https://func.example.com/?code=abc", "--function-key", "k", "--app-id-uri", "api://x",
            says="no query")
    refused("list", "--sandbox", str(live.directory / "absent.json"), says="cannot read --sandbox")
    refused("list", "--sandbox", str(live.worker.log_path), says="does not start with a JSON line")
    refused("list", "--sandbox", str(live.info_file("no-functions.json", functions=None)),
            says="without the function app")
    refused("list", "--sandbox", str(live.info), "--api", "https://x.example.com", says="drop --api")
    refused("list", "--as", "auditor", says="--as chooses one of the sandbox's identities")
    refused("dry-run", "/subscriptions/nope", "--sandbox", str(live.info), says="argument CLUSTER_ID")
    refused("show", "../../admin", "--sandbox", str(live.info), says="argument ID")
    refused("list", "--limit", "500", "--sandbox", str(live.info), says="from 1 to 200")
    # The API not listening: said so, after the token was obtained (and not printed).
    closed = live.info_file("closed.json", functions=f"http://127.0.0.1:{free_port()}")
    refused("list", "--sandbox", str(closed), says="cannot reach the API at http://127.0.0.1:", status=1)
    # The environment fills in the options; the Azure CLI's token is then asked for (no `az` here, or no
    # login for this made-up API): no token, exit 2.
    monkeypatch.setenv("REMEDIATOR_API_URL", live.worker.url)
    monkeypatch.setenv("REMEDIATOR_FUNCTION_KEY", live.worker.function_key)
    monkeypatch.setenv("REMEDIATOR_API_APP_ID_URI", live.sandbox.api_app_id_uri)
    refused("list", says=f"cannot get a token for {live.sandbox.api_app_id_uri}/.default as the Azure CLI's account",
            status=1)


def test_a_secret_in_an_error_message_is_scrubbed_before_it_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    # No message is built with one; this is the second line of defence, at the edge.
    target = Target("https://func.example.com", function_key="function-key-123", scope="api://x/.default",
                    credential=None, client_secret="client-secret-456")  # type: ignore[arg-type]
    assert "function-key-123" not in repr(target) and "client-secret-456" not in repr(target)
    api = ApiClient(target)
    _complain("error: function-key-123 and client-secret-456", api)
    api.close()
    assert capsys.readouterr().err == "error: <redacted> and <redacted>\n"


# ----------------------------------------------------------------------------------- rendering, offline


FANNED_OUT = {
    "id": "4c1d2e3f" + "0" * 24, "clusterResourceId": "/subscriptions/s/resourceGroups/rg-a/providers/"
    "Microsoft.ContainerService/managedClusters/aks-a", "dryRun": False, "source": "event", "status": "Succeeded",
    "mode": "remediate", "reason": "repaired", "cause": "AADSTS7000222", "requestedBy": None,
    "createdAt": "2025-06-01T10:00:00+00:00", "updatedAt": "2025-06-01T10:05:00+00:00", "finishedAt": None,
    "steps": [{"name": "mint_secret", "at": "2025-06-01T10:01:00+00:00", "code": "SecretMinted", "detail": "x" * 300}],
    "servicePrincipal": {"clientId": "app-1", "applicationObjectId": None, "newKeyId": "key-new"},
    "keyVault": None, "resetAttempts": 2,
    "clusters": [{"clusterResourceId": "/subscriptions/s/resourceGroups/rg-a/providers/Microsoft.ContainerService/"
                  "managedClusters/aks-a", "status": "Succeeded", "code": "Reset", "detail": "ok", "resetAttempts": 1,
                  "updatedAt": "2025-06-01T10:04:00Z"},
                 {"clusterResourceId": "/subscriptions/s/resourceGroups/rg-b/providers/Microsoft.ContainerService/"
                  "managedClusters/aks-b", "status": "Failed", "code": None, "detail": None}],
    "retiredPasswords": [{"keyId": "key-old", "hint": "abc", "endDateTime": "2025-05-01T00:00:00Z",
                          "removedAt": "2025-06-01T10:05:00+00:00"}],
    "error": {"code": "ResetFailed", "message": "aks-b did not come back"},
}


def test_the_fan_out_and_retired_passwords_are_shown_when_present() -> None:
    out = timeline(FANNED_OUT, width=100)
    lines = out.splitlines()
    assert "  mode            remediate" in lines and "  application     appId app-1" in lines
    clusters = out.split("Clusters using this application\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(clusters[1].split()) == 6 and set(clusters[1].replace(" ", "")) == {"-"}  # a rule under each heading
    assert clusters[2].split()[:6] == ["rg-a/aks-a", "Succeeded", "Reset", "1", "2025-06-01", "10:04:00"]
    assert clusters[3].split() == ["rg-b/aks-b", "Failed"]
    assert "key-old  abc   2025-05-01 00:00:00  2025-06-01 10:05:00" in out
    assert "Error\n  ResetFailed: aks-b did not come back" in out
    # The long detail is wrapped, not cut; only an ARM id runs over, kept whole to be copied.
    assert all(len(line) <= 100 for line in lines if "/subscriptions/" not in line)
    assert out.count("x") == 300
    table = remediations_table([FANNED_OUT], width=100)
    assert "rg-a/aks-a +1" in table  # and one more cluster


@pytest.mark.parametrize("view", [{}, {"id": None, "steps": None, "clusters": [None, 3, {"status": None}],
                                       "retiredPasswords": "no", "error": "boom", "plan": None},
                                  {"requestedBy": "someone", "servicePrincipal": [], "createdAt": "yesterday"},
                                  None, [], "text"])
def test_any_shape_renders_without_a_crash(view: Any) -> None:
    assert timeline(view, width=80).startswith("Remediation")
    assert remediations_table([view], width=80)
    assert decisions_table([view], width=80)


def test_a_narrow_terminal_cuts_the_last_cell_but_never_drops_a_column() -> None:
    view = {**FANNED_OUT, "reason": "why " * 50,
            "clusterResourceId": FANNED_OUT["clusterResourceId"].replace("aks-a", "aks-" + "long" * 20)}
    header, rule, row = remediations_table([view], width=60).splitlines()
    assert header.split() == ["ID", "CLUSTER", "STATUS", "SOURCE", "CREATED", "(UTC)", "REASON"]
    assert row.split()[0] == "4c1d2e3f" and row.endswith("…")
    assert len(row.split()[1]) == 44 and row.split()[1].endswith("…")  # a column is at most 44 wide
    assert len(row) == len(rule) > 60  # the reason keeps 20 characters: the line runs over, no column is lost


def test_text_from_the_api_cannot_forge_lines_or_move_the_cursor() -> None:
    view = {"id": "abc", "reason": "fine\n4c1d2e3f  forged/line  Succeeded\x1b[2J", "status": "Failed"}
    table = remediations_table([view], width=120)
    assert "\x1b" not in table and len(table.splitlines()) == 3  # the headings, their rule, one row
    assert "\x1b" not in timeline(view, width=120)


# ---------------------------------------------------------------- orphans and doctor


def test_orphans_lists_an_unused_owned_application_with_its_end_dates_and_delete_command(live: Live, cli) -> None:
    planted = live.sandbox.state.add_application("aks-left-behind", owners={live.sandbox.remediator.client_id})
    live.sandbox.state.add_password(planted, "rbac")
    run = cli("orphans", "--sandbox", str(live.info))
    assert run.status == 0, run.err
    assert f"aks-left-behind ({planted.app_id}): owned by the remediator" in run.out
    assert f"delete: az ad app delete --id {planted.app_id}" in run.out
    assert "aks-payments-sp" not in run.out and "aks-healthy-sp" not in run.out  # in use
    listed = json.loads(cli("orphans", "--sandbox", str(live.info), "--json").out)["value"]
    assert [o["appId"] for o in listed] == [planted.app_id] and listed[0]["passwords"][0]["endDateTime"]


def _cache(live: Live, entries: dict[str, tuple[str, str]]) -> Path:
    path = live.directory / "aksServicePrincipal.json"
    path.write_text(json.dumps({sub: {"service_principal": app, "client_secret": secret}
                                for sub, (app, secret) in entries.items()}))
    return path


def test_doctor_warns_of_an_expired_a_soon_ending_and_a_missing_cached_principal(live: Live, cli) -> None:
    state = live.sandbox.state
    expired = next(a for a in state.applications.values() if a.display_name == "aks-payments-sp")
    healthy = next(a for a in state.applications.values() if a.display_name == "aks-healthy-sp")
    soon = state.add_application("aks-cli-cached-sp")
    state.add_password(soon, "rbac", end=state.now() + timedelta(days=10))
    gone = "0b1f5f2e-0000-4000-8000-00000000dead"
    path = _cache(live, {"sub-expired": (expired.app_id, state.secret_text_of_cluster("aks-payments")),
                         "sub-valid": (healthy.app_id, state.secret_text_of_cluster("aks-healthy")),
                         "sub-soon": (soon.app_id, soon.passwords[-1]._text),
                         "sub-gone": (gone, "a-secret-of-a-deleted-app")})
    run = cli("doctor", "--file", str(path), "--sandbox", str(live.info), "--json")
    assert run.status == 1, run.err
    assert "a-secret-of-a-deleted-app" not in run.out + run.err
    found = {f["subscriptionId"]: f for f in json.loads(run.out)["findings"]}
    assert (found["sub-expired"]["level"], found["sub-expired"]["code"]) == ("error", "CachedSecretRefused")
    assert "expired" in found["sub-expired"]["message"]
    assert "az ad app credential reset --id" in found["sub-expired"]["fix"]
    assert (found["sub-valid"]["level"], found["sub-valid"]["code"]) == ("ok", "Valid")
    assert (found["sub-soon"]["level"], found["sub-soon"]["code"]) == ("warning", "ExpiresSoon")
    assert (found["sub-gone"]["level"], found["sub-gone"]["code"]) == ("error", "ApplicationNotFound")
    text = cli("doctor", "--file", str(path), "--sandbox", str(live.info))
    assert "[error] subscription sub-expired" in text.out and "fix: remove subscription sub-expired's entry" in text.out
    # Every sign-in with a cached secret logged at --debug: the calls, never the secret (run_main checks them all).
    debug = cli("doctor", "--file", str(path), "--sandbox", str(live.info), "--debug")
    assert debug.out == text.out and "oauth2/v2.0/token" in debug.err
    assert "a-secret-of-a-deleted-app" not in debug.err


def test_doctor_without_a_cache_says_so_and_a_broken_cache_is_a_clear_error(live: Live, cli) -> None:
    missing = cli("doctor", "--file", str(live.directory / "none.json"), "--sandbox", str(live.info))
    assert missing.status == 0 and "No cached AKS service principal" in missing.out
    broken = live.directory / "broken.json"
    broken.write_text('{"sub": {"service_principal": "x", "client_secret": ')
    run = cli("doctor", "--file", str(broken), "--sandbox", str(live.info))
    assert run.status == 1 and "is not JSON" in run.err and "client_secret" not in run.err
    assert run.out == "" and len(run.err.splitlines()) == 1


# ---------------------------------------------------------------- fleet health


def test_health_prints_every_cluster_with_its_credential_health_and_writes_nothing(live: Live, cli) -> None:
    before = _azure(live.sandbox)
    run = cli("health", "--sandbox", str(live.info), "--as", "auditor")
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split()[:4] == ["CLUSTER", "HEALTH", "DAYS", "LEFT"]
    assert any("aks-payments" in line and " expired " in line for line in lines), run.out
    assert "1 expired" in run.out and "--enable-managed-identity" in run.out
    listed = json.loads(cli("health", "--sandbox", str(live.info), "--only", "expired", "--json").out)
    assert [c["name"] for c in listed["value"]] == ["aks-payments"]
    assert listed["value"][0]["action"] is None  # the report only reads; the timer acts
    assert _azure(live.sandbox) == before


def test_migrate_plans_prints_the_fleets_plans_as_the_remediator_computes_them_and_writes_nothing(live: Live,
                                                                                                 cli) -> None:
    before = _azure(live.sandbox)
    run = cli("migrate", "plans", "--sandbox", str(live.info), "--as", "auditor", "-o", "json")
    assert run.status == 0, run.err
    result = json.loads(run.out)
    assert {p["cluster"].rsplit("/", 1)[1] for p in result["value"]} == {"aks-payments", "aks-healthy"}  # not aks-msi
    assert result["writes"] == 0 and result["errors"] == [] and result["healthReport"]["generatedAt"]
    expired = json.loads(cli("migrate", "plans", "--sandbox", str(live.info), "--health", "expired", "-o", "json").out)
    assert [p["cluster"] for p in expired["value"]] == [live.cluster_id]
    text = cli("migrate", "plans", "--sandbox", str(live.info))
    assert text.status == 0 and "--enable-managed-identity" in text.out and "nothing was written" in text.out
    assert _azure(live.sandbox) == before


def test_health_refuses_an_unknown_filter_with_a_clear_error(live: Live, cli) -> None:
    run = cli("health", "--sandbox", str(live.info), "--only", "broken")
    assert run.status == 1 and "InvalidHealthFilter" in run.err, run


# ---------------------------------------------------------------- in the Azure CLI's shape


def test_health_in_each_of_the_azure_clis_formats_and_with_a_query(live: Live, cli) -> None:
    sandbox = ("--sandbox", str(live.info), "--as", "auditor")
    table = cli("health", *sandbox, "-o", "table")
    assert (table.status, table.err) == (0, "")
    header, rule, *rows = table.out.splitlines()
    assert header.split()[:5] == ["CLUSTER", "HEALTH", "DAYS", "LEFT", "ENDS"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert table.out == cli("health", *sandbox).out  # table is the default
    document = json.loads(cli("health", *sandbox, "-o", "json").out)
    expired = json.loads(cli("health", *sandbox, "-o", "json", "--query", "value[?health=='expired'].name").out)
    assert expired == ["aks-payments"]
    tsv = cli("health", *sandbox, "-o", "tsv", "--query", "value[].[name, health]")
    assert sorted(line.split("\t") for line in tsv.out.splitlines()) == sorted(
        [c["name"], c["health"]] for c in document["value"])
    assert cli("health", *sandbox, "-o", "tsv", "--query", "counts.expired").out == "1\n"
    chosen = cli("health", *sandbox, "--query", "value[?health=='expired'].{Name: name, Health: health}").out
    assert chosen.splitlines()[0].split() == ["Name", "Health"] and chosen.splitlines()[2].split() == [
        "aks-payments", "expired"]
    as_yaml = yaml.safe_load(cli("health", *sandbox, "-o", "yaml").out)
    assert {c["name"]: c["health"] for c in as_yaml["value"]} == {c["name"]: c["health"] for c in document["value"]}
    assert cli("health", *sandbox, "-o", "none").out == ""


def test_debug_and_verbose_log_the_calls_to_stderr_and_never_a_secret(live: Live, cli) -> None:
    quiet = cli("list", "--sandbox", str(live.info))
    debug = cli("list", "--sandbox", str(live.info), "--debug")
    verbose = cli("list", "--sandbox", str(live.info), "--verbose")
    assert quiet.err == "" and debug.out == verbose.out == quiet.out  # the logs go to stderr only
    assert "INFO: remediation.cli.api: signed in as the sandbox's operator identity for api://" in debug.err
    assert "DEBUG: remediation.cli.api: GET /api/remediations?limit=50: 200, " in debug.err
    assert "urllib3" in debug.err  # the HTTP client's own lines too, as az --debug shows them
    assert verbose.err.startswith("INFO: signed in as the sandbox's operator identity")
    assert all(line.startswith(("INFO: ", "WARNING: ")) for line in verbose.err.splitlines())
    # run_main has checked that neither holds the key, a client secret or anything like a token.


def test_progress_is_drawn_on_a_terminal_and_the_output_stays_the_same(live: Live, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    env = {**{k: v for k, v in os.environ.items() if k not in ENV}, "COLUMNS": "160"}
    command = [sys.executable, "-m", "remediation", "health", "--sandbox", str(live.info), "--as", "auditor"]
    root = Path(__file__).resolve().parent.parent
    piped = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert (piped.returncode, piped.stderr) == (0, "")
    main_fd, terminal = pty.openpty()
    try:
        done = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=terminal, env=env)
        os.close(terminal)
        out = done.communicate(timeout=120)[0].decode()
        drawn = b""
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(main_fd)
    assert done.returncode == 0
    assert out == piped.stdout
    assert "Reading every cluster's credential health" in drawn.decode(errors="replace")
