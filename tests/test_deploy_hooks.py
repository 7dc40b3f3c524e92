"""The azd hooks in azure.yaml, run the way azd runs them, through the sequences people use.

There is no azd here, so a small stand-in (`FAKE_AZD`, written into a temporary directory
and put first on PATH) does what the hooks rely on: `azd env set` / `get-value` on the
environment's .env file; hooks run with `sh` and the process environment plus the azd
environment (whose values win), the environment re-read after each hook; `azd provision`,
`deploy`, `up` and `down --purge` with their pre/post hooks. Its "ARM" fails the way Azure
does: an Event Grid subscription to a function whose code is not deployed yet, or a Key
Vault name that a purge-protected, soft-deleted vault still holds (`azd down --purge` skips
those). The Windows (pwsh) hooks cannot run here; they are compared with the POSIX ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
AZURE_YAML = ROOT / "azure.yaml"

FAKE_AZD = r'''
# Imports are few and late: this runs a dozen times per `azd up`.
import os
import sys

STATE = os.environ["FAKE_AZD_STATE"]
ENV_FILE, WORLD_FILE = os.path.join(STATE, ".env"), os.path.join(STATE, "world.json")


def read_env():
    with open(ENV_FILE) as lines:
        return dict(line.rstrip("\n").split("=", 1) for line in lines if "=" in line)


def write_env(env):
    with open(ENV_FILE, "w") as out:
        out.writelines(f"{key}={value}\n" for key, value in env.items())


def load_world():
    import json
    with open(WORLD_FILE) as world:
        return json.load(world)


def save_world(world):
    import json
    with open(WORLD_FILE, "w") as out:
        json.dump(world, out)


def fail(message):
    print("ERROR: " + message, file=sys.stderr)
    sys.exit(1)


def run_hook(name):
    script = os.path.join(STATE, "hooks", name + ".sh")
    if not os.path.exists(script):
        return
    # The process environment plus the azd environment; the azd environment wins.
    code = os.spawnve(os.P_WAIT, "/bin/sh", ["sh", script], {**os.environ, **read_env()})
    if code != 0:
        fail(f"'{name}' hook failed with exit code: '{code}'")


def token(*parts):
    import hashlib
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:13]


def provision():
    run_hook("preprovision")
    # main.bicepparam is built now, from the environment as the hook left it.
    values = {**os.environ, **read_env()}
    world = load_world()
    env_token = token(values["AZURE_ENV_NAME"], values["AZURE_LOCATION"])
    salt = values.get("REMEDIATOR_VAULT_SALT", "")
    vault = "kv-rem-" + (token(env_token, salt) if salt else env_token)
    if vault in world["soft_deleted_vaults"]:
        fail(f"VaultAlreadyExists: the vault name '{vault}' is held by a soft-deleted vault (purge protection)")
    events = values.get("DEPLOY_EVENT_SUBSCRIPTION", "false") == "true"
    if events and not world["code_deployed"]:
        fail("Event Grid: the destination function on_resource_failure does not exist (code not deployed)")
    world["vaults"].setdefault(vault, {})
    world["vault"] = vault
    # Incremental mode: a template without the event subscription leaves an existing one.
    world["event_subscription"] = world["event_subscription"] or events
    world["provisions"].append({"deployEventSubscription": events, "vault": vault,
                                "phase": os.environ.get("REMEDIATOR_PROVISION_PHASE", "")})
    save_world(world)
    # Outputs go into the azd environment.
    env = read_env()
    env["REMEDIATOR_KEY_VAULT_URL"] = f"https://{vault}.vault.example/"
    env["AZURE_RESOURCE_GROUP"] = "rg-" + values["AZURE_ENV_NAME"]
    write_env(env)
    run_hook("postprovision")


def deploy():
    run_hook("predeploy")
    world = load_world()
    world["code_deployed"] = True
    save_world(world)
    run_hook("postdeploy")


def down():
    run_hook("predown")
    world = load_world()
    if world["vault"]:
        # --purge skips purge-protected vaults: the name stays reserved.
        world["soft_deleted_vaults"].append(world["vault"])
        del world["vaults"][world["vault"]]
    world.update(vault=None, code_deployed=False, event_subscription=False)
    save_world(world)
    run_hook("postdown")


args = sys.argv[1:]
if args[:2] == ["config", "get"]:
    # azd's user configuration (`azd config set cloud.name AzureUSGovernment`): a JSON value, or an error.
    import json
    config_file = os.path.join(STATE, "config.json")
    config = json.load(open(config_file)) if os.path.exists(config_file) else {}
    value = config
    for part in args[2].split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        fail(f"no value at path: {args[2]}")
    print(json.dumps(value))
elif args[:2] == ["env", "set"]:
    write_env({**read_env(), args[2]: args[3]})
elif args[:2] == ["env", "get-value"]:
    env = read_env()
    if args[2] not in env:
        fail(f"key '{args[2]}' not found in the environment values")
    print(env[args[2]])
elif args[0] == "provision":
    provision()
elif args[0] == "deploy":
    deploy()
elif args[0] == "up":
    run_hook("preup")
    provision()
    deploy()
    run_hook("postup")
elif args[0] == "down":
    down()
else:
    fail(f"the fake azd does not know {args}")
'''


def _hooks(config: dict, platform: str = "posix") -> dict[str, dict]:
    return {name: hook[platform] for name, hook in config.get("hooks", {}).items()}


class Azd:
    """One azd project directory and environment, driven through the fake azd on PATH."""

    def __init__(self, tmp_path: Path, config: dict) -> None:
        self.state = tmp_path / "state"
        self.state.mkdir()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        executable = bin_dir / "azd"
        executable.write_text(f"#!{sys.executable} -IS\n{FAKE_AZD}", encoding="utf-8")
        executable.chmod(0o755)
        (self.state / "hooks").mkdir()
        for name, hook in _hooks(config).items():
            assert hook["shell"] == "sh" and not hook.get("continueOnError", False), name
            (self.state / "hooks" / f"{name}.sh").write_text(hook["run"], encoding="utf-8")
        self.set_env({"AZURE_ENV_NAME": "dev", "AZURE_LOCATION": "swedencentral"})
        self.set_world({"vaults": {}, "vault": None, "soft_deleted_vaults": [], "code_deployed": False,
                        "event_subscription": False, "provisions": []})
        # The preflight has tests of its own below; the sequences above are about the other hooks' work.
        self.process_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                            "FAKE_AZD_STATE": str(self.state), "REMEDIATOR_SKIP_PREFLIGHT": "true"}

    def set_env(self, env: dict[str, str]) -> None:
        (self.state / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")

    def set_config(self, config: dict) -> None:
        (self.state / "config.json").write_text(json.dumps(config), encoding="utf-8")

    def set_world(self, world: dict) -> None:
        (self.state / "world.json").write_text(json.dumps(world), encoding="utf-8")

    def __call__(self, *args: str, ok: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
        # azd runs hooks in the project's directory.
        done = subprocess.run(["azd", *args], env={**self.process_env, **extra_env}, capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        assert (done.returncode == 0) == ok, f"azd {' '.join(args)}: exit {done.returncode}\n{done.stderr}"
        return done

    @property
    def env(self) -> dict[str, str]:
        lines = (self.state / ".env").read_text(encoding="utf-8").splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    @property
    def world(self) -> dict:
        return json.loads((self.state / "world.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(AZURE_YAML.read_text(encoding="utf-8"))


@pytest.fixture
def azd(tmp_path: Path, config: dict) -> Azd:
    return Azd(tmp_path, config)


# ---------------------------------------------------------------- the sequences people run


def test_a_fresh_up_creates_the_event_subscription_once_the_code_is_deployed(azd: Azd):
    azd("up")
    world = azd.world
    assert world["event_subscription"] and world["code_deployed"]
    # Provision without it, deploy, then postdeploy's provision with it.
    assert [(p["deployEventSubscription"], p["phase"]) for p in world["provisions"]] == [(False, ""), (True, "events")]
    assert re.fullmatch(r"[0-9a-f]{8}", azd.env["REMEDIATOR_VAULT_SALT"])
    # The phase marker lives in one process environment, never in the azd environment.
    assert "REMEDIATOR_PROVISION_PHASE" not in azd.env


def test_a_second_up_keeps_the_vault_and_its_secrets(azd: Azd):
    azd("up")
    first = azd.world["vault"]
    azd("up")
    world = azd.world
    assert world["vault"] == first and list(world["vaults"]) == [first]
    assert world["event_subscription"]
    assert [p["deployEventSubscription"] for p in world["provisions"]] == [False, True, False, True]


def test_down_purge_then_up_gets_a_new_vault_name(azd: Azd):
    azd("up")
    first = azd.world["vault"]
    azd("down", "--purge", "--force")
    assert azd.world["soft_deleted_vaults"] == [first]
    assert azd.env["DEPLOY_EVENT_SUBSCRIPTION"] == "false"
    azd("up")
    world = azd.world
    assert world["vault"] not in (None, first)
    assert world["event_subscription"]


def test_a_plain_provision_after_up_keeps_the_event_subscription(azd: Azd):
    azd("up")
    azd("provision", "--no-prompt")
    world = azd.world
    assert world["provisions"][-1]["deployEventSubscription"] is False
    assert world["event_subscription"]  # incremental mode left it in place
    assert azd.env["DEPLOY_EVENT_SUBSCRIPTION"] == "false"


def test_an_environment_provisioned_before_the_salt_keeps_its_vault(azd: Azd):
    azd("up")
    legacy = azd.world["provisions"][0]["vault"]
    # Make it look like an environment from before the salt: vault URL, no salt.
    azd.set_env({k: v for k, v in azd.env.items() if k != "REMEDIATOR_VAULT_SALT"})
    azd.set_world({**azd.world, "vaults": {}, "vault": None})
    unsalted = "kv-rem-" + hashlib.sha256(b"dev|swedencentral").hexdigest()[:13]
    azd("up")
    assert azd.world["vault"] == unsalted != legacy
    assert "REMEDIATOR_VAULT_SALT" not in azd.env


def test_down_refuses_to_delete_another_environments_topic_group(azd: Azd):
    azd("up")
    azd("env", "set", "EVENT_GRID_SYSTEM_TOPIC_RESOURCE_GROUP", "rg-first")
    refused = azd("down", "--purge", "--force", ok=False)
    assert "rg-first" in refused.stderr
    assert azd.world["vault"] and not azd.world["soft_deleted_vaults"]  # nothing deleted
    # Its own group (read back from its outputs) is no reason to refuse; nor is the override.
    azd("env", "set", "EVENT_GRID_SYSTEM_TOPIC_RESOURCE_GROUP", "RG-dev")
    azd("down", "--purge", "--force")
    azd("up")
    azd("env", "set", "EVENT_GRID_SYSTEM_TOPIC_RESOURCE_GROUP", "rg-first")
    azd("down", "--purge", "--force", REMEDIATOR_ALLOW_SHARED_TOPIC_DOWN="true")
    assert len(azd.world["soft_deleted_vaults"]) == 2


def test_down_refuses_while_execute_mode_keeps_identities_in_a_group_the_deployment_touched(azd: Azd):
    # The deployment assigns a role inside the identity group, so azd counts it as its own and would delete it,
    # and with it the identities every migrated cluster runs as.
    azd("up")
    azd("env", "set", "REMEDIATOR_MIGRATE", "execute")
    azd("env", "set", "REMEDIATOR_MIGRATION_IDENTITY_GROUP", "rg-aks-identities")
    refused = azd("down", "--purge", "--force", ok=False)
    assert "rg-aks-identities" in refused.stderr
    assert azd.world["vault"] and not azd.world["soft_deleted_vaults"]  # nothing deleted
    azd("down", "--purge", "--force", REMEDIATOR_ALLOW_IDENTITY_GROUP_DOWN="true")
    assert len(azd.world["soft_deleted_vaults"]) == 1


# ---------------------------------------------------------------- the stand-in bites


def test_without_the_preprovision_hook_the_subscription_never_appears(tmp_path: Path, config: dict):
    broken = {**config, "hooks": {k: v for k, v in config["hooks"].items() if k != "preprovision"}}
    azd = Azd(tmp_path, broken)
    azd("up")
    assert not azd.world["event_subscription"]
    # ... and with a stale DEPLOY_EVENT_SUBSCRIPTION=true, the first provision fails.
    (tmp_path / "stale").mkdir()
    fresh = Azd(tmp_path / "stale", broken)
    fresh("env", "set", "DEPLOY_EVENT_SUBSCRIPTION", "true")
    assert "code not deployed" in fresh("up", ok=False).stderr


def test_without_the_postdown_hook_up_after_down_collides_with_the_soft_deleted_vault(tmp_path: Path, config: dict):
    azd = Azd(tmp_path, {**config, "hooks": {k: v for k, v in config["hooks"].items() if k != "postdown"}})
    azd("up")
    azd("down", "--purge", "--force")
    assert "soft-deleted" in azd("up", ok=False).stderr


# ---------------------------------------------------------------- the preflight in preprovision

# Stands in for the Python that runs `python -m remediation preflight`: records its arguments, answers as told.
RECORDING_PYTHON = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_AZD_STATE/preflights"
exit "${PREFLIGHT_EXIT:-0}"
"""


