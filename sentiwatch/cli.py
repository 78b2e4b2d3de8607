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

from sentiwatch.errors import SentiwatchError

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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentiwatch",
        description="Streaming public-opinion monitor: score texts from Kafka, watch per-topic "
        "sentiment, alert on negative surges.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--config", metavar="FILE", help="config file (TOML, JSON or YAML); also SENTIWATCH_CONFIG")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="fine-tune the two-head classifier")
    train.add_argument("--out", required=True, metavar="DIR", help="output model folder")
    train.add_argument("--base", metavar="DIR", help="Hugging Face encoder folder (default: packaged all-MiniLM-L6-v2)")
    train.add_argument("--data", action="append", metavar="SPEC", default=[],
                       help="builtin, builtin:sentiment, builtin:topic, or a CSV/JSONL file (repeatable)")
    train.add_argument("--limit", type=int, metavar="N", help="use at most N training examples")
    train.add_argument("--epochs", type=int, metavar="N", help="maximum number of epochs")
    train.add_argument("--seed", type=int, default=13, metavar="N")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    evaluate = commands.add_parser("evaluate", help="metrics on a labelled file or the built-in test split")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="DIR")
    source.add_argument("--bundle", metavar="DIR")
    evaluate.add_argument("--input", metavar="FILE", help="labelled CSV/JSONL (default: built-in test split)")
    evaluate.add_argument("--output", metavar="FILE.json")

    export = commands.add_parser("export", help="write an ONNX model bundle")
    export.add_argument("--model", required=True, metavar="DIR")
    export.add_argument("--out", required=True, metavar="DIR")
    export.add_argument("--precision", choices=("fp32", "fp16", "int8", "all"), default="all")
    export.add_argument("--int8-isa", choices=("auto", "avx512_vnni", "avx512", "avx2"), default="auto",
                        help="instruction set the int8 graph is quantized for (default: from this CPU)")

    score = commands.add_parser("score", help="offline batch scoring of a CSV/JSONL file")
    score.add_argument("--bundle", required=True, metavar="DIR")
    score.add_argument("--input", required=True, metavar="FILE")
    score.add_argument("--output", required=True, metavar="FILE.jsonl")
    score.add_argument("--text-column", default="text", metavar="NAME")
    score.add_argument("--id-column", default="id", metavar="NAME")
    score.add_argument("--batch-size", type=int, default=64, metavar="N")

    bench = commands.add_parser("bench", help="inference and end-to-end benchmarks")
    bench.add_argument("--bundle", metavar="DIR")
    bench.add_argument("--model", metavar="DIR")
    bench.add_argument("--brokers", metavar="HOST:PORT")
    bench.add_argument("--skip-end-to-end", action="store_true")
    bench.add_argument("--end-to-end-batch-size", type=int, default=32, metavar="N",
                       help="the worker's batch_max in the end-to-end run, and bare inference's batch size")
    bench.add_argument("--output", metavar="FILE.json")
    bench.add_argument("--batch-sizes", default="1,8,32,128", metavar="LIST")
    bench.add_argument("--texts", type=int, default=1024, metavar="N", help="texts per measurement")

    broker = commands.add_parser("broker", help="run the embedded Kafka-compatible broker in the foreground")
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--port", type=int, default=9092)

    stream = commands.add_parser("stream", help="run a stream worker")
    stream.add_argument("--bundle", metavar="DIR")
    stream.add_argument("--brokers", metavar="HOST:PORT")
    stream.add_argument("--web-host", metavar="H")
    stream.add_argument("--web-port", type=int, metavar="P")

    replay = commands.add_parser("replay", help="produce a file's records into Kafka")
    replay.add_argument("--input", metavar="FILE", help="CSV/JSONL (default: the built-in test texts)")
    replay.add_argument("--topic", required=True, metavar="NAME", help="Kafka topic to produce to")
    replay.add_argument("--rate", type=float, metavar="N", help="records per second (default: as fast as possible)")
    replay.add_argument("--brokers", metavar="HOST:PORT")

    backtest = commands.add_parser("backtest", help="run the spike detector over a historical series")
    backtest.add_argument("--input", required=True, metavar="FILE.csv")
    backtest.add_argument("--output", required=True, metavar="FILE.csv")
    backtest.add_argument("--plot", metavar="FILE.png")
    # --config is the global flag; repeating it here reads naturally in `sentiwatch backtest --config F`.
    backtest.add_argument("--config", dest="command_config", metavar="FILE")

    demo = commands.add_parser("demo", help="the main job on the embedded broker, end to end")
    demo.add_argument("--keep-running", action="store_true", help="stay up after the alert resolved")
    demo.add_argument("--work-dir", metavar="DIR", help="where the demo model and bundle are cached")
    demo.add_argument("--model", metavar="DIR", help="use this trained model folder instead of training")
    demo.add_argument("--bundle", metavar="DIR", help="use this model bundle instead of exporting one")
    demo.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                      help="give up when the surge's alert has not resolved by then")
    demo.add_argument("--until-stream-done", action="store_true",
                      help="end once every record is scored instead of waiting for the alert to resolve")

    compare = commands.add_parser("compare", help="two bundles on the same labelled texts: is the new one safe?")
    compare.add_argument("--old", required=True, metavar="BUNDLE")
    compare.add_argument("--new", required=True, metavar="BUNDLE")
    compare.add_argument("--input", action="append", default=[], metavar="FILE",
                         help="labelled CSV/JSONL, e.g. held-back feedback (repeatable)")
    compare.add_argument("--skip-builtin", action="store_true", help="leave out the built-in test split")
    compare.add_argument("--margin", type=float, default=0.01, help="largest allowed macro-F1 drop (default 0.01)")
    compare.add_argument("--class-margin", type=float, default=0.05,
                         help="largest allowed drop of one class's F1 (default 0.05)")
    compare.add_argument("--show", type=int, default=20, metavar="N", help="changed texts to print per set")
    compare.add_argument("--output", metavar="FILE.json")

    feedback = commands.add_parser("feedback", help="analysts' labels from the feedback topic")
    feedback_commands = feedback.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    feedback_export = feedback_commands.add_parser("export", help="the latest label per id as a file for train --data")
    feedback_export.add_argument("--out", required=True, metavar="FILE", help=".jsonl or .csv")
    feedback_export.add_argument("--brokers", metavar="HOST:PORT")
    return parser


def resolve_handler(command: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, function_name = HANDLERS[command].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command_config", None):
        args.config = args.command_config
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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


if __name__ == "__main__":
    sys.exit(main())
