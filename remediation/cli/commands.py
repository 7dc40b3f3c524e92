"""The operator's commands over the remediator's HTTP API: `list`, `show`, `decisions`, `dry-run`,
`orphans` and `health`; and `doctor`, a check of this machine's Azure CLI cache (remediation/cli/doctor.py).

    python -m remediation list [--cluster ID] [--active] [--limit N] [--json]
    python -m remediation show ID [--json]
    python -m remediation decisions [--cluster ID] [--limit N] [--json]
    python -m remediation dry-run CLUSTER_ID [--reason TEXT] [--wait SECONDS] [--json]
    python -m remediation orphans [--json]
    python -m remediation health [--only expired,expiring] [--json]
    python -m remediation doctor [--file PATH] [--warn-days N] [--tenant ID] [--json]

Where and as whom, on every command: the deployed app with `--api URL --function-key KEY
--app-id-uri URI` (or REMEDIATOR_API_URL, REMEDIATOR_FUNCTION_KEY, REMEDIATOR_API_APP_ID_URI) and
a token from azure-identity for `<app id uri>/.default` (AzureCliCredential, what `az login` gives;
`--credential default` for DefaultAzureCredential); or the local sandbox with `--sandbox INFO_FILE`,
the JSON line `python -m sandbox serve` prints, as its operator identity (`--as auditor`: the
read-only one).

Exit status: 0 done; 1 the API answered an error (its code and message are printed); 2 the API was
not asked: a usage error, a missing or malformed option, an unreachable API, no token. The function
key, the token and the sandbox's client secrets are sent only in request headers and the token
request; nothing printed (errors included) contains them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from remediation.app.settings import CLOUD_ENDPOINTS
from remediation.cli import doctor as doctor_module
from remediation.cli import render
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
from remediation.cli.preflight import PUBLIC_CLOUD
from remediation.errors import AuthenticationUnavailableError, InvalidInputError, RemediationError
from remediation.ids import ClusterId

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
    if args.json:
        return _dump(body, out)
    views = render.items(field_of(body, "value"))
    if args.active:  # a cluster's list is not filtered by the API
        views = [v for v in views if render.text(field_of(v, "status")) not in TERMINAL]
    out.write(render.remediations_table(views, width=_width()) + "\n")
    return 0


def show_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    view = api.get(f"remediations/{quote(_full_id(args.id, api), safe='')}").body
    if args.json:
        return _dump(view, out)
    out.write(render.timeline(view, width=_width()))
    return 0


def decisions_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    params = {"limit": str(args.limit)}
    if args.cluster:
        params["clusterResourceId"] = args.cluster
    body = api.get("decisions", params).body
    if args.json:
        return _dump(body, out)
    out.write(render.decisions_table(render.items(field_of(body, "value")), width=_width()) + "\n")
    return 0


def dry_run_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    """POST a dry run, then follow it (its Location) until it is planned, for at most --wait seconds.
    Exit 1 if the API refuses it or the dry run fails; 0 if it is planned, or still running when the wait ends."""
    request: dict[str, Any] = {"clusterResourceId": args.cluster_id, "dryRun": True}
    if args.reason:
        request["reason"] = args.reason
    answer = api.post("remediations", request)
    decision = field_of(answer.body, "decision")
    view = _follow(api, answer, args.wait)
    status = render.text(field_of(view, "status"))
    if args.json:
        _dump({**view, "decision": decision} if isinstance(view, dict) else view, out)
        return 1 if status == "Failed" else 0
    width = _width()
    code, message = render.text(field_of(decision, "code")), render.text(field_of(decision, "message"))
    joined = " (joined, already running)" if answer.status == 200 else ""
    out.write(f"Decision {code}: {message}\n" if code else "")
    out.write(f"Remediation {render.text(field_of(view, 'id'))}{joined} of "
              f"{render.cluster_label(field_of(view, 'clusterResourceId'))}\n")
    if status not in TERMINAL:
        out.write(f"Still {status or 'unknown'} after {args.wait:g} s: `python -m remediation show "
                  f"{render.text(field_of(view, 'id'))}` shows it once it is planned.\n")
        return 0
    out.write(f"{status}: {render.text(field_of(view, 'reason'))}\n\n")
    if status == "Failed":
        out.write(render.timeline(view, width=width))
        return 1
    out.write(render.plan_text(render.items(field_of(view, "plan")), width=width) + "\n")
    return 0


def orphans_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    """Applications the remediator owns or minted passwords on that no cluster in scope uses; nothing deleted."""
    body = api.get("orphans").body
    if args.json:
        return _dump(body, out)
    found = render.items(field_of(body, "value"))
    if not found:
        out.write("No orphaned applications: every application the remediator owns or minted for is in use.\n")
        return 0
    for orphan in found:
        out.write(f"{render.text(field_of(orphan, 'displayName'))} ({render.text(field_of(orphan, 'appId'))}): "
                  f"{', '.join(render.text(r) for r in render.items(field_of(orphan, 'reasons')))}\n")
        for password in render.items(field_of(orphan, "passwords")):
            state = "expired" if field_of(password, "expired") else "ends"
            out.write(f"    password {render.text(field_of(password, 'keyId'))} {state} "
                      f"{render.text(field_of(password, 'endDateTime'))}\n")
        out.write(f"    delete: {render.text(field_of(orphan, 'deleteCommand'))}\n")
    return 0


def health_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    """Every cluster's credential health, read now (Resource Graph, Graph); nothing is written."""
    body = api.get("health", {"health": args.only} if args.only else None).body
    if args.json:
        return _dump(body, out)
    out.write(render.health_table(body, width=_width()) + "\n")
    return 0


