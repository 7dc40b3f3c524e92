"""The real Azure CLI (azure-cli, pinned in requirements-az.txt, its own venv .venv-az) against a running sandbox,
set up by the same `sandbox.azcli.az_setup` an operator runs as `python -m sandbox az-setup`.

`Az(...)("aks", "show", "-g", "rg", "-n", "name")` runs one command with `--output json` and returns the parsed
output; a non-zero exit fails the test with what az printed on stderr (never stdout: some commands print a
secret there). `az.fails(...)` expects a non-zero exit and returns the finished process."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import Sandbox
from sandbox.azcli import AzureCli, az_setup
from tests.support.wire import sandbox_info_file

AZ = Path(__file__).resolve().parent.parent.parent / ".venv-az" / "bin" / "az"


@dataclass
class Az:
    cli: AzureCli
    sandbox: Sandbox

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli.run([*args, "--only-show-errors"])

    def __call__(self, *args: str) -> Any:
        done = self.run(*args, "--output", "json")
        assert done.returncode == 0, f"az {' '.join(args[:3])} … exited {done.returncode}: {done.stderr[-2000:]}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    def fails(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(*args, "--output", "json")
        assert done.returncode != 0, f"az {' '.join(args[:3])} … should have failed"
        return done


def pointed_at(sandbox: Sandbox, directory: Path, identity: str = "operator") -> Az:
    """The CLI in a configuration folder of its own under `directory`, registered and signed in to `sandbox`."""
    if not AZ.exists():
        raise RuntimeError("the Azure CLI is not installed in .venv-az: run `make setup`")
    info = json.loads(sandbox_info_file(sandbox, directory).read_text())
    identities = json.loads(Path(info["identitiesFile"]).read_text())
    return Az(az_setup(info, identities, directory / "az", identity=identity, executable=AZ), sandbox)
