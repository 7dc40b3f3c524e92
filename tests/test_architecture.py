"""The design, checked: folders that import only downwards (import-linter's contracts in pyproject.toml), none of
them above 15 modules, and no module that every contract overlooks."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "remediation"
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_every_import_contract_is_kept() -> None:
    linted = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert linted.returncode == 0, linted.stdout[-3000:] + linted.stderr[-2000:]
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in linted.stdout


def test_every_folder_is_in_the_layers_and_every_root_module_is_a_shared_type_or_the_entry_point() -> None:
    folders = {f"remediation.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    layered = set(CONTRACTS[0]["layers"]) | {"remediation.adapters"}
    assert folders == layered, folders ^ layered
    shared = set(next(c for c in CONTRACTS if c["name"].startswith("The shared types"))["source_modules"])
    root = {f"remediation.{p.stem}" for p in PACKAGE.glob("*.py")} - {"remediation.__init__", "remediation.__main__"}
    assert root == shared, root ^ shared


def test_no_folder_holds_more_than_15_modules() -> None:
    sizes = {str(folder.relative_to(ROOT)): len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
             for folder in [PACKAGE, *[p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"]]}
    assert max(sizes.values()) <= 15, sizes


def test_on_the_path_of_one_failure_to_the_reset_the_decision_never_calls_into_what_acts() -> None:
    # The import contracts say what a module may import; this says what happens at run time, callbacks included:
    # benchmarks/path.py follows one Event Grid failure to the reset call over the fakes.
    from benchmarks.path import run

    trace = run()
    assert trace.reached
    callers_into_run = {caller for caller, callee in trace.edges if callee.startswith("remediation.run.")}
    assert not any(caller.startswith("remediation.decide.") for caller in callers_into_run), trace.edges
    assert ("remediation.run.rotation", "AKS port") in trace.edges
    assert trace.modules.index("remediation.decide.reconcile") < trace.modules.index("remediation.run.admission")
