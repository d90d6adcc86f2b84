"""terraform fmt, init, validate and test, offline, for terraform/, its module and examples/.

Needs the terraform binary and the hashicorp/aws provider in a local plugin directory
(TF_PLUGIN_DIR, default /opt/tf-plugins, laid out as a filesystem mirror): both are on this
machine image, and the test skips, saying which is missing, only where they are not. Terraform
gets its own CLI configuration (a file in the test's tmp directory naming that mirror as the only
installation source): the environment's TF_CLI_CONFIG_FILE may point to a file that does not
exist, which makes every terraform command warn. `init -lockfile=readonly` checks that the
committed .terraform.lock.hcl files pin the provider found here. `terraform test` runs the
*.tftest.hcl files, whose AWS provider is mocked: no credentials, no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "terraform"
MODULE = ROOT / "modules" / "splunk-extension"
EXAMPLES = sorted(p.parent for p in (REPO / "examples").glob("*/main.tf"))
CONFIGURATIONS = {"root": ROOT, "module": MODULE} | {f"examples/{p.name}": p for p in EXAMPLES}
PLUGIN_DIR = Path(os.environ.get("TF_PLUGIN_DIR", "/opt/tf-plugins"))
PROVIDER = "registry.terraform.io/hashicorp/aws"
TIMEOUT_S = 600


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.skip("terraform is not installed: fmt, validate and terraform test not run")
    if not any((PLUGIN_DIR / PROVIDER).glob("*/*/terraform-provider-aws*")):
        pytest.skip(f"no hashicorp/aws provider under {PLUGIN_DIR}/{PROVIDER} (set TF_PLUGIN_DIR "
                    "to a filesystem mirror): validate and terraform test not run")  # fmt: skip
    return found


def run(
    binary: str, env: dict[str, str], where: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    command = [binary, f"-chdir={where}", *args, "-no-color"]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


@pytest.fixture(scope="module")
def terraform_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str], Path]:
    binary = terraform_binary()
    scratch = tmp_path_factory.mktemp("terraform")
    config = scratch / "cli.tfrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{PLUGIN_DIR}"\n'
        f'    include = ["{PROVIDER}"]\n  }}\n'
        "}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))}
    env.update(TF_CLI_CONFIG_FILE=str(config), CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1")
    return binary, env, scratch


@pytest.fixture(scope="module")
def initialised(terraform_env: tuple[str, dict[str, str], Path]) -> dict[str, dict[str, str]]:
    """Every configuration initialised (in parallel), each with its own data directory."""
    binary, env, scratch = terraform_env
    envs = {name: {**env, "TF_DATA_DIR": str(scratch / name.replace("/", "-"))}
            for name in CONFIGURATIONS}  # fmt: skip

    def init(name: str) -> subprocess.CompletedProcess[str]:
        return run(binary, envs[name], CONFIGURATIONS[name], "init", "-backend=false",
                   "-input=false", "-lockfile=readonly")  # fmt: skip

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(CONFIGURATIONS, pool.map(init, CONFIGURATIONS), strict=True))
    for name, result in results.items():
        assert result.returncode == 0, f"init {name}:\n{result.stdout}{result.stderr}"
        assert "Warning" not in result.stderr, result.stderr
    return envs


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "new-function",
        "existing-functions",
        "secrets-manager-token",
        "multi-region",
    }


def test_files_are_formatted(terraform_env: tuple[str, dict[str, str], Path]) -> None:
    binary, env, _ = terraform_env
    for where in (ROOT, REPO / "examples"):
        result = subprocess.run(
            [binary, "fmt", "-check", "-recursive", "-diff", str(where)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_lock_files_pin_only_the_tested_provider() -> None:
    locks = {
        name: (path / ".terraform.lock.hcl").read_text() for name, path in CONFIGURATIONS.items()
    }
    assert len(set(locks.values())) == 1, "the lock files differ"
    lock = locks["root"]
    assert lock.count('provider "') == 1 and f'provider "{PROVIDER}"' in lock
    (version,) = [p.name for p in (PLUGIN_DIR / PROVIDER).iterdir()] or [""]
    assert f'version     = "{version}"' in lock


# The root and the module are validated by `terraform test` (below), which validates before it
# plans; each validate costs seconds of CPU (the AWS provider loads its schema).
VALIDATED_BY_TEST = ("root", "module")


@pytest.mark.parametrize("name", [n for n in CONFIGURATIONS if n not in VALIDATED_BY_TEST])
def test_validate(
    terraform_env: tuple[str, dict[str, str], Path], initialised: dict[str, dict[str, str]],
    name: str,
) -> None:  # fmt: skip
    result = run(terraform_env[0], initialised[name], CONFIGURATIONS[name], "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success! The configuration is valid." in result.stdout
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.fixture(scope="module")
def test_runs(
    terraform_env: tuple[str, dict[str, str], Path], initialised: dict[str, dict[str, str]]
) -> dict[str, subprocess.CompletedProcess[str]]:
    """`terraform test` of the root and the module, both at once."""
    binary = terraform_env[0]
    names = list(VALIDATED_BY_TEST)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda n: run(binary, initialised[n], CONFIGURATIONS[n], "test"), names)
        return dict(zip(names, results, strict=True))


@pytest.mark.parametrize("name", VALIDATED_BY_TEST)
def test_terraform_test_passes(
    test_runs: dict[str, subprocess.CompletedProcess[str]], name: str
) -> None:
    result = test_runs[name]
    print(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    runs = result.stdout.count("... pass\n")
    # The test files really ran: every run block passed, none skipped.
    assert runs >= 5 and "skip" not in result.stdout, result.stdout
