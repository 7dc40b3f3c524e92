"""Point the real Azure CLI at a running sandbox: `python -m sandbox az-setup`.

Nothing in the CLI's own files is edited by hand; everything goes through the CLI's documented commands and
settings, in a configuration folder of the sandbox's own (`AZURE_CONFIG_DIR`), so the operator's real profile is
never touched:

1. `az config set core.instance_discovery=false`: MSAL asks login.microsoftonline.com whether an authority it does
   not know is genuine; the setting (documented for Azure Stack, whose authority is not Microsoft's either) skips
   that question for the sandbox's token endpoint.
2. `az cloud register --name AzureSandbox --endpoint-resource-manager <arm>`: the CLI reads every other endpoint
   from the sandbox's ARM metadata document (`GET /metadata/endpoints`), as for any Azure cloud; `az cloud set`.
3. `az login --service-principal` as the sandbox's operator (its secret read from the identities file, never
   printed).

The CA is trusted through `REQUESTS_CA_BUNDLE`, the variable the CLI's documentation gives for a proxy or a
private CA. Vaults by name (`az keyvault secret show --vault-name kv-rem-sandbox`, `https://kv-rem-sandbox.vault.
sandbox.invalid`) are reached through the sandbox's CONNECT proxy (sandbox/vaulthosts.py) with the CLI's documented
proxy variables ("Work behind a proxy", learn.microsoft.com/cli/azure/use-azure-cli-successfully): `HTTPS_PROXY` the
proxy, `NO_PROXY` the sandbox's own 127.0.0.1 endpoints, which az calls directly. The command prints the `export`
lines a shell needs, then `az` works as against Azure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLOUD_NAME = "AzureSandbox"
# The CLI in its own virtualenv (`make setup`); `AZ` overrides it (an az on PATH, say).
DEFAULT_AZ = ROOT / ".venv-az" / "bin" / "az"


class AzSetupError(RuntimeError):
    """A step of pointing the CLI at the sandbox failed; the message says which, with what az printed."""


@dataclass(frozen=True)
class AzureCli:
    """One Azure CLI installation with one configuration folder, pointed at one sandbox."""

    executable: Path
    config_dir: Path
    ca_path: str
    vault_proxy: str | None = None  # the sandbox's CONNECT proxy for vaults by name (serve's `vaultProxy`)

    @property
    def environment(self) -> dict[str, str]:
        """What a shell (or a subprocess) needs besides PATH: the sandbox's folder, its CA and its vault proxy."""
        # Both spellings: Python's urllib reads either, and one left over in the shell would otherwise win.
        proxy = {name: value for name, value in (("HTTPS_PROXY", self.vault_proxy), ("NO_PROXY", "127.0.0.1,localhost"))
                 for name in (name, name.lower())} if self.vault_proxy else {}
        return {"AZURE_CONFIG_DIR": str(self.config_dir), "REQUESTS_CA_BUNDLE": self.ca_path, **proxy,
                # Not prompts or telemetry: a rehearsal must not phone home, nor wait on a survey.
                "AZURE_CORE_COLLECT_TELEMETRY": "false", "AZURE_CORE_SURVEY_MESSAGE": "false",
                "AZURE_CORE_NO_COLOR": "true"}

    def run(self, args: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.environment}
        return subprocess.run([str(self.executable), *args], capture_output=True, text=True, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def must(self, args: Sequence[str], step: str) -> subprocess.CompletedProcess[str]:
        done = self.run(args)
        if done.returncode != 0:
            raise AzSetupError(f"{step} failed (az exited {done.returncode}): {done.stderr.strip()[-1500:]}")
        return done


def find_az() -> Path:
    chosen = os.environ.get("AZ")
    if chosen:
        return Path(chosen)
    if DEFAULT_AZ.exists():
        return DEFAULT_AZ
    on_path = shutil.which("az")
    if on_path:
        return Path(on_path)
    raise AzSetupError("the Azure CLI is not installed: run `make setup` (it installs azure-cli into .venv-az)")


def az_setup(info: Mapping[str, Any], identities: Mapping[str, str], config_dir: Path, *,
             identity: str = "operator", executable: Path | None = None) -> AzureCli:
    """Register the sandbox as a cloud in `config_dir` and sign in as `identity` (operator, auditor, remediator)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    cli = AzureCli(executable or find_az(), config_dir, str(info["ca"]), info.get("vaultProxy"))
    cli.must(["config", "set", "core.instance_discovery=false", "--only-show-errors"], "az config set")
    registered = cli.run(["cloud", "show", "--name", CLOUD_NAME, "--only-show-errors"])
    verb = "update" if registered.returncode == 0 else "register"
    cli.must(["cloud", verb, "--name", CLOUD_NAME, "--endpoint-resource-manager", str(info["arm"]),
              "--only-show-errors"], f"az cloud {verb}")
    cli.must(["cloud", "set", "--name", CLOUD_NAME, "--only-show-errors"], "az cloud set")
    client_id, secret = identities[f"{identity}ClientId"], _Secret(identities[f"{identity}ClientSecret"])
    # `--password=…` in one argument: a secret that starts with '-' (Entra's may) would otherwise read as an option.
    cli.must(["login", "--service-principal", "--username", client_id, _Secret(f"--password={secret}"), "--tenant",
              str(info["tenantId"]), "--only-show-errors", "--output", "none"], "az login")
    return cli


class _Secret(str):
    """A secret handed to az on its command line: its repr (what tracebacks and test reports show) hides it."""

    def __repr__(self) -> str:
        return "'<secret>'"


def exports(cli: AzureCli) -> str:
    return "\n".join(f"export {name}={_quoted(value)}" for name, value in cli.environment.items())


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def setup_from_files(info_path: Path, config_dir: Path, identity: str) -> AzureCli:
    """az-setup from the JSON line `python -m sandbox serve` printed (saved to a file) and its identities file."""
    info = json.loads(info_path.read_text())
    identities = json.loads(Path(info["identitiesFile"]).read_text())
    return az_setup(info, identities, config_dir, identity=identity)
