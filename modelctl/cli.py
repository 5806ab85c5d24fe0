"""The operator's command line.

    python -m modelctl render   --stack dev [--config FILE] --out DIR
    python -m modelctl demo     [--dir .mlflow-demo] [--no-serve]
    python -m modelctl promote  --stack prod --version 8 [--strategy canary] [--percent 10]
    python -m modelctl promote  --stack prod --finish
    python -m modelctl rollback --stack prod [--to 7]
    python -m modelctl status   --stack prod
    python -m modelctl diff     --stack prod [--from A.yaml] [--to B.yaml] [--json]

Exit codes: 0 ok, 1 refused (bad config, unknown version, nothing to roll back), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from modelctl.render import PROJECT_ROOT


class CommandError(Exception):
    """A refusal: printed without a traceback, exit code 1."""


def _add_stack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    p.add_argument(
        "--config",
        type=Path,
        help="stack config file to use instead of Pulumi.<stack>.yaml",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelctl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render", help="run the program under the mock runtime and write what it declares")
    _add_stack_args(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")

    p = sub.add_parser("demo", help="register a sample model, render the dev stack, serve it locally")
    p.add_argument("--dir", type=Path, default=PROJECT_ROOT / ".mlflow-demo", help="working folder")
    p.add_argument("--no-serve", action="store_true", help="skip serving the model on loopback")
    p.add_argument("--port", type=int, default=0, help="loopback port for the demo server (0: any free)")

    p = sub.add_parser("promote", help="start/adjust a candidate, or finish a promotion")
    _add_stack_args(p)
    p.add_argument("--version", help="candidate model version")
    p.add_argument("--strategy", choices=["canary", "blue-green", "shadow"])
    p.add_argument("--percent", type=int)
    p.add_argument("--finish", action="store_true", help="the candidate becomes model.version")
    p.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")

    p = sub.add_parser("rollback", help="drop the candidate, or go back to the previous version")
    _add_stack_args(p)
    p.add_argument("--to", help="the version to roll back to (default: the one the stack ran before)")
    p.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")

    p = sub.add_parser(
        "diff",
        help="what `pulumi up` would create, update, replace or delete for a config edit (offline)",
        description=(
            "Render two stack files under the mock runtime and print, per resource, create / delete / "
            "update (changed inputs) / replace (the input that forces it, and where that rule was read)."
        ),
    )
    p.add_argument("--stack", required=True, help="stack name (Pulumi.<stack>.yaml)")
    p.add_argument(
        "--from", dest="from_file", type=Path, help="the stack file before the edit (default: the committed one, HEAD)"
    )
    p.add_argument("--to", dest="to_file", type=Path, help="the stack file after the edit (default: the working copy)")
    p.add_argument("--json", action="store_true", help='print [{"type", "name", "action", "paths"}, ...]')

    p = sub.add_parser("status", help="stable, candidate, strategy, percent and what the registry says")
    _add_stack_args(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "render":
            from modelctl.commands import render

            return render(args.stack, args.config, args.out)
        if args.command == "demo":
            from modelctl.demo import demo

            return demo(args.dir, serve=not args.no_serve, port=args.port)
        if args.command == "promote":
            from modelctl.stackops import promote

            return promote(
                args.stack,
                args.config,
                version=args.version,
                strategy=args.strategy,
                percent=args.percent,
                finish=args.finish,
                dry_run=args.dry_run,
            )
        if args.command == "rollback":
            from modelctl.stackops import rollback

            return rollback(args.stack, args.config, to=args.to, dry_run=args.dry_run)
        if args.command == "diff":
            from modelctl.diff import diff_command

            return diff_command(args.stack, args.from_file, args.to_file, as_json=args.json)
        if args.command == "status":
            from modelctl.stackops import status

            return status(args.stack, args.config)
    except CommandError as exc:
        print(f"modelctl {args.command}: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.command)