def _follow(api: ApiClient, answer: Answer, wait: float) -> Any:
    view = answer.body
    remediation_id = render.text(field_of(view, "id"))
    if not remediation_id:
        return view
    url = answer.location if answer.location and api.same_origin(answer.location) else \
        api.url(f"remediations/{quote(remediation_id, safe='')}")
    deadline, delay = time.monotonic() + wait, 0.25
    while render.text(field_of(view, "status")) not in TERMINAL and time.monotonic() < deadline:
        time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        delay = min(delay * 2, 2.0)
        view = api.get_url(url).body
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


def _dump(body: Any, out: TextIO) -> int:
    out.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return 0


def _width() -> int:
    return max(shutil.get_terminal_size((120, 24)).columns, 60)


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
    """Add list, show, decisions and dry-run to `python -m remediation`'s subcommands."""
    connection = _connection_options()
    listing = commands.add_parser(
        "list", parents=[connection], help="list remediations, newest first",
        description="Remediations as a table, newest first: the fleet's, or one cluster's with --cluster.")
    listing.add_argument("--cluster", type=_cluster_id, metavar="ID", help="one cluster's (its ARM resource id)")
    listing.add_argument("--active", action="store_true", help="unfinished ones only")
    listing.add_argument("--limit", type=_limit, default=50, metavar="N", help=f"at most N (1-{MOST}; default 50)")
    listing.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    listing.set_defaults(run=_api_command(list_command, listing))

    show = commands.add_parser(
        "show", parents=[connection], help="show one remediation's timeline",
        description="One remediation: cluster, application, status, cause and requester; each step with its time, "
                    "code and detail; the clusters sharing its application and the passwords it retired; its error "
                    "or plan.")
    show.add_argument("id", type=_remediation_id, metavar="ID",
                      help="the remediation id, or its start as `list` shows it")
    show.add_argument("--json", action="store_true", help="print the API's JSON")
    show.set_defaults(run=_api_command(show_command, show))

    decisions = commands.add_parser(
        "decisions", parents=[connection], help="list decisions with their reason codes",
        description="What was decided for each hint (event, sweep, operator) and why, newest first.")
    decisions.add_argument("--cluster", type=_cluster_id, metavar="ID", help="one cluster's (its ARM resource id)")
    decisions.add_argument("--limit", type=_limit, default=50, metavar="N", help=f"at most N (1-{MOST}; default 50)")
    decisions.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    decisions.set_defaults(run=_api_command(decisions_command, decisions))

    dry_run = commands.add_parser(
        "dry-run", parents=[connection], help="plan a remediation of one cluster; writes nothing to Azure",
        description="Ask for a dry run (needs Remediations.Write): print the decision, wait for the plan and "
                    "print it. Nothing is written to Azure.")
    dry_run.add_argument("cluster_id", type=_cluster_id, metavar="CLUSTER_ID", help="the cluster's ARM resource id")
    dry_run.add_argument("--reason", metavar="TEXT", help="why (recorded as the cause)")
    dry_run.add_argument("--wait", type=_seconds, default=30.0, metavar="SECONDS",
                         help="how long to wait for the plan (default 30; 0: do not wait)")
    dry_run.add_argument("--json", action="store_true", help="print the remediation's JSON, with the decision")
    dry_run.set_defaults(run=_api_command(dry_run_command, dry_run))

    orphans = commands.add_parser(
        "orphans", parents=[connection], help="list applications the remediator left that no cluster uses",
        description="Applications the remediator owns, or that hold passwords it minted, that no cluster in its "
                    "scope uses any more: their passwords' end dates and the command to delete each. Nothing is "
                    "deleted.")
    orphans.add_argument("--json", action="store_true", help="print the API's JSON")
    orphans.set_defaults(run=_api_command(orphans_command, orphans))

    health = commands.add_parser(
        "health", parents=[connection], help="show every cluster's credential health",
        description="Every service-principal cluster in scope, read now through Resource Graph and Graph: healthy,"
                    " expiring within REMEDIATOR_EXPIRY_WARNING_DAYS, expired now, application missing, or managed"
                    " identity; with the permanent fix (a managed identity). Nothing is written.")
    health.add_argument("--only", metavar="HEALTH[,HEALTH]", help="only these (expired, expiring, healthy,"
                                                                   " applicationMissing, managedIdentity)")
    health.add_argument("--json", action="store_true", help="print the API's JSON")
    health.set_defaults(run=_api_command(health_command, health))

    doctor = commands.add_parser(
        "doctor", help="check the Azure CLI's cached AKS service principal (~/.azure/aksServicePrincipal.json)",
        description="`az aks create` reuses the service principal cached in ~/.azure/aksServicePrincipal.json, "
                    "whose secret the CLI made valid for a year. For each cached entry: does the application "
                    "exist (Graph), does the secret still sign in (Entra ID), when do its passwords end; a warning "
                    "and the fix when it has expired or ends soon. The secret is never printed. Exit 0: all "
                    "fine (or no cache); 1: a warning or error; 2: the check could not run.")
    doctor.add_argument("--file", metavar="PATH", help=f"the cache (default {doctor_module.CACHE_FILE})")
    doctor.add_argument("--warn-days", type=_days, default=doctor_module.WARN_DAYS, metavar="N",
                        help=f"warn when a password ends within N days (default {doctor_module.WARN_DAYS})")
    doctor.add_argument("--tenant", metavar="ID", help="the tenant the cached principals sign in to (default: "
                        "$AZURE_TENANT_ID, else the signed-in account's)")
    doctor.add_argument("--credential", choices=("cli", "default"), help="how to read Graph: cli (the account "
                        "`az login` signed in, the default) or default (DefaultAzureCredential)")
    doctor.add_argument("--sandbox", metavar="INFO_FILE", help="check against the local sandbox instead (the "
                        "JSON line `python -m sandbox serve` prints), as its operator")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    doctor.set_defaults(run=_doctor)
    add_preflight_command(commands)


