"""modelctl: render, promote, roll back and inspect the model a stack serves.

    modelctl render   --stack dev [--config FILE] --out DIR
    modelctl demo     [--dir .mlflow-demo] [--no-serve]
    modelctl promote  --stack prod --version 8 [--strategy canary] [--percent 10]
    modelctl promote  --stack prod --finish
    modelctl rollback --stack prod [--to 7]
    modelctl status   --stack prod
    modelctl analyze  --stack prod [--write] [--json]
    modelctl diff     --stack prod [--from A.yaml | --from-ref REV] [--to B.yaml] [--json]
    modelctl reference log --model NAME --version V --data train.parquet [--tracking-uri URI]

(``python -m modelctl ...`` is the same.) modelctl works on the project in --project-dir, else
the nearest folder at or above the working directory holding Pulumi.yaml, and runs there, as
`pulumi` runs the program.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 1
"""A refusal or a failure: bad config, unknown version, unreachable registry, nothing to roll back."""
EXIT_USAGE = 2
"""The command line itself is wrong (argparse's own code)."""
EXIT_DRIFT = 3
"""``status``: a SageMaker endpoint is not running what the stack declares."""
EXIT_HOLD = 10
"""``analyze``: hold (the step has not held long enough, too few requests, a figure is missing)."""
EXIT_ABORT = 20
"""``analyze``: abort (the candidate regressed, or the platform rolled it back already)."""
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}    success
  {EXIT_ERROR}    error: bad config or stack file, unknown version, unreachable registry,
       nothing to roll back, another run holds the stack file (one line on stderr)
  {EXIT_USAGE}    usage: unknown command or option, missing argument
  {EXIT_DRIFT}    drift (status): a SageMaker endpoint runs something else than the stack declares
  {EXIT_HOLD}   hold (analyze): the step stays; not long enough, too few requests or a figure missing
  {EXIT_ABORT}   abort (analyze): the candidate regressed; --write dropped it (rollback)
       (analyze: {EXIT_OK} is advance or finish)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

environment:
  MLFLOW_TRACKING_URI         the registry when the stack file names none
  MLFLOW_HTTP_REQUEST_TIMEOUT, MLFLOW_HTTP_REQUEST_MAX_RETRIES
                              registry calls: 4 s per attempt, 2 retries (under 15 s) unless set
  MODELCTL_LOCK_TIMEOUT       seconds promote/rollback wait for another run on the same file (60)
