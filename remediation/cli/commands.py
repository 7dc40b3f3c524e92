"""The operator's commands over the remediator's HTTP API: `list`, `show`, `decisions`, `dry-run`,
`orphans` and `health`; `doctor`, a check of this machine's Azure CLI cache (remediation/cli/doctor.py);
`preflight`, before `azd up` (remediation/cli/preflight.py); and `completion`, the shell's.

    python -m remediation list [--cluster ID] [--active] [--limit N]
    python -m remediation show ID
    python -m remediation decisions [--cluster ID] [--limit N]
    python -m remediation dry-run CLUSTER_ID [--reason TEXT] [--wait SECONDS]
    python -m remediation orphans
    python -m remediation health [--only expired,expiring]
    python -m remediation doctor [--file PATH] [--warn-days N] [--tenant ID]
    python -m remediation preflight [--cloud NAME] [--credential azd|cli|default]
    python -m remediation migrate plan [CLUSTER_ID ...] [--subscription ID] [--identity-group RG]
    python -m remediation migrate plans [--health expired,expiring]
    python -m remediation completion bash

Every command but `completion` takes the Azure CLI's global arguments: `--output/-o
table|json|jsonc|yaml|yamlc|tsv|none` (default table) and `--query JMESPATH`, with az's semantics
(remediation/cli/output.py), and `--verbose`, `--debug`, `--only-show-errors`. `--json` is a deprecated,
hidden alias of `-o json` (it prints the same document it always printed, and a warning).

Where and as whom, on every API command: the deployed app with `--api URL --function-key KEY
--app-id-uri URI` (or REMEDIATOR_API_URL, REMEDIATOR_FUNCTION_KEY, REMEDIATOR_API_APP_ID_URI) and
a token from azure-identity for `<app id uri>/.default` (AzureCliCredential, what `az login` gives;
`--credential default` for DefaultAzureCredential); or the local sandbox with `--sandbox INFO_FILE`,
the JSON line `python -m sandbox serve` prints, as its operator identity (`--as auditor`: the
read-only one).

Exit status, as az's: 0 done; 1 an error (the API's, printed with its code; an unreachable API; no
token; a query that fails on the result; a dry run that failed; for doctor and preflight, a finding
that needs action); 2 a usage error (an option missing or malformed, or the files and variables they
name); 3 not found (the API's 404: `show` of an unknown remediation). Errors are one line on stderr.
The function key, the token and the sandbox's client secrets are sent only in request headers and the
token request; nothing printed or logged (errors included) contains them.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from remediation.app.settings import CLOUD_ENDPOINTS
from remediation.cli import console, output, render
from remediation.cli import doctor as doctor_module
from remediation.cli.api import (
    ENV_API,
    ENV_APP_ID_URI,
    ENV_KEY,
    Answer,
    ApiClient,
    ApiError,
    NotAsked,
    UsageError,
    azure_credential,
    field_of,
    resolve_target,
    sandbox_azure,
    token_tenant,
)
from remediation.cli.output import OutputError, emit
from remediation.cli.preflight import PUBLIC_CLOUD
from remediation.errors import AuthenticationUnavailableError, InvalidInputError, RemediationError
from remediation.ids import ClusterId

# Exit statuses, as the Azure CLI's (and 130 for Ctrl-C, as a shell's).
OK, ERROR, USAGE, NOT_FOUND, INTERRUPTED = 0, 1, 2, 3, 130

MOST = 200  # the API's largest page
TERMINAL = frozenset({"Succeeded", "Failed", "Planned"})
_REMEDIATION_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_FULL_ID_LENGTH = 32  # uuid4().hex


# ------------------------------------------------------------------------------------------ commands


Command = Callable[[argparse.Namespace, ApiClient, TextIO], int]


def list_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    params = {"limit": str(args.limit)}
    if args.cluster:
        params["clusterResourceId"] = args.cluster
    if args.active:
        params["active"] = "true"
    body = api.get("remediations", params).body
    if args.active and isinstance(body, dict):  # a cluster's list is not filtered by the API
        body = {**body, "value": [v for v in render.items(body.get("value"))
                                  if render.text(field_of(v, "status")) not in TERMINAL]}
    emit(args, out, body, lambda result, width, color: render.remediations_table(
        render.items(field_of(result, "value")), width=width, color=color) + "\n")
    return OK


def show_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    view = api.get(f"remediations/{quote(_full_id(args.id, api), safe='')}").body
    emit(args, out, view, lambda result, width, color: render.timeline(result, width=width, color=color))
    return OK


def decisions_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    params = {"limit": str(args.limit)}
    if args.cluster:
        params["clusterResourceId"] = args.cluster
    body = api.get("decisions", params).body
    emit(args, out, body, lambda result, width, color: render.decisions_table(
        render.items(field_of(result, "value")), width=width, color=color) + "\n")
    return OK


def dry_run_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    """POST a dry run, then follow it (its Location) until it is planned, for at most --wait seconds.
    Exit 1 if the API refuses it or the dry run fails; 0 if it is planned, or still running when the wait ends.
    The result: the remediation's view with the decision."""
    request: dict[str, Any] = {"clusterResourceId": args.cluster_id, "dryRun": True}
    if args.reason:
        request["reason"] = args.reason
    answer = api.post("remediations", request)
    decision = field_of(answer.body, "decision")
    view = _follow(api, answer, args.wait)
    status = render.text(field_of(view, "status"))
    result = {**view, "decision": decision} if isinstance(view, dict) else view
    joined = answer.status == 200
    emit(args, out, result, lambda result, width, color: render.dry_run_text(
        result, joined=joined, waited=args.wait, width=width, color=color))
    return ERROR if status == "Failed" else OK