def _recording_python(azd: Azd, tmp_path: Path) -> dict[str, str]:
    python = tmp_path / "python"
    python.write_text(RECORDING_PYTHON, encoding="utf-8")
    python.chmod(0o755)
    return {"REMEDIATOR_SKIP_PREFLIGHT": "", "REMEDIATOR_PYTHON": str(python)}


def _preflights(azd: Azd) -> list[str]:
    path = azd.state / "preflights"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_the_preflight_runs_once_per_up_before_anything_is_provisioned(azd: Azd, tmp_path: Path):
    env = _recording_python(azd, tmp_path)
    azd("up", **env)
    # Before the first provision only: the events provision after the code deployment does not repeat it.
    assert _preflights(azd) == ["-m remediation preflight --credential azd --cloud AzureCloud"]
    assert len(azd.world["provisions"]) == 2
    azd.set_config({"cloud": {"name": "AzureUSGovernment"}})
    azd("provision", "--no-prompt", REMEDIATOR_PREFLIGHT_ARGS="--sandbox info.json --json", **env)
    assert _preflights(azd)[-1] == ("-m remediation preflight --credential azd --cloud AzureUSGovernment "
                                    "--sandbox info.json --json")


def test_a_failed_preflight_stops_up_before_anything_is_created(azd: Azd, tmp_path: Path):
    refused = azd("up", ok=False, PREFLIGHT_EXIT="1", **_recording_python(azd, tmp_path))
    assert "preprovision" in refused.stderr
    assert azd.world["provisions"] == [] and not azd.world["code_deployed"]