def add_preflight_command(commands: Any) -> None:
    preflight = commands.add_parser(
        "preflight", help="check, before `azd up`, what would make the deployment fail or overlap another remediator",
        description="Read the deployment from the environment (the azd environment, as infra/main.bicepparam reads "
                    "it) and check with the deployer's own sign-in: the cloud (the Graph Bicep extension is public "
                    "cloud only), Flex Consumption in the region, the Entra roles the Graph modules need, another "
                    "remediator acting on the same clusters, and REMEDIATOR_ASSIGNABLE_ROLE_IDS. Writes nothing. "
                    "Exit 0: ready (warnings allowed); 1: a check failed; 2: the preflight could not run.")
    preflight.add_argument("--cloud", default=PUBLIC_CLOUD, metavar="NAME",
                           help=f"the cloud azd deploys to: {', '.join(CLOUD_ENDPOINTS)} (default {PUBLIC_CLOUD}; "
                                "azure.yaml's hook passes `azd config get cloud.name`)")
    preflight.add_argument("--credential", choices=("azd", "cli", "default"), default="azd",
                           help="who signs in: azd (`azd auth login`, the default), cli (`az login`) or default "
                                "(DefaultAzureCredential)")
    preflight.add_argument("--sandbox", metavar="INFO_FILE", help="rehearse against the local sandbox (the JSON line "
                           "`python -m sandbox serve` prints), as its operator")
    preflight.add_argument("--json", action="store_true", help="print the findings as JSON")
    preflight.set_defaults(run=_preflight)