def orphans_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    """Applications the remediator owns or minted passwords on that no cluster in scope uses; nothing deleted."""
    body = api.get("orphans").body
    emit(args, out, body, lambda result, width, color: render.orphans_text(render.items(field_of(result, "value"))))
    return OK


def health_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    """Every cluster's credential health, read now (Resource Graph, Graph); nothing is written."""
    with console.progress("Reading every cluster's credential health"):
        body = api.get("health", {"health": args.only} if args.only else None).body
    if getattr(args, "html", None):  # one self-contained page instead (remediation/cli/report.py)
        from remediation.cli.report import health_html
        try:
            Path(args.html).write_text(health_html(body), encoding="utf-8")
        except OSError as err:
            raise UsageError(f"cannot write {args.html}: {err.strerror or err}") from err
        out.write(f"Wrote {args.html}: {len(render.items(field_of(body, 'value')))} cluster(s), the report taken "
                  f"{render.when(field_of(body, 'generatedAt'))} UTC.\n")
        return OK
    emit(args, out, body, lambda result, width, color: render.health_table(result, width=width, color=color) + "\n")
    return OK


def migration_plans_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    """The fleet's migration plans as the deployed remediator computes them (`GET /api/migration-plans`)."""
    from remediation.cli import migrate

    with console.progress("Reading the fleet's migration plans"):
        body = api.get("migration-plans", {"health": args.health} if args.health else None).body
    emit(args, out, body, lambda result, width, color: migrate.render(result))
    return OK


def _follow(api: ApiClient, answer: Answer, wait: float) -> Any:
    view = answer.body
    remediation_id = render.text(field_of(view, "id"))
    if not remediation_id:
        return view
    url = answer.location if answer.location and api.same_origin(answer.location) else \
        api.url(f"remediations/{quote(remediation_id, safe='')}")
    started = time.monotonic()
    deadline, delay = started + wait, 0.25
    if render.text(field_of(view, "status")) in TERMINAL or wait <= 0:
        return view
    with console.progress(f"Waiting for the plan ({render.text(field_of(view, 'status')) or 'unknown'})",
                          total=wait) as shown:
        while render.text(field_of(view, "status")) not in TERMINAL and time.monotonic() < deadline:
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 2.0)
            view = api.get_url(url).body
            shown.update(f"Waiting for the plan ({render.text(field_of(view, 'status')) or 'unknown'})",
                         time.monotonic() - started)
    return view


def _full_id(given: str, api: ApiClient) -> str:
    """A full remediation id, or the one recent remediation whose id starts with `given` (the tables
    show the first 8 characters)."""
    if len(given) >= _FULL_ID_LENGTH:
        return given
    recent = render.items(field_of(api.get("remediations", {"limit": str(MOST)}).body, "value"))
    found = sorted({render.text(field_of(r, "id")) for r in recent
                    if render.text(field_of(r, "id")).lower().startswith(given.lower())})
    if not found:
        raise ApiError(404, "NotFound", f"no remediation id starts with {given} among the {MOST} most recent; "
                                        "give the full id")
    if len(found) > 1:
        raise UsageError(f"{given} is the start of {len(found)} remediation ids: {', '.join(found[:5])}; give more")
    return found[0]


