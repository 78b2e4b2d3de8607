import json
import subprocess
import sys

import pytest

from sentiwatch.cli import HANDLERS, build_parser, main
from sentiwatch.config import load_settings
from sentiwatch.errors import ConfigError


def test_defaults_and_env_override():
    settings = load_settings(environ={"SENTIWATCH_WINDOW_SECONDS": "30", "SENTIWATCH_BROKERS": "k:9093"})
    assert settings.window_seconds == 30
    assert settings.brokers == "k:9093"
    assert load_settings(environ={}).window_seconds == 60


def test_file_then_env_then_flag(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('window_seconds = 120\nweb_port = 7000\n[detector]\nmin_volume = 50\n')
    settings = load_settings(path, overrides={"web_port": 7100}, environ={"SENTIWATCH_WINDOW_SECONDS": "300"})
    assert (settings.window_seconds, settings.web_port, settings.detector.min_volume) == (300, 7100, 50)


def test_unknown_file_key_names_it(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"window_secs": 5}))
    with pytest.raises(ConfigError, match="window_secs"):
        load_settings(path, environ={})


def test_unknown_env_is_only_a_warning(caplog):
    settings = load_settings(environ={"SENTIWATCH_SERVICE_HOST": "10.0.0.1"})
    assert settings.brokers
    assert "SENTIWATCH_SERVICE_HOST" in caplog.text


@pytest.mark.parametrize("env, key", [
    ({"SENTIWATCH_WEB_PORT": "abc"}, "SENTIWATCH_WEB_PORT"),
    ({"SENTIWATCH_WINDOW_SECONDS": "0"}, "window_seconds"),
    ({"SENTIWATCH_WATCHLIST": "[1]"}, "SENTIWATCH_WATCHLIST"),
    ({"SENTIWATCH_DETECTOR_MIN_VOLUME": "x"}, "SENTIWATCH_DETECTOR_MIN_VOLUME"),
])
def test_invalid_value_names_the_key(env, key):
    with pytest.raises(ConfigError, match=key):
        load_settings(environ=env)


def test_watchlist_from_env():
    settings = load_settings(environ={"SENTIWATCH_WATCHLIST": '{"ACME": ["acme", "$acme"]}'})
    assert settings.watchlist == {"ACME": ["acme", "$acme"]}


def test_every_contract_subcommand_has_help():
    parser = build_parser()
    for command in ("train", "evaluate", "export", "score", "bench", "broker", "stream", "replay",
                    "backtest", "demo"):
        assert command in HANDLERS
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])  # --out is required
    assert exit_info.value.code == 2


def test_console_script_one_line_error(tmp_path):
    missing = tmp_path / "nope.csv"
    result = subprocess.run([sys.executable, "-m", "sentiwatch.cli", "backtest", "--input", str(missing),
                             "--output", str(tmp_path / "o.csv")], capture_output=True, text=True)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
