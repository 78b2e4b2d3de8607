"""Handlers of `sentiwatch export` and `sentiwatch score` (argument plumbing only)."""

from __future__ import annotations

import argparse

from sentiwatch.exporter.export import expand_precisions, export_bundle
from sentiwatch.exporter.score import score_file


def export_command(args: argparse.Namespace) -> int:
    manifest = export_bundle(args.model, args.out, expand_precisions(args.precision), args.int8_isa)
    print(f"bundle {args.out}: model version {manifest['model_version']}, max_length {manifest['max_length']}, "
          f"languages {','.join(manifest['languages'])}")
    for name, variant in manifest["variants"].items():
        check = variant["parity"]
        if check["status"] != "passed":
            print(f"  {name:5} {variant['file']:18} for {variant['provider']:22} parity {check['status']}")
            continue
        agreement = ", ".join(f"{head} {value:.2%} of {check['agreement_n'][head]}"
                              for head, value in check["agreement"].items())
        kept = f", {len(variant['fp32_nodes'])} MatMul(s) kept in fp32" if variant.get("fp32_nodes") else ""
        near = sum(check.get("near_tie_flips", {}).values())
        ties = f" ({near} near-tie flip(s) not counted)" if near else ""
        if variant.get("blockwise_nodes"):
            kept = f", {len(variant['blockwise_nodes'])} MatMul(s) in blockwise int8"
        print(f"  {name:5} {variant['file']:18} for {variant['provider']:22} parity passed on {check['n']} texts: "
              f"max abs prob diff {check['max_abs_diff']:.1e}, label agreement {agreement}{kept}{ties}")
    for name, rejected in manifest.get("rejected_variants", {}).items():
        print(f"  {name:5} not written: {rejected['reason']}")
    return 0


def score_command(args: argparse.Namespace) -> int:
    summary = score_file(args.bundle, args.input, args.output, text_column=args.text_column,
                         id_column=args.id_column, batch_size=args.batch_size)
    rate = summary.scored / summary.seconds if summary.seconds else 0.0
    print(f"{args.output}: {summary.rows} rows, {summary.scored} scored, {summary.errors} with errors, "
          f"{summary.truncated} truncated to the model's maximum length ({rate:.0f} texts/s)")
    return 0