# ------------------------------------------------------------------------------------------- arguments


def _cluster_id(value: str) -> str:
    try:
        return str(ClusterId.parse(value))
    except InvalidInputError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _remediation_id(value: str) -> str:
    if not _REMEDIATION_ID.match(value):
        raise argparse.ArgumentTypeError("a remediation id is letters, digits and dashes (the id, or its start)")
    return value


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MOST:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MOST}")
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= 600:
        raise argparse.ArgumentTypeError("seconds from 0 to 600")
    return seconds


def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group(
        "where and as whom", "The deployed app (--api, --function-key, --app-id-uri, each with its environment "
        "variable; a token from the Azure CLI's login, or DefaultAzureCredential), or the local sandbox "
        "(--sandbox).")
    group.add_argument("--api", metavar="URL", help=f"the function app's base URL, e.g. "
                       f"https://func-remediator.azurewebsites.net (default: ${ENV_API})")
    group.add_argument("--function-key", metavar="KEY", help=f"the function key (default: ${ENV_KEY}; prefer the "
                       "variable: a flag shows in the process list)")
    group.add_argument("--app-id-uri", metavar="URI", help=f"the API's application ID URI; the token is for "
                       f"<URI>/.default (default: ${ENV_APP_ID_URI})")
    group.add_argument("--credential", choices=("cli", "default"), help="cli: AzureCliCredential, the account "
                       "`az login` signed in (the default); default: DefaultAzureCredential")
    group.add_argument("--sandbox", metavar="INFO_FILE", help="the local sandbox: a file holding the JSON line "
                       "`python -m sandbox serve` prints (e.g. `python -m sandbox serve | tee .sandbox/info.json`)")
    group.add_argument("--as", dest="identity", choices=("operator", "auditor"), help="with --sandbox: the "
                       "operator identity (Remediations.Write, the default) or the auditor (Remediations.Read)")
    return options


