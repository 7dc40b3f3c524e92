"""`python -m sandbox serve`: the sandbox, Azurite and the function app, until Ctrl-C.
`python -m sandbox az-setup --info FILE`: the real Azure CLI pointed at it (sandbox/azcli.py).

Prints one JSON line with every endpoint, the CA file, the ids, and the path of a file
(mode 0600) holding the two local identities' secrets, so that no secret is printed:

    {"arm": "https://127.0.0.1:...", "graph": ..., "login": ..., "vault": ..., "admin": ...,
     "vaultProxy": "http://127.0.0.1:..." (the CONNECT proxy to vaults by name, sandbox/vaulthosts.py),
     "functions": "http://127.0.0.1:...", "functionKey": ..., "ca": ..., "tenantId": ...,
     "subscriptionId": ..., "remediatorClientId": ..., "operatorClientId": ..., "auditorClientId": ...,
     "apiClientId": ..., "apiAppIdUri": ..., "identitiesFile": ...}

The HTTP API wants an Entra token for `apiAppIdUri` (the operator may start and read
remediations, the auditor only read them) besides the function key.

`--no-functions` serves the Azure stand-ins alone (no Azurite, no function app). Otherwise the function
app runs in its own worker process (`python -m sandbox.worker`, log in `workerLog`), restarted whenever
it dies: `kill -9` it, or post a `kill_worker` fault, and it comes back on the same port.

`--scenario fleet-50` serves a fleet (sandbox/fleets.py); `--scenario-file PATH` the world of a scenario file
(the format is in sandbox/README.md).

`--state-dir DIR` keeps the sandbox's state in DIR, written through after every request: run the same
command again (after Ctrl-C, SIGTERM or SIGKILL) and it serves the same world on the same ports with
the same CA and ids. Without it, each run is a new world in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import secrets
import signal
import sys
import threading
from pathlib import Path

from sandbox import SCENARIOS, Sandbox, configure_logging
from sandbox.fleets import ScenarioError


def serve(scenario: str, with_functions: bool, state_dir: str | None = None, scenario_file: str | None = None) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.ExitStack() as stack:
        sandbox = stack.enter_context(Sandbox(scenario=scenario, state_dir=state_dir, scenario_file=scenario_file))
        identities = Path(sandbox.ca_path).with_name("identities.json")
        identities.touch(mode=0o600)
        identities.write_text(json.dumps({
            "remediatorClientId": sandbox.remediator.client_id,
            "remediatorClientSecret": sandbox.remediator.client_secret,
            "operatorClientId": sandbox.operator.client_id,
            "operatorClientSecret": sandbox.operator.client_secret,
            "auditorClientId": sandbox.auditor.client_id,
            "auditorClientSecret": sandbox.auditor.client_secret}))
        info = {**sandbox.endpoints, "functions": None, "functionKey": None, "ca": sandbox.ca_path,
                "tenantId": sandbox.tenant_id, "subscriptionId": sandbox.subscription_id,
                "remediatorClientId": sandbox.remediator.client_id, "operatorClientId": sandbox.operator.client_id,
                "auditorClientId": sandbox.auditor.client_id, "apiClientId": sandbox.api_client_id,
                "apiAppIdUri": sandbox.api_app_id_uri,
                "identitiesFile": str(identities), "stateDir": state_dir}
        if with_functions:
            from sandbox.azurite import Azurite
            from sandbox.wiring import remediator_settings
            from sandbox.worker import WorkerProcess

            azurite = stack.enter_context(Azurite())
            # The function app runs in a worker process of its own, as under the Functions host: it can be
            # killed (`kill -9`, or a kill_worker fault) and comes back on the same port, the sandbox untouched.
            worker = WorkerProcess(function_key=secrets.token_urlsafe(24),
                                   log_path=Path(sandbox.ca_path).with_name("worker.log"))
            worker.start(remediator_settings(sandbox, azurite.connection_string))
            stack.callback(worker.stop)
            sandbox.state.on_kill_worker = worker.kill
            worker.keep_alive(stop)
            info.update(functions=worker.url, functionKey=worker.function_key, storage=azurite.connection_string,
                        workerLog=str(worker.log_path))
        print(json.dumps(info), flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        stop.set()  # before the stack unwinds: the supervisor must not restart a worker being stopped
    return 0


def az_setup_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from sandbox.azcli import AzSetupError, exports, setup_from_files

    try:
        cli = setup_from_files(Path(args.info), Path(args.config_dir).resolve(), args.identity)
    except (AzSetupError, OSError, ValueError, KeyError) as err:
        parser.exit(1, f"python -m sandbox az-setup: {err}\n")
    print(exports(cli))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="The local Azure sandbox.")
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="serve the sandbox until interrupted")
    world = serving.add_mutually_exclusive_group()
    world.add_argument("--scenario", choices=SCENARIOS, default="expired-secret")
    world.add_argument("--scenario-file", metavar="PATH", help="serve the world of a JSON scenario file")
    serving.add_argument("--no-functions", action="store_true", help="no Azurite and no function app")
    serving.add_argument("--verbose", action="store_true", help="log requests and function invocations")
    serving.add_argument("--state-dir", metavar="DIR", help="keep the state in DIR and start from it if it holds one "
                         "(then --scenario and --scenario-file are ignored)")
    pointing = commands.add_parser("az-setup", help="point the Azure CLI at a running sandbox (prints exports)")
    pointing.add_argument("--info", metavar="FILE", required=True,
                          help="the JSON line `python -m sandbox serve` printed, saved to a file")
    pointing.add_argument("--config-dir", metavar="DIR", default=".sandbox/az",
                          help="the CLI's configuration folder for the sandbox (AZURE_CONFIG_DIR; default .sandbox/az)")
    pointing.add_argument("--as", dest="identity", choices=("operator", "auditor", "remediator"), default="operator",
                          help="the identity to sign in as (default operator)")
    args = parser.parse_args(argv)
    if args.command == "az-setup":
        return az_setup_command(parser, args)
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return serve(args.scenario, with_functions=not args.no_functions, state_dir=args.state_dir,
                     scenario_file=args.scenario_file)
    except ScenarioError as err:  # a scenario file that cannot be built: say why, without a traceback
        parser.exit(2, f"python -m sandbox serve: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
