"""The `sentiwatch` command line: argument parsing and error reporting, nothing else.

Each subcommand's work lives in the part that owns it and is imported only when that subcommand
runs, so `sentiwatch stream` in the slim streamer image never imports torch. Exit status: 0 success,
2 usage error (argparse), 1 any other error with a one-line message (a traceback only with --debug).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from sentiwatch import __version__
from sentiwatch.config import ENV_PREFIX, Settings, load_settings
from sentiwatch.errors import SentiwatchError
from sentiwatch.logs import configure_logging

# subcommand -> "module:function"; the function takes the parsed arguments and returns an exit status.
HANDLERS: dict[str, str] = {
    "train": "sentiwatch.trainer.commands:train_command",
    "evaluate": "sentiwatch.trainer.commands:evaluate_command",
    "export": "sentiwatch.exporter.commands:export_command",
    "score": "sentiwatch.exporter.commands:score_command",
    "bench": "sentiwatch.exporter.bench:bench_command",
    "broker": "sentiwatch.streamer.kafka.broker:broker_command",
    "stream": "sentiwatch.streamer.worker:stream_command",
    "replay": "sentiwatch.tools.replay:replay_command",
    "backtest": "sentiwatch.streamer.detection.backtest:backtest_command",
    "demo": "sentiwatch.tools.demo:demo_command",
    "compare": "sentiwatch.tools.compare:compare_command",
    "feedback": "sentiwatch.tools.feedback:export_command",
    "alerts-sink": "sentiwatch.tools.alerts_sink:alerts_sink_command",
}


def build_parser() -> argparse.ArgumentParser:
    # --config and --debug are accepted before or after the subcommand: the subcommands' copies default to
    # SUPPRESS, so they never overwrite a value given before the subcommand.
    parser = argparse.ArgumentParser(
        prog="sentiwatch", parents=[_common_flags(debug=False, config=None)],
        description="Streaming public-opinion monitor: score texts from Kafka, watch per-topic "
        "sentiment, alert on negative surges. Every setting is also an environment variable SENTIWATCH_<NAME> "
        "and a key in the config file; a flag wins.",
    )
    common = _common_flags(debug=argparse.SUPPRESS, config=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"sentiwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=[common])

    train = command("train", "fine-tune the two-head classifier")
    train.add_argument("--out", required=True, metavar="DIR", help="output model folder (required)")
    train.add_argument("--base", metavar="DIR",
                       help="Hugging Face encoder folder, or 'multilingual' (default: packaged all-MiniLM-L6-v2)")
    train.add_argument("--data", action="append", metavar="SPEC", default=[],
                       help="builtin, builtin:sentiment, builtin:topic, or a CSV/JSONL file (repeatable; "
                       "default: builtin)")
    train.add_argument("--limit", type=int, metavar="N", help="use at most N training examples (default: all)")
    train.add_argument("--epochs", type=int, metavar="N", help="maximum number of epochs (default: the trainer's)")
    train.add_argument("--seed", type=int, default=13, metavar="N", help="random seed (default: %(default)s)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where to train (default: %(default)s: cuda when available)")

    evaluate = command("evaluate", "metrics on a labelled file or the built-in test split")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="DIR", help="a trained model folder (required: this or --bundle)")
    source.add_argument("--bundle", metavar="DIR", help="an ONNX model bundle (required: this or --model)")
    evaluate.add_argument("--input", metavar="FILE", help="labelled CSV/JSONL (default: built-in test split)")
    evaluate.add_argument("--output", metavar="FILE.json", help="write metrics.json here (default: stdout only)")

    export = command("export", "write an ONNX model bundle")
    export.add_argument("--model", required=True, metavar="DIR", help="trained model folder (required)")
    export.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write (required)")
    export.add_argument("--precision", choices=("fp32", "fp16", "int8", "all"), default="all",
                        help="variants to write (default: %(default)s)")
    export.add_argument("--int8-isa", choices=("auto", "avx512_vnni", "avx512", "avx2"), default="auto",
                        help="instruction set the int8 graph is quantized for (default: %(default)s: this CPU's)")

    score = command("score", "offline batch scoring of a CSV/JSONL file")
    score.add_argument("--bundle", required=True, metavar="DIR", help="ONNX model bundle (required)")
    score.add_argument("--input", required=True, metavar="FILE", help="CSV/JSONL to score (required)")
    score.add_argument("--output", required=True, metavar="FILE.jsonl", help="one JSON object per row (required)")
    score.add_argument("--text-column", default="text", metavar="NAME", help="text field (default: %(default)s)")
    score.add_argument("--id-column", default="id", metavar="NAME",
                       help="id field (default: %(default)s; the line number when absent)")
    score.add_argument("--batch-size", type=int, default=64, metavar="N", help="texts per batch (default: %(default)s)")

    bench = command("bench", "inference and end-to-end benchmarks")
    bench.add_argument("--bundle", metavar="DIR", help=_setting_help("bundle", "ONNX model bundle to measure"))
    bench.add_argument("--model", metavar="DIR", help="also measure this PyTorch model folder (default: none)")
    bench.add_argument("--brokers", metavar="HOST:PORT",
                       help="Kafka for the end-to-end part (default: an embedded broker started for it)")
    bench.add_argument("--skip-end-to-end", action="store_true", help="measure inference only (default: off)")
    bench.add_argument("--end-to-end-batch-size", type=int, default=32, metavar="N",
                       help="the worker's batch_max in the end-to-end run, and bare inference's batch size "
                       "(default: %(default)s)")
    bench.add_argument("--output", metavar="FILE.json", help="write the results here (default: stdout only)")
    bench.add_argument("--batch-sizes", default="1,8,32,128", metavar="LIST",
                       help="inference batch sizes, comma separated (default: %(default)s)")
    bench.add_argument("--texts", type=int, default=1024, metavar="N",
                       help="texts per measurement (default: %(default)s)")

    broker = command("broker", "run the embedded Kafka-compatible broker in the foreground")
    broker.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    broker.add_argument("--port", type=int, default=9092, help="port to listen on (default: %(default)s)")

    stream = command("stream", "run a stream worker")
    stream.add_argument("--bundle", metavar="DIR", help=_setting_help("bundle", "ONNX model bundle"))
    stream.add_argument("--brokers", metavar="HOST:PORT", help=_setting_help("brokers", "Kafka bootstrap servers"))
    stream.add_argument("--web-host", metavar="H", help=_setting_help("web_host", "address of /metrics and /status"))
    stream.add_argument("--web-port", type=int, metavar="P", help=_setting_help("web_port", "port of the web server"))

    replay = command("replay", "produce a file's records into Kafka")
    replay.add_argument("--input", metavar="FILE", help="CSV/JSONL (default: the built-in test texts)")
    replay.add_argument("--topic", required=True, metavar="NAME", help="Kafka topic to produce to (required)")
    replay.add_argument("--rate", type=float, metavar="N", help="records per second (default: as fast as possible)")
    replay.add_argument("--brokers", metavar="HOST:PORT", help=_setting_help("brokers", "Kafka bootstrap servers"))
    replay.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="give up when no broker answers within this time (default: %(default)s)")

    backtest = command("backtest", "run the spike detector over a historical series")
    backtest.add_argument("--input", required=True, metavar="FILE.csv",
                          help="timestamp,value or timestamp,total,negative (required)")
    backtest.add_argument("--output", required=True, metavar="FILE.csv",
                          help="the input plus anomaly_score and alert (required)")
    backtest.add_argument("--plot", metavar="FILE.png", help="also draw the series and alerts (default: none)")

    demo = command("demo", "the main job on the embedded broker, end to end")
    demo.add_argument("--keep-running", action="store_true", help="stay up after the alert resolved (default: off)")
    demo.add_argument("--work-dir", metavar="DIR",
                      help="where the demo model and bundle are cached (env SENTIWATCH_DEMO_DIR; default: .cache/demo)")
    demo.add_argument("--model", metavar="DIR",
                      help="use this trained model folder instead of training (default: none)")
    demo.add_argument("--bundle", metavar="DIR",
                      help="use this model bundle instead of exporting one (default: none)")
    demo.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                      help="give up when the surge's alert has not resolved by then (default: %(default)s)")
    demo.add_argument("--until-stream-done", action="store_true",
                      help="end once every record is scored instead of waiting for the alert to resolve "
                      "(default: off)")

    compare = command("compare", "two bundles on the same labelled texts: per-class differences, changed labels; "
                      "exit 1 on a regression")
    compare.add_argument("--old", required=True, metavar="BUNDLE", help="the bundle serving now (required)")
    compare.add_argument("--new", required=True, metavar="BUNDLE", help="the candidate bundle (required)")
    compare.add_argument("--input", action="append", default=[], metavar="FILE",
                         help="labelled CSV/JSONL, e.g. held-back feedback (repeatable; default: none)")
    compare.add_argument("--skip-builtin", action="store_true", help="leave out the built-in test split (default: off)")
    compare.add_argument("--margin", type=float, default=0.01,
                         help="largest allowed macro-F1 drop per head and set (default: %(default)s)")
    compare.add_argument("--class-margin", type=float, default=0.05,
                         help="largest allowed drop of one class's F1 (default: %(default)s)")
    compare.add_argument("--show", type=int, default=20, metavar="N",
                         help="changed texts printed per set (default: %(default)s)")
    compare.add_argument("--output", metavar="FILE.json", help="the full comparison as JSON (default: none)")

    feedback = command("feedback", "analysts' labels from the feedback topic")
    feedback_actions = feedback.add_subparsers(dest="feedback_action", metavar="ACTION", required=True)
    feedback_export = feedback_actions.add_parser(
        "export", help="the latest label per id as a labelled file for train --data", parents=[common])
    feedback_export.add_argument("--out", required=True, metavar="FILE", help=".jsonl or .csv (required)")
    feedback_export.add_argument("--brokers", metavar="HOST:PORT",
                                 help=_setting_help("brokers", "Kafka bootstrap servers"))

    sink = command("alerts-sink", "copy alert events from Kafka to a JSON-lines file and/or Loki")
    sink.add_argument("--out", metavar="FILE",
                      help="append one JSON object per event here; - for stdout (default: none)")
    sink.add_argument("--loki", metavar="URL", help="Loki's base address, e.g. http://loki:3100 (default: none)")
    sink.add_argument("--loki-tenant", metavar="ID", help="X-Scope-OrgID for a multi-tenant Loki (default: none)")
    sink.add_argument("--brokers", metavar="HOST:PORT", help=_setting_help("brokers", "Kafka bootstrap servers"))
    sink.add_argument("--group", metavar="NAME",
                      help="the sink's consumer group (default: <consumer_group>-alerts-sink)")
    sink.add_argument("--start-at", choices=("earliest", "latest"), default="earliest",
                      help="where a new sink group begins (default: %(default)s: every event kept on the topic)")
    return parser


def _common_flags(debug: object, config: object) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=debug,
                        help="show tracebacks and debug logs (wins over log_level)")
    common.add_argument("--config", metavar="FILE", default=config,
                        help="config file (TOML, JSON or YAML) (env SENTIWATCH_CONFIG; default: none)")
    return common


def _setting_help(key: str, text: str) -> str:
    """A flag that sets a setting names its environment variable and the setting's default."""
    default = getattr(Settings(), key)
    return f"{text} (env {ENV_PREFIX}{key.upper()}; default: {default if default != '' else 'none'})"


def resolve_handler(command: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, function_name = HANDLERS[command].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(debug=args.debug)
    try:
        configure_logging(*_log_settings(args.config), debug=args.debug)
    except SentiwatchError as exc:
        print(f"sentiwatch {args.command}: error: {exc}", file=sys.stderr)
        return 1
    try:
        status = resolve_handler(args.command)(args)
    except KeyboardInterrupt:
        print("sentiwatch: interrupted", file=sys.stderr)
        return 130
    except SentiwatchError as exc:
        if args.debug:
            raise
        print(f"sentiwatch {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the contract: one line, no traceback unless --debug
        if args.debug:
            raise
        print(f"sentiwatch {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return int(status or 0)


def _log_settings(config_file: str | None) -> tuple[str, str]:
    """log_level and log_format from the config file and environment. The subcommand loads the settings again and
    warns about unknown variables then; this early read stays quiet so that each warning appears once."""
    config_log = logging.getLogger("sentiwatch.config")
    previous = config_log.level
    config_log.setLevel(logging.ERROR)
    try:
        settings = load_settings(config_file)
    finally:
        config_log.setLevel(previous)
    return settings.log_level, settings.log_format


if __name__ == "__main__":
    sys.exit(main())