def add_operator_commands(commands: Any) -> None:
    """Add the operator's commands to `python -m remediation`'s subcommands: list, show, decisions, dry-run, orphans,
    health (over the API), doctor, preflight and completion. Each data command takes the global arguments
    (remediation/cli/output.py: --output/-o, --query, --verbose, --debug, --only-show-errors)."""
    connection, shown = _connection_options(), output.global_options()
    listing = commands.add_parser(
        "list", parents=[connection, shown], help="list remediations, newest first",
        description="Remediations as a table, newest first: the fleet's, or one cluster's with --cluster. The "
                    "result (-o json) is the API's answer: {\"value\": [remediation, ...]}.")
    listing.add_argument("--cluster", type=_cluster_id, metavar="ID", help="one cluster's (its ARM resource id)")
    listing.add_argument("--active", action="store_true", help="unfinished ones only")
    listing.add_argument("--limit", type=_limit, default=50, metavar="N", help=f"at most N (1-{MOST}; default 50)")
    listing.set_defaults(run=_api_command(list_command, listing))

    show = commands.add_parser(
        "show", parents=[connection, shown], help="show one remediation's timeline",
        description="One remediation: cluster, application, status, cause and requester; each step with its time, "
                    "code and detail; the clusters sharing its application and the passwords it retired; its error "
                    "or plan. Exit 3 when there is no such remediation.")
    show.add_argument("id", type=_remediation_id, metavar="ID",
                      help="the remediation id, or its start as `list` shows it")
    show.set_defaults(run=_api_command(show_command, show))

    decisions = commands.add_parser(
        "decisions", parents=[connection, shown], help="list decisions with their reason codes",
        description="What was decided for each hint (event, sweep, operator) and why, newest first. The result: "
                    "{\"value\": [decision, ...]}.")
    decisions.add_argument("--cluster", type=_cluster_id, metavar="ID", help="one cluster's (its ARM resource id)")
    decisions.add_argument("--limit", type=_limit, default=50, metavar="N", help=f"at most N (1-{MOST}; default 50)")
    decisions.set_defaults(run=_api_command(decisions_command, decisions))

    dry_run = commands.add_parser(
        "dry-run", parents=[connection, shown], help="plan a remediation of one cluster; writes nothing to Azure",
        description="Ask for a dry run (needs Remediations.Write): print the decision, wait for the plan and "
                    "print it. Nothing is written to Azure. The result: the remediation with its \"decision\".")
    dry_run.add_argument("cluster_id", type=_cluster_id, metavar="CLUSTER_ID", help="the cluster's ARM resource id")
    dry_run.add_argument("--reason", metavar="TEXT", help="why (recorded as the cause)")
    dry_run.add_argument("--wait", type=_seconds, default=30.0, metavar="SECONDS",
                         help="how long to wait for the plan (default 30; 0: do not wait)")
    dry_run.set_defaults(run=_api_command(dry_run_command, dry_run))

    orphans = commands.add_parser(
        "orphans", parents=[connection, shown], help="list applications the remediator left that no cluster uses",
        description="Applications the remediator owns, or that hold passwords it minted, that no cluster in its "
                    "scope uses any more: their passwords' end dates and the command to delete each. Nothing is "
                    "deleted. The result: {\"value\": [application, ...]}.")
    orphans.set_defaults(run=_api_command(orphans_command, orphans))

    health = commands.add_parser(
        "health", parents=[connection, shown], help="show every cluster's credential health",
        description="Every service-principal cluster in scope, read now through Resource Graph and Graph: healthy,"
                    " expiring within REMEDIATOR_EXPIRY_WARNING_DAYS, expired now, application missing, or managed"
                    " identity; with the permanent fix (a managed identity). Nothing is written. The result: "
                    "{\"value\": [cluster, ...], \"counts\", \"applications\", \"daysToNearestExpiry\", ...}; e.g. "
                    "-o tsv --query \"value[?health=='expired'].name\".")
    health.add_argument("--only", metavar="HEALTH[,HEALTH]", help="only these (expired, expiring, healthy,"
                                                                   " applicationMissing, managedIdentity)")
    health.add_argument("--html", metavar="PATH", help="write the report as one self-contained HTML page to PATH (an "
                        "expiry timeline, the counts, every cluster with its fix) instead of printing it")
    health.set_defaults(run=_api_command(health_command, health))

    doctor = commands.add_parser(
        "doctor", parents=[shown],
        help="check the Azure CLI's cached AKS service principal (~/.azure/aksServicePrincipal.json)",
        description="`az aks create` reuses the service principal cached in ~/.azure/aksServicePrincipal.json, "
                    "whose secret the CLI made valid for a year. For each cached entry: does the application "
                    "exist (Graph), does the secret still sign in (Entra ID), when do its passwords end; a warning "
                    "and the fix when it has expired or ends soon. The secret is never printed. The result: "
                    "{\"file\", \"findings\": [...]}. Exit 0: all fine (or no cache); 1: a warning, or an error "
                    "(the cache unreadable, no sign-in); 2: a usage error.")
    doctor.add_argument("--file", metavar="PATH", help=f"the cache (default {doctor_module.CACHE_FILE})")
    doctor.add_argument("--warn-days", type=_days, default=doctor_module.WARN_DAYS, metavar="N",
                        help=f"warn when a password ends within N days (default {doctor_module.WARN_DAYS})")
    doctor.add_argument("--tenant", metavar="ID", help="the tenant the cached principals sign in to (default: "
                        "$AZURE_TENANT_ID, else the signed-in account's)")
    doctor.add_argument("--credential", choices=("cli", "default"), help="how to read Graph: cli (the account "
                        "`az login` signed in, the default) or default (DefaultAzureCredential)")
    doctor.add_argument("--sandbox", metavar="INFO_FILE", help="check against the local sandbox instead (the "
                        "JSON line `python -m sandbox serve` prints), as its operator")
    doctor.set_defaults(run=_edge(_doctor, doctor))
    add_preflight_command(commands, shown)
    add_migrate_command(commands, shown, connection)
    add_completion_command(commands)