def _preflight(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The edge of `preflight`: read the deployment, build the reader for Azure or the sandbox, gather, check, print.
    Exit 2 when it cannot run: its input, the sign-in, or an answer it cannot read at all."""
    from remediation.cli import preflight

    try:
        from remediation.adapters.deployment import AzureDeploymentReader
    except ImportError as err:
        print(f"error: {err.name} is not installed: python3 -m venv .venv && .venv/bin/pip install -r requirements.txt",
              file=sys.stderr)
        return 2
    _quiet_azure_logs()
    cloud = args.cloud.strip().strip('"') or PUBLIC_CLOUD
    try:
        deployment = preflight.Deployment.from_environment(os.environ, cloud=cloud)
        if args.sandbox:
            sandbox = sandbox_azure(Path(args.sandbox))
            reader = AzureDeploymentReader(sandbox.credential, arm_endpoint=sandbox.arm, graph_endpoint=sandbox.graph,
                                           connection_verify=sandbox.ca)
        elif cloud in CLOUD_ENDPOINTS:
            arm, graph = CLOUD_ENDPOINTS[cloud]
            reader = AzureDeploymentReader(azure_credential(args.credential), arm_endpoint=arm, graph_endpoint=graph)
        else:
            raise UsageError(f"unknown cloud {cloud!r}: one of {', '.join(CLOUD_ENDPOINTS)}")
        report = preflight.run(deployment, preflight.gather(deployment, reader))
    except (InvalidInputError, UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except AuthenticationUnavailableError as err:
        print(f"error: {err} (sign in with `azd auth login`, or choose --credential)", file=sys.stderr)
        return 2
    if args.json:
        _dump(report.view(), sys.stdout)
    else:
        sys.stdout.write(preflight.render(report))
    return report.exit_status


def _days(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 3650:
        raise argparse.ArgumentTypeError("a whole number of days from 0 to 3650")
    return int(value)


def _doctor(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The edge of `doctor`: build Graph and the sign-in for Azure or the sandbox, run the check, print."""
    _quiet_azure_logs()
    path = doctor_module.cache_path(args.file)
    try:
        cached = doctor_module.read_cache(path) or []
        findings: list[doctor_module.Finding] = []
        if cached:  # no cache, nothing to sign in for
            application, sign_in = doctor_clients(args, os.environ)
            findings = doctor_module.run(cached, application=application, sign_in=sign_in,
                                         warn_days=args.warn_days)
    except (doctor_module.CacheError, UsageError, NotAsked, RemediationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        _dump({"file": str(path), "findings": [f.view() for f in findings]}, sys.stdout)
    else:
        sys.stdout.write(doctor_module.render(findings, path))
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


def _api_command(command: Command, parser: argparse.ArgumentParser
                 ) -> Callable[[argparse.Namespace, argparse.ArgumentParser], int]:
    """The edge of every API command: resolve the target (a usage error exits 2 with `parser`'s usage), run,
    and turn each failure into its message and exit status. Messages are scrubbed of the key, the client
    secret and the token besides, though none is ever meant to hold them."""
    def run(args: argparse.Namespace, _: argparse.ArgumentParser) -> int:
        _quiet_azure_logs()
        try:
            target = resolve_target(args, os.environ)
        except UsageError as err:
            parser.error(str(err))
        api = ApiClient(target)
        try:
            return command(args, api, sys.stdout)
        except ApiError as err:
            _complain(f"error: {err}", api)
            return 1
        except NotAsked as err:
            _complain(f"error: {err}", api)
            return 2
        except UsageError as err:
            _complain(f"error: {err}", api)
            return 2
        except KeyboardInterrupt:
            return 130
        finally:
            api.close()
    return run


def _quiet_azure_logs() -> None:
    """azure-identity logs a failed sign-in at WARNING besides raising it, and with no handler configured
    Python would print that to stderr: the error is printed once, by `run`, instead."""
    azure = logging.getLogger("azure")
    if not any(isinstance(handler, logging.NullHandler) for handler in azure.handlers):
        azure.addHandler(logging.NullHandler())


def _complain(message: str, api: ApiClient) -> None:
    for secret in api.secrets():
        message = message.replace(secret, "<redacted>")
    print(message, file=sys.stderr)
