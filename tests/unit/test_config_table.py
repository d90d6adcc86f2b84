"""The one table of settings (ext/config.py SETTINGS): complete, consistent with load(), Config
and the README, and the only place in the core that spells a variable's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ext import config
from ext.errors import ConfigError
from scripts import config_table
from scripts.config_table import Setting

ROOT = Path(__file__).resolve().parents[2]
BASE = {"SPLUNK_HOST": "splunk.example.com:8088", "SPLUNK_HEC_TOKEN": "abc-123"}
# A fetched token, so that the settings read only then (SPLUNK_HEC_TOKEN_REFETCH_S) are read.
FETCHED = {"SPLUNK_HOST": "splunk.example.com:8088", "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/hec",
           "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
           "AWS_SECRET_ACCESS_KEY": "role-secret-key"}
SETTINGS = config_table.settings()
BOUNDED = [s for s in SETTINGS if s.kind in config_table.BOUNDED_KINDS]
FLAGS = {"secret", "redacted", "custom"}


def named(name: str) -> Setting:
    (setting,) = (s for s in SETTINGS if s.name == name)
    return setting


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load(environ)
    return info.value.problems


def test_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert config_table.readme_table(readme) == config_table.render(), (
        "run `python -m scripts.config_table --write`")


def test_every_variable_is_documented_in_the_readme() -> None:
    table = config_table.readme_table((ROOT / "README.md").read_text())
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in table


def test_check_passes_on_the_readme_and_fails_on_a_stale_one(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    assert config_table.main(["--check"]) == 0
    stale = tmp_path / "README.md"
    stale.write_text((ROOT / "README.md").read_text().replace("| `SPLUNK_GZIP_LEVEL` |",
                                                              "| `SPLUNK_GZIP` |"))
    monkeypatch.setattr(config_table, "README", stale)
    assert config_table.main(["--check"]) == 1
    assert config_table.main(["--write"]) == 0
    assert config_table.main(["--check"]) == 0


def test_write_replaces_only_the_table() -> None:
    start, end = config_table.START, config_table.END
    written = config_table.with_table(f"# T\n\nbefore\n{start}\nold rows\n{end}\nafter\n",
                                      "| new |\n")
    assert written == f"# T\n\nbefore\n{start}\n| new |\n{end}\nafter\n"
    assert config_table.readme_table(written) == "| new |\n"


def test_names_and_fields_are_unique_and_fields_are_config_fields() -> None:
    names = [s.name for s in SETTINGS]
    assert len(set(names)) == len(names)
    fields = [s.field for s in SETTINGS if s.field]
    assert len(set(fields)) == len(fields)
    assert set(fields) <= set(config.Config.__annotations__)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_has_help_and_a_default_it_accepts(setting: Setting) -> None:
    assert setting.name.isupper() and setting.name.startswith(("SPLUNK_", "DISPATCH_"))
    assert len(setting.help) > 8 and "|" not in setting.help  # one README cell
    assert set(setting.flags.split()) <= FLAGS
    assert setting.field or "custom" in setting.flags
    text = config_table.default_text(setting)
    if text is not None:
        # The README's default is a value the variable accepts, and it gives the default.
        assert config.parse(setting, text) == setting.default
    else:
        assert setting.shown or setting.default in (None, (), "")
    if setting.kind == "choice":
        assert setting.default == setting.limits[0]


@pytest.mark.parametrize("setting", BOUNDED, ids=lambda s: s.name)
def test_integer_bounds_are_the_ones_enforced(setting: Setting) -> None:
    low, high = setting.limits
    text = config_table.default_text(setting)
    assert text is not None and low <= int(text) <= high
    base = FETCHED if "custom" in setting.flags else BASE
    for inside in {low, high} - {config.LAMBDA_API_PORT}:
        config.load({**base, setting.name: str(inside)})
    for outside in (low - 1, high + 1):
        (problem,) = problems({**base, setting.name: str(outside)})
        assert problem == (f"{setting.name}='{outside}' is not valid: expected an integer from "
                           f"{low} to {high}")


def test_unset_variables_give_the_table_defaults() -> None:
    cfg = config.load(BASE)
    for setting in SETTINGS:
        if setting.field and setting.name not in BASE and setting.name != config.SPLUNK_SPOOL_DIR:
            assert getattr(cfg, setting.field) == setting.default, setting.name
    fetched = config.load(FETCHED)
    assert fetched.token_refetch_s == named(config.SPLUNK_HEC_TOKEN_REFETCH_S).default == 30


def test_the_readme_shows_the_default_spool_dir() -> None:
    assert named(config.SPLUNK_SPOOL_DIR).shown == f"`{config.default_spool_dir({})}`"


def test_a_config_built_by_hand_takes_the_table_defaults() -> None:
    cfg = config.Config(hec_url="https://h", hec_path="/p", hec_token="t", flush="sync")
    assert cfg.flush == "sync"
    assert cfg.dispatch_min_batch_size == named("DISPATCH_MIN_BATCH_SIZE").default == 500
    assert cfg.spool_max_bytes == 64 * 2**20
    assert cfg.function_name == "unknown-function"  # not a variable's: the class default


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SPLUNK_HEC_TOKEN", "s3cr3t-t\u00f6ken-value"),
        ("SPLUNK_DROP_REGEX", "s3cr3t[("),
        ("SPLUNK_MASK", "s3cr3t-without-an-arrow"),
    ],
)
def test_secret_values_are_never_in_a_message(name: str, value: str) -> None:
    assert "secret" in named(name).flags
    (problem,) = problems({**BASE, name: value})
    assert problem.startswith(f"{name} is not valid: ")
    assert "s3cr3t" not in problem


def test_secret_fields_are_not_in_the_repr() -> None:
    cfg = config.load({**BASE, "SPLUNK_MASK": r"s3cr3t\d+=>[x]", "SPLUNK_DROP_REGEX": "s3cr3t"})
    assert cfg.drop_pattern is not None and cfg.mask_rules
    assert "s3cr3t" not in repr(cfg) and "abc-123" not in repr(cfg)
    assert "dispatch_min_batch_size" in repr(cfg)


def test_choices_and_kinds_name_what_is_expected() -> None:
    (problem,) = problems({**BASE, "SPLUNK_ON_CONFIG_ERROR": "sometimes"})
    assert problem == "SPLUNK_ON_CONFIG_ERROR='sometimes' is not valid: expected fail or disable"
    (problem,) = problems({**BASE, "SPLUNK_CA_BUNDLE": "/nonexistent/ca.pem"})
    assert problem == ("SPLUNK_CA_BUNDLE='/nonexistent/ca.pem' is not valid: "
                       "not a readable file or directory")


def test_the_ca_bundle_is_a_file_or_a_directory(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("")
    for where in (pem, tmp_path):
        assert config.load({**BASE, "SPLUNK_CA_BUNDLE": str(where)}).ca_bundle == str(where)


def _string_constants(tree: ast.AST) -> list[str]:
    """The string literals of `tree` (f-string parts included), docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings]


def test_only_the_table_spells_a_variable_name() -> None:
    """Core modules name a variable through ext.config (`config.SPLUNK_ON_CONFIG_ERROR`), so a
    renamed variable cannot leave a stale spelling behind in a message."""
    names = [s.name for s in SETTINGS]
    core = [p for p in (ROOT / "ext").rglob("*.py")
            if "local" not in p.relative_to(ROOT / "ext").parts and p.name != "config.py"]
    assert len(core) >= 15
    for path in core:
        for text in _string_constants(ast.parse(path.read_text())):
            spelled = [name for name in names if name in text]
            assert not spelled, f"{path.relative_to(ROOT)} spells {spelled} in {text!r}"


def test_config_spells_each_variable_name_once() -> None:
    text = (ROOT / "ext" / "config.py").read_text()
    for setting in SETTINGS:
        assert text.count(f'"{setting.name}"') == 1, setting.name