def add_preflight_command(commands: Any, shown: argparse.ArgumentParser | None = None) -> None:
    preflight = commands.add_parser(
        "preflight", parents=[shown or output.global_options()],
        help="check, before `azd up`, what would make the deployment fail or overlap another remediator",
        description="Read the deployment from the environment (the azd environment, as infra/main.bicepparam reads "
                    "it) and check with the deployer's own sign-in: the cloud (the Graph Bicep extension is public "
                    "cloud only), Flex Consumption in the region, the Entra roles the Graph modules need, another "
                    "remediator acting on the same clusters, and REMEDIATOR_ASSIGNABLE_ROLE_IDS. Writes nothing. "
                    "The result: {\"environment\", \"passed\", \"findings\": [...], ...}. Exit 0: ready (warnings "
                    "allowed); 1: a check failed, or the checks could not run (no sign-in); 2: a usage error (the "
                    "options, or the deployment's environment).")
    preflight.add_argument("--cloud", default=PUBLIC_CLOUD, metavar="NAME",
                           help=f"the cloud azd deploys to: {', '.join(CLOUD_ENDPOINTS)} (default {PUBLIC_CLOUD}; "
                                "azure.yaml's hook passes `azd config get cloud.name`)")
    preflight.add_argument("--credential", choices=("azd", "cli", "default"), default="azd",
                           help="who signs in: azd (`azd auth login`, the default), cli (`az login`) or default "
                                "(DefaultAzureCredential)")
    preflight.add_argument("--sandbox", metavar="INFO_FILE", help="rehearse against the local sandbox (the JSON line "
                           "`python -m sandbox serve` prints), as its operator")
    preflight.set_defaults(run=_edge(_preflight, preflight))


def add_migrate_command(commands: Any, shown: argparse.ArgumentParser,
                        connection: argparse.ArgumentParser | None = None) -> None:
    """`migrate plan`: the move to managed identity, planned with the operator's sign-in (remediation/cli/migrate.py);
    `migrate plans`: the fleet's, as the deployed remediator plans them (over the API). Nothing is written."""
    migrate = commands.add_parser("migrate", help="plan the move of service-principal clusters to managed identity",
                                  description="Moving clusters to managed identity (see the README). `plan` (with "
                                              "your sign-in) and `plans` (over the API) write nothing.")
    actions = migrate.add_subparsers(dest="migrate_action", metavar="ACTION", required=True)
    plan = actions.add_parser(
        "plan", parents=[shown], help="the roles to carry, the identities, the az commands and the window; no writes",
        description="For each cluster named (or every service-principal cluster of --subscription): the service "
                    "principal's role assignments split into the control-plane and the kubelet identity's, each "
                    "mapped, with blockers (management-group scope, REMEDIATOR_ASSIGNABLE_ROLE_IDS, deny lists); "
                    "whether a user-assigned identity is required; the az commands in order; the next maintenance "
                    "window; the disruption; what becomes of the old service principal. Read with your own sign-in "
                    "(az login), or the sandbox's operator with --sandbox. Nothing is written. The result: "
                    "{\"value\": [plan, ...], \"counts\", \"writes\": 0}.")
    plan.add_argument("cluster_ids", nargs="*", type=_cluster_id, metavar="CLUSTER_ID", help="a cluster's ARM id")
    plan.add_argument("--subscription", action="append", metavar="ID", help="every service-principal cluster of "
                      "this subscription (repeatable)")
    plan.add_argument("--identity-group", metavar="RG", help="the resource group for the user-assigned identities "
                      "(default: the cluster's)")
    plan.add_argument("--credential", choices=("cli", "default"), help="cli: `az login`'s account (the default); "
                      "default: DefaultAzureCredential")
    plan.add_argument("--sandbox", metavar="INFO_FILE", help="plan against the local sandbox (the JSON line "
                      "`python -m sandbox serve` prints), as its operator")
    plan.set_defaults(run=_edge(_migrate_plan, plan))
    plans = actions.add_parser(
        "plans", parents=[connection or _connection_options(), shown],
        help="every service-principal cluster's plan, from the remediator's health report (over the API)",
        description="The plan of every service-principal cluster in the remediator's health report, computed by "
                    "the deployed remediator with its own identity (GET /api/migration-plans; Remediations.Read). "
                    "Nothing is written. The result: {\"value\": [plan, ...], \"counts\", \"errors\", "
                    "\"healthReport\", \"writes\": 0}.")
    plans.add_argument("--health", metavar="HEALTH[,HEALTH]", help="only clusters in these health states (expired, "
                       "expiring, healthy, applicationMissing, unknown)")
    plans.set_defaults(run=_api_command(migration_plans_command, plans))


def _migrate_plan(args: argparse.Namespace, out: TextIO) -> int:
    from remediation.cli import migrate

    with console.progress("Planning the move to managed identity"):
        result = migrate.run(args, sandbox_azure=sandbox_azure, azure_credential=azure_credential,
                             usage_error=UsageError)
    emit(args, out, result, lambda result, width, color: migrate.render(result))
    return OK


