"""Which models the dashboard shows: the command line after ``--`` and the environment, parsed without exiting."""

from __future__ import annotations

import pytest

from dashboard import config
from dashboard.config import Config, ConfigError, ModelArg


def test_each_data_path_belongs_to_the_model_before_it():
    cfg = config.parse_argv(["--model", "a.py:make", "--data", "imgs/", "--model", "shapes_cnn", "--model", "m:f"])
    assert cfg == Config((ModelArg("a.py:make", "imgs/"), ModelArg("shapes_cnn"), ModelArg("m:f")), only=False)
    assert [m.key for m in cfg.models] == ["a.py:make@imgs/", "shapes_cnn", "m:f"]
    assert config.parse_argv(["--only", "--model", "m:f"]).only


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "x.npz"], "comes before any --model"),
        (["--model", "m:f", "--data", "a", "--data", "b"], "two --data paths"),
        (["--model"], "expected one argument"),
        (["--mod", "m:f"], "unrecognized arguments: --mod"),  # no abbreviations: pytest's flags never pass
        (["--model", " "], "--model needs a non-empty value"),
    ],
)
def test_bad_arguments_raise_a_config_error_not_system_exit(argv, message):
    with pytest.raises(ConfigError, match=message) as info:
        config.parse_argv(argv)
    assert "usage:" in str(info.value) or "--" in str(info.value)


def test_environment_lists_models_with_optional_data():
    env = {config.ENV_MODELS: " shapes_cnn ; my.py:make@data/rows.csv;", config.ENV_ONLY: "1"}
    assert config.parse_env(env) == Config((ModelArg("shapes_cnn"), ModelArg("my.py:make", "data/rows.csv")), True)
    assert config.parse_env({}) == Config()
    with pytest.raises(ConfigError, match=r"\$EXPLAIN_MODELS: expected SPEC or SPEC@PATH, got 'm:f@'"):
        config.parse_env({config.ENV_MODELS: "m:f@"})
    with pytest.raises(ConfigError, match=r"\$EXPLAIN_ONLY: expected 1 or 0, got 'maybe'"):
        config.parse_env({config.ENV_ONLY: "maybe"})


def test_command_line_first_then_environment_each_model_once():
    cfg = config.from_process(["--model", "a:f"], {config.ENV_MODELS: "b:g;a:f", config.ENV_ONLY: "0"})
    assert [m.key for m in cfg.models] == ["a:f", "b:g"] and not cfg.only
    with pytest.raises(ConfigError, match="--only .* but no --model"):
        config.from_process(["--only"], {})