def test_up_stops_at_the_real_preflight_when_another_remediator_acts_on_the_subscription(azd: Azd, tmp_path: Path):
    # The hook runs `python -m remediation preflight` itself, against the sandbox (REMEDIATOR_PREFLIGHT_ARGS), where
    # a first environment's remediator acts on every cluster of the subscription.
    from sandbox import Sandbox
    from tests.support.wire import Wire, sandbox_info_file

    with Sandbox(scenario="healthy") as sandbox:
        planted = Wire(sandbox).admin("remediators", {
            "resourceGroup": "rg-first", "name": "func-remediator-first",
            "tags": {"aks-sp-remediator-environment": "first"},
            "appSettings": {"REMEDIATOR_SUBSCRIPTION_IDS": sandbox.subscription_id}})
        assert planted.status_code == 201, planted.text
        azd("env", "set", "AZURE_SUBSCRIPTION_ID", sandbox.subscription_id)
        env = {"REMEDIATOR_SKIP_PREFLIGHT": "", "REMEDIATOR_PYTHON": sys.executable,
               "REMEDIATOR_PREFLIGHT_ARGS": f"--sandbox {sandbox_info_file(sandbox, tmp_path)}"}
        refused = azd("up", ok=False, **env)
        assert "OverlappingRemediator" in refused.stdout and "func-remediator-first" in refused.stdout
        assert "1 check(s) failed: nothing was deployed." in refused.stdout
        assert azd.world["provisions"] == []
        # Observe-only, this environment may share the clusters: up goes on.
        azd("env", "set", "REMEDIATOR_MODE", "observe")
        done = azd("up", **env)
        assert "Ready to deploy." in done.stdout and len(azd.world["provisions"]) == 2