def add_completion_command(commands: Any) -> None:
    completion = commands.add_parser(
        "completion", help="print the shell code that completes `python -m remediation` (bash)",
        description="Print bash code completing `python -m remediation` (commands, options, their choices) with "
                    "argcomplete; load it with: eval \"$(python -m remediation completion bash)\" (in ~/.bashrc to "
                    "keep it). It completes `python`, `python3` and `python3.N` command lines that run `-m "
                    "remediation`, and leaves the others to the completion they had.")
    completion.add_argument("shell", choices=("bash",), help="the shell (bash)")
    completion.set_defaults(run=_completion)


def _completion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from remediation.cli.completion import script

    sys.stdout.write(script(args.shell))
    return OK


def _preflight(args: argparse.Namespace, out: TextIO) -> int:
    """`preflight`: read the deployment, build the reader for Azure or the sandbox, gather, check, print."""
    from remediation.cli import preflight

    try:
        from remediation.adapters.deployment import AzureDeploymentReader
    except ImportError as err:
        raise Failed(f"{err.name} is not installed: python3 -m venv .venv && .venv/bin/pip install -r "
                     "requirements.txt") from err
    cloud = args.cloud.strip().strip('"') or PUBLIC_CLOUD
    try:
        deployment = preflight.Deployment.from_environment(os.environ, cloud=cloud)
    except InvalidInputError as err:
        raise UsageError(str(err)) from err
    if args.sandbox:
        sandbox = sandbox_azure(Path(args.sandbox))
        reader = AzureDeploymentReader(sandbox.credential, arm_endpoint=sandbox.arm, graph_endpoint=sandbox.graph,
                                       connection_verify=sandbox.ca)
    elif cloud in CLOUD_ENDPOINTS:
        arm, graph = CLOUD_ENDPOINTS[cloud]
        reader = AzureDeploymentReader(azure_credential(args.credential), arm_endpoint=arm, graph_endpoint=graph)
    else:
        raise UsageError(f"unknown cloud {cloud!r}: one of {', '.join(CLOUD_ENDPOINTS)}")
    try:
        with console.progress(f"Checking the deployment of {deployment.environment_name}"):
            report = preflight.run(deployment, preflight.gather(deployment, reader))
    except AuthenticationUnavailableError as err:
        raise Failed(f"{err} (sign in with `azd auth login`, or choose --credential)") from err
    emit(args, out, report.view(), lambda result, width, color: preflight.render(report))
    return report.exit_status


