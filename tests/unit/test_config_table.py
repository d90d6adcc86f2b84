"""The one table of settings (ext/config.py SETTINGS): complete, consistent with load(), Config
and the README, and the only place in the core that spells a variable's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ext import config
from ext.errors import ConfigError
from scripts import config_table

ROOT = Path(__file__).resolve().parents[2]
BASE = {"SPLUNK_HOST": "splunk.example.com:8088", "SPLUNK_HEC_TOKEN": "abc-123"}
# A fetched token, so that the settings read only then (SPLUNK_HEC_TOKEN_REFETCH_S) are read.
FETCHED = {"SPLUNK_HOST": "splunk.example.com:8088", "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/hec",
           "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
           "AWS_SECRET_ACCESS_KEY": "role-secret-key"}
INTEGERS = [s for s in config.SETTINGS if s.low is not None and s.high is not None]


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
    for setting in config.SETTINGS:
        assert f"| `{setting.name}` |" in table


def test_write_replaces_only_the_table() -> None:
    start, end = config_table.START, config_table.END
    written = config_table.with_table(f"# T\n\nbefore\n{start}\nold rows\n{end}\nafter\n",
                                      "| new |\n")
    assert written == f"# T\n\nbefore\n{start}\n| new |\n{end}\nafter\n"
    assert config_table.readme_table(written) == "| new |\n"


def test_names_and_fields_are_unique_and_fields_are_config_fields() -> None:
    names = [s.name for s in config.SETTINGS]
    assert len(set(names)) == len(names)
    fields = [s.field for s in config.SETTINGS if s.field]
    assert len(set(fields)) == len(fields)
    assert set(fields) <= set(config.Config.__annotations__)


@pytest.mark.parametrize("setting", config.SETTINGS, ids=lambda s: s.name)
def test_every_setting_has_help_and_a_default_it_accepts(setting: config.Setting) -> None:
    assert setting.name.isupper() and setting.name.startswith(("SPLUNK_", "DISPATCH_"))
    assert len(setting.doc) > 8 and "|" not in setting.doc  # one README cell
    if setting.default_text is not None:
        # The README's default is a value the variable accepts, and it gives the default.
        assert setting.convert(setting.default_text) == setting.default
    if setting.field and not setting.custom:
        assert getattr(config.Config, setting.field) == setting.default


@pytest.mark.parametrize("setting", INTEGERS, ids=lambda s: s.name)
def test_integer_bounds_are_the_ones_enforced(setting: config.Setting) -> None:
    assert setting.low is not None and setting.high is not None
    assert setting.default_text is not None
    assert setting.low <= int(setting.default_text) <= setting.high
    base = FETCHED if setting.custom else BASE
    for inside in {setting.low, setting.high} - {config.LAMBDA_API_PORT}:
        config.load({**base, setting.name: str(inside)})
    for outside in (setting.low - 1, setting.high + 1):
        (problem,) = problems({**base, setting.name: str(outside)})
        assert problem == (f"{setting.name}='{outside}' is not valid: expected an integer from "
                           f"{setting.low} to {setting.high}")


def test_unset_variables_give_the_table_defaults() -> None:
    cfg = config.load(BASE)
    for setting in config.SETTINGS:
        if setting.field and setting.name not in BASE and setting is not config.SPLUNK_SPOOL_DIR:
            assert getattr(cfg, setting.field) == setting.default, setting.name
    fetched = config.load(FETCHED)
    assert fetched.token_refetch_s == config.SPLUNK_HEC_TOKEN_REFETCH_S.default == 30


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        (config.SPLUNK_HEC_TOKEN, "s3cr3t-t\u00f6ken-value"),
        (config.SPLUNK_DROP_REGEX, "s3cr3t[("),
        (config.SPLUNK_MASK, "s3cr3t-without-an-arrow"),
    ],
    ids=lambda v: v.name if isinstance(v, config.Setting) else "",
)
def test_secret_values_are_never_in_a_message(setting: config.Setting, value: str) -> None:
    assert setting.secret
    (problem,) = problems({**BASE, setting.name: value})
    assert problem.startswith(f"{setting.name} is not valid: ")
    assert "s3cr3t" not in problem
    assert setting.field in config._HIDDEN_FIELDS


def test_secret_fields_are_not_in_the_repr() -> None:
    cfg = config.load({**BASE, "SPLUNK_MASK": r"s3cr3t\d+=>[x]", "SPLUNK_DROP_REGEX": "s3cr3t"})
    assert "s3cr3t" not in repr(cfg) and "abc-123" not in repr(cfg)


def test_a_setting_is_read_only() -> None:
    with pytest.raises(AttributeError):
        config.SPLUNK_FLUSH.default = "sync"  # type: ignore[misc]


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
    """Core modules name a variable through its Setting (`config.SPLUNK_FLUSH.name`), so a
    renamed variable cannot leave a stale spelling behind in a message."""
    names = [s.name for s in config.SETTINGS]
    core = [p for p in (ROOT / "ext").rglob("*.py")
            if "local" not in p.relative_to(ROOT / "ext").parts and p.name != "config.py"]
    assert len(core) >= 15
    for path in core:
        for text in _string_constants(ast.parse(path.read_text())):
            spelled = [name for name in names if name in text]
            assert not spelled, f"{path.relative_to(ROOT)} spells {spelled} in {text!r}"