def test_skipping_the_preflight_says_so(azd: Azd):
    done = azd("up", REMEDIATOR_SKIP_PREFLIGHT="true")
    assert "Skipping the preflight (REMEDIATOR_SKIP_PREFLIGHT=true)." in done.stdout


# ---------------------------------------------------------------- azure.yaml itself


def test_azd_version_is_pinned_to_one_that_builds_bicepparam_after_hooks(config: dict):
    assert config["requiredVersions"]["azd"] == ">= 1.18.0"


_COMMAND = re.compile(r"\bazd (env set [A-Z_]+|env get-value [A-Z_]+|provision --no-prompt|config get [a-z.]+)")
_VARIABLE = re.compile(r"\b(?:REMEDIATOR|DEPLOY|EVENT_GRID|AZURE)_[A-Z_]+\b")


def test_windows_hooks_mirror_the_posix_hooks(config: dict):
    posix, windows = _hooks(config, "posix"), _hooks(config, "windows")
    assert set(posix) == set(windows) == {"preprovision", "postdeploy", "predown", "postdown"}
    for name in posix:
        assert posix[name]["shell"] == "sh" and windows[name]["shell"] == "pwsh", name
        for hook in (posix[name], windows[name]):
            assert hook.get("continueOnError", False) is False and hook.get("interactive", False) is False, name
        commands = [set(_COMMAND.findall(hook["run"])) for hook in (posix[name], windows[name])]
        assert commands[0] == commands[1], name
        assert set(_VARIABLE.findall(posix[name]["run"])) == set(_VARIABLE.findall(windows[name]["run"])), name
    # Both mark the events provision the same way, and neither stores the marker.
    for hooks in (posix, windows):
        assert "events" in hooks["preprovision"]["run"] and "events" in hooks["postdeploy"]["run"]
        for hook in hooks.values():
            assert "env set REMEDIATOR_PROVISION_PHASE" not in hook["run"]