def _days(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 3650:
        raise argparse.ArgumentTypeError("a whole number of days from 0 to 3650")
    return int(value)


def _doctor(args: argparse.Namespace, out: TextIO) -> int:
    """`doctor`: build Graph and the sign-in for Azure or the sandbox, run the check, print."""
    path = doctor_module.cache_path(args.file)
    try:
        cached = doctor_module.read_cache(path) or []
    except doctor_module.CacheError as err:
        raise Failed(str(err)) from err
    findings: list[doctor_module.Finding] = []
    if cached:  # no cache, nothing to sign in for
        application, sign_in = doctor_clients(args, os.environ)
        with console.progress(f"Checking {len(cached)} cached service principal(s)"):
            findings = doctor_module.run(cached, application=application, sign_in=sign_in, warn_days=args.warn_days)
    emit(args, out, {"file": str(path), "findings": [f.view() for f in findings]},
         lambda result, width, color: doctor_module.render(findings, path))
    return doctor_module.exit_status(findings)


def doctor_clients(args: argparse.Namespace, environ: Any) -> tuple[Any, Any]:
    """(application lookup, sign-in) against Azure, or the sandbox with --sandbox."""
    from remediation.adapters.graph import GraphDirectory
    from remediation.adapters.signin import EntraSignIn
    from remediation.app.settings import PUBLIC_AUTHORITY_HOST, PUBLIC_GRAPH_ENDPOINT

    if args.sandbox:
        if args.credential or args.tenant:
            raise UsageError("--sandbox names the tenant and the identity: drop --credential and --tenant")
        sandbox = sandbox_azure(Path(args.sandbox))
        credential, graph_endpoint, authority, tenant, verify = (sandbox.credential, sandbox.graph, sandbox.login,
                                                                 sandbox.tenant_id, sandbox.ca)
    else:
        credential = azure_credential(args.credential or "cli")
        graph_endpoint, authority, verify = PUBLIC_GRAPH_ENDPOINT, PUBLIC_AUTHORITY_HOST, True
        tenant = args.tenant or environ.get("AZURE_TENANT_ID") or token_tenant(credential, graph_endpoint)
    graph = GraphDirectory(credential, endpoint=graph_endpoint, ca_bundle=verify if isinstance(verify, str) else None)
    sign_in = EntraSignIn(tenant_id=tenant, authority_host=authority, scope=f"{graph_endpoint}/.default",
                          disable_instance_discovery=bool(args.sandbox), connection_verify=verify)
    return graph.get_application_by_app_id, sign_in.sign_in


# ------------------------------------------------------------------------------------------------ edges


class Failed(Exception):
    """The command could not do its work (not a usage error): its message, exit 1."""


def _api_command(command: Command, parser: argparse.ArgumentParser
                 ) -> Callable[[argparse.Namespace, argparse.ArgumentParser], int]:
    """The edge of every API command: resolve the target, build the client, run; `_edge` maps the failures and
    scrubs what the client holds (its key, client secret and token) from every line."""
    clients: list[ApiClient] = []

    def run(args: argparse.Namespace, out: TextIO) -> int:
        api = ApiClient(resolve_target(args, os.environ))
        clients.append(api)
        try:
            return command(args, api, out)
        finally:
            api.close()

    return _edge(run, parser, secrets=lambda: [secret for api in clients for secret in api.secrets()])


def _edge(command: Callable[[argparse.Namespace, TextIO], int], parser: argparse.ArgumentParser, *,
          secrets: Callable[[], list[str]] = list) -> Callable[[argparse.Namespace, argparse.ArgumentParser], int]:
    """Run a command with its logs, and turn each failure into one line on stderr and az's exit status: 1 an error
    (the API's, an unreachable API, no token, a query that fails), 2 a usage error (with the command's usage), 3
    the API's "not found". Every message is scrubbed of the key, the client secret and any token besides, though
    none is ever meant to hold them; --debug adds the traceback of an unexpected error, scrubbed the same way."""
    def run(args: argparse.Namespace, _: argparse.ArgumentParser) -> int:
        _quiet_azure_logs()
        with console.logs(args, secrets):
            try:
                status = command(args, sys.stdout)
                sys.stdout.flush()  # here, where a reader that left (`| head`) is caught, not at exit
                return status
            except UsageError as err:
                _print_usage(parser, console.redact(str(err), secrets()))
                return USAGE
            except ApiError as err:
                _say(f"error: {err}", secrets())
                return NOT_FOUND if err.not_found else ERROR
            except (NotAsked, Failed, OutputError, RemediationError) as err:
                _say(f"error: {err}", secrets())
                return ERROR
            except ImportError as err:  # the CLI's own packages are not installed with what is deployed
                _say(f"error: {err.name or err} is not installed: {output.INSTALL}", secrets())
                return ERROR
            except KeyboardInterrupt:
                return INTERRUPTED
            except BrokenPipeError:
                _stdout_to_devnull()  # `| head`: the reader left; nothing more to say, as az says nothing
                return OK
            except Exception as err:  # noqa: BLE001 - the edge: one line, the traceback only with --debug
                if args.debug:
                    sys.stderr.write(console.redact(traceback.format_exc(), secrets()))
                _say(f"error: the command failed unexpectedly: {type(err).__name__}: {err}"
                     + ("" if args.debug else " (--debug shows the traceback)"), secrets())
                return ERROR
    return run


def _print_usage(parser: argparse.ArgumentParser, message: str) -> None:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)


def _stdout_to_devnull() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _quiet_azure_logs() -> None:
    """azure-identity logs a failed sign-in at WARNING besides raising it, and with no handler configured
    Python would print that to stderr: the error is printed once, by the edge, instead."""
    azure = logging.getLogger("azure")
    if not any(isinstance(handler, logging.NullHandler) for handler in azure.handlers):
        azure.addHandler(logging.NullHandler())


def _say(message: str, secrets: list[str]) -> None:
    print(" ".join(console.redact(message, secrets).split()), file=sys.stderr)


def _complain(message: str, api: ApiClient) -> None:
    _say(message, list(api.secrets()))
