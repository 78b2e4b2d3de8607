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


# --- the command line (issue 16) ------------------------------------------------------------------------------

def _run_cli(*args, env=None, timeout=60):
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("SENTIWATCH_")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "sentiwatch.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=environ)


def test_version(capsys):
    from sentiwatch import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sentiwatch {__version__}"


def _subcommand_parsers():
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0]))]
    return subparsers.choices


# Flags that override a setting (the handler passes them to load_settings or falls back on the setting).
SETTING_FLAGS = {("stream", "bundle"), ("stream", "brokers"), ("stream", "web_host"), ("stream", "web_port"),
                 ("replay", "brokers"), ("bench", "bundle")}


def test_every_flag_has_help_and_setting_flags_name_their_variable_and_default():
    """A flag that sets a setting names SENTIWATCH_<KEY> and the setting's default; every other flag with a value
    says its default (or that it is required)."""
    import dataclasses

    from sentiwatch.config import Settings

    defaults = {f.name: getattr(Settings(), f.name) for f in dataclasses.fields(Settings)}
    for name, sub in _subcommand_parsers().items():
        for action in sub._actions:
            if action.dest in ("help",) or not action.option_strings:
                continue
            where = f"sentiwatch {name} {action.option_strings[-1]}"
            assert action.help, f"{where} has no help"
            if (name, action.dest) in SETTING_FLAGS:
                assert f"SENTIWATCH_{action.dest.upper()}" in action.help, where
                assert f"default: {defaults[action.dest] or 'none'}" in action.help, where
            elif action.nargs != 0:
                assert "default" in action.help or "required" in action.help, where


@pytest.mark.parametrize("position", ["before", "after"])
def test_config_is_accepted_before_or_after_the_subcommand(tmp_path, position):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"window_secs": 5}))
    command = ["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]
    argv = ["--config", str(config), *command] if position == "before" else [*command, "--config", str(config)]
    assert build_parser().parse_args(argv).config == str(config)
    result = _run_cli(*argv)
    assert result.returncode == 1
    assert "window_secs" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_flag_after_the_subcommand_does_not_reset_one_given_before():
    args = build_parser().parse_args(["--debug", "--config", "a.toml", "stream"])
    assert args.debug is True and args.config == "a.toml"
    assert build_parser().parse_args(["stream"]).config is None


def test_bad_log_setting_stops_the_start_naming_the_key():
    result = _run_cli("backtest", "--input", "x.csv", "--output", "y.csv", env={"SENTIWATCH_LOG_FORMAT": "xml"})
    assert result.returncode == 1
    assert "log_format" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_json_log_format_and_log_level_take_effect():
    import logging as logging_

    from sentiwatch.logs import configure_logging

    root = logging_.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        import io

        stream = io.StringIO()
        configure_logging("WARNING", "json", stream=stream)
        logging_.getLogger("sentiwatch.test").info("hidden")
        logging_.getLogger("sentiwatch.test").warning("shown %d", 7)
        try:
            raise ValueError("boom")
        except ValueError:
            logging_.getLogger("sentiwatch.test").exception("failed")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(d["level"], d["logger"], d["message"]) for d in lines] == [
            ("WARNING", "sentiwatch.test", "shown 7"), ("ERROR", "sentiwatch.test", "failed")]
        assert "ValueError: boom" in lines[1]["exception"] and lines[0]["time"].endswith("+00:00")
        configure_logging("WARNING", "text", debug=True, stream=stream)
        # A second call replaces its own handler and leaves others (pytest's capture) alone.
        assert root.level == logging_.DEBUG
        assert len([h for h in root.handlers if h.get_name() == "sentiwatch"]) == 1
        assert len(root.handlers) == len(saved[0]) + 1
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