"""


class CommandError(Exception):
    """A refusal: printed as one line without a traceback, exit code 1."""


def _add_common_args(p: argparse.ArgumentParser, *, top: bool) -> None:
    """--project-dir and --debug, accepted before or after the command name."""
    default = None if top else argparse.SUPPRESS
    p.add_argument(
        "--project-dir",
        type=Path,
        default=default,
        metavar="DIR",
        help="the project folder (holding Pulumi.yaml); default: the nearest one at or above the working directory",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print the full traceback of an error",
    )


def _add_stack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml in the project folder")
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="stack config file to use instead of Pulumi.<stack>.yaml (e.g. a copy pointing at another registry)",
    )


def _subparser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    help_text: str,
    description: str = "",
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_args(p, top=False)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelctl",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_args(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _subparser(sub, "render", "run the program under the mock runtime and write what it declares")
    _add_stack_args(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (resources.json, outputs.json, kubernetes/)")

    p = _subparser(
        sub,
        "demo",
        "register a sample model, render the dev stack, serve it locally",
        "register a sample model (versions 1-3, alias champion) in a sqlite registry, render the dev "
        "stack against it and serve the stable version on loopback",
    )
    p.add_argument("--dir", type=Path, default=None, help="working folder (default: .mlflow-demo in the project)")
    p.add_argument("--no-serve", action="store_true", help="skip serving the model on loopback")
    p.add_argument("--port", type=int, default=0, help="loopback port for the demo server (0: any free)")

    p = _subparser(
        sub,
        "promote",
        "start/adjust a candidate, or finish a promotion",
        "start a candidate version beside the stable one, change its strategy or percent, or finish "
        "(the candidate becomes model.version); edits Pulumi.<stack>.yaml and prints the diff",
    )
    _add_stack_args(p)
    p.add_argument("--version", help="the candidate model version (must exist in the registry)")
    p.add_argument(
        "--strategy",
        choices=["canary", "blue-green", "shadow"],
        help="canary: a share of live traffic; blue-green: candidate at 0%% then switched to 100%%; "
        "shadow: a share of requests mirrored (default: canary, or the candidate's current one)",
    )
    p.add_argument(
        "--percent",
        type=int,
        metavar="N",
        help="canary: share of live traffic (0-100, default 10); blue-green: 0 or 100; "
        "shadow: share of requests mirrored (default 100)",
    )
    p.add_argument(
        "--steps",
        metavar="N,N,...",
        help="progressive delivery: the percents `analyze` walks the candidate through, e.g. 5,25,50,100 "
        "(blue-green 0,100; shadow one step); --percent defaults to the first",
    )
    p.add_argument("--finish", action="store_true", help="the candidate becomes model.version")
    p.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")

    p = _subparser(
        sub,
        "rollback",
        "drop the candidate, or go back to the previous version",
        "drop the candidate (abort the trial), or set model.version back to the version the stack "
        "ran before (from pulumi stack history, else the git log of the stack file)",
    )
    _add_stack_args(p)
    p.add_argument(
        "--to", metavar="VERSION", help="the version to roll back to (default: the one the stack ran before)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")

    p = _subparser(
        sub,
        "diff",
        "what `pulumi up` would create, update, replace or delete for a config edit (offline)",
        "render two stack files under the mock runtime and print, per resource, create / delete / update "
        "(the changed inputs) / replace (the input that forces it, where that rule was read, and whether "
        "the old one is deleted first)",
    )
    p.add_argument("--stack", required=True, help="stack name: Pulumi.<stack>.yaml in the project folder")
    p.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        metavar="FILE",
        help="the stack file before the edit (default: Pulumi.<stack>.yaml as committed at HEAD; "
        "'none': a new stack, everything is a create)",
    )
    p.add_argument(
        "--to",
        dest="to_file",
        type=Path,
        metavar="FILE",
        help="the stack file after the edit (default: the working copy of Pulumi.<stack>.yaml)",
    )
    p.add_argument(
        "--from-ref",
        metavar="REV",
        help="the before side is the stack file AND the program as committed at REV (a git commit, branch "
        "or tag): code and serving-runtime changes since REV show too (what a PR check wants)",
    )
    p.add_argument("--json", action="store_true", help='print [{"type", "name", "action", "paths", ...}, ...]')

    p = _subparser(sub, "status", "stable, candidate, strategy, percent and what the registry says")
    _add_stack_args(p)

    p = _subparser(
        sub,
        "analyze",
        "decide the candidate's next step from live metrics: advance, finish, hold or abort",
        "read the stack file, fetch stable's and the candidate's figures over the last analysis.interval "
        "from the stack's metrics source (Prometheus, CloudWatch, Azure Monitor, Cloud Monitoring), and "
        "decide: advance (next of candidate.steps), finish (promote --finish), hold, or abort (rollback)",
    )
    _add_stack_args(p)
    p.add_argument("--write", action="store_true", help="apply the edit to the stack file (and print the diff)")
    p.add_argument("--json", action="store_true", help="print {decision, reasons, figures, edit, ...}")

    p = _subparser(
        sub,
        "reference",
        "manage the reference data drift detection compares traffic with",
        "reference log: log a parquet or CSV file as a model version's reference (the run artifact "
        "reference/ of the version's run, what monitoring.drift.reference: models:/<name>/<version> reads)",
    )
    rsub = p.add_subparsers(dest="reference_command", required=True, metavar="ACTION")
    r = _subparser(rsub, "log", "log FILE as the version's reference (run artifact reference/)")
    r.add_argument("--model", required=True, help="registered model name")
    r.add_argument("--version", required=True, help="model version")
    r.add_argument("--data", type=Path, required=True, metavar="FILE", help="the reference: parquet or CSV")
    r.add_argument("--tracking-uri", help="the MLflow tracking server (default: MLFLOW_TRACKING_URI)")
    return parser


def _absolute_paths(args: argparse.Namespace) -> None:
    """Paths on the command line mean what they meant where modelctl was started."""
    for key, value in vars(args).items():
        if isinstance(value, Path):
            setattr(args, key, Path(os.path.abspath(value)))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors: exit 2
    debug = bool(getattr(args, "debug", False))
    try:
        _absolute_paths(args)
        from modelctl.project import activated, project_dir

        project = project_dir(getattr(args, "project_dir", None))
        with activated(project):
            return _dispatch(args, project)
    except CommandError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"modelctl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"modelctl {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: one line, unless --debug
        if debug:
            raise
        print(f"modelctl {args.command}: error: {_describe(exc)} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_ERROR


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _dispatch(args: argparse.Namespace, project: Path) -> int:
    if args.command == "render":
        from modelctl.commands import render

        return render(args.stack, args.config, args.out, project)
    if args.command == "demo":
        from modelctl.demo import demo

        return demo(args.dir or project / ".mlflow-demo", serve=not args.no_serve, port=args.port, project=project)
    if args.command == "promote":
        from modelctl.stackops import promote

        return promote(
            args.stack,
            args.config,
            version=args.version,
            strategy=args.strategy,
            percent=args.percent,
            finish=args.finish,
            steps=args.steps,
            dry_run=args.dry_run,
            project=project,
        )
    if args.command == "rollback":
        from modelctl.stackops import rollback

        return rollback(args.stack, args.config, to=args.to, dry_run=args.dry_run, project=project)
    if args.command == "diff":
        from modelctl.diff import diff_command

        return diff_command(
            args.stack, args.from_file, args.to_file, as_json=args.json, project=project, from_ref=args.from_ref
        )
    if args.command == "status":
        from modelctl.stackops import status

        return status(args.stack, args.config, project=project)
    if args.command == "analyze":
        from modelctl.analyze import analyze

        return analyze(args.stack, args.config, write=args.write, as_json=args.json, project=project)
    if args.command == "reference":
        from modelctl.reference import log_reference

        log_reference(args.model, args.version, args.data, args.tracking_uri)
        return EXIT_OK
    raise AssertionError(args.command)


def entry() -> None:
    """The ``modelctl`` console script (pyproject.toml)."""
    sys.exit(main())
