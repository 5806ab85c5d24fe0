"""``python -m monitor serve ...``: the model monitor (one per model).

Every failure is one line on stderr and a non-zero exit: 2 for a bad flag, 1 for a reference that
cannot be loaded, a store that cannot be written or a port that cannot be bound, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
from typing import NoReturn

from monitor.reference import ReferenceError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w)\s*$")


class CLIError(Exception):
    """A failure to report as one line (exit status ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def duration(text: str) -> float:
    """Seconds of ``30s``, ``10m``, ``1h``, ``7d``, ``2w`` (a positive duration)."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s, 10m, 1h, 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _share(text: str) -> float:
    value = _non_negative(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not in (0, 1]")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{self.prog}: {message} (see --help)", 2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m monitor", description="The model monitor: capture receiver, drift, shadow agreement.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("serve", help="receive capture records, evaluate every interval, serve /metrics")
    s.add_argument("--model", required=True, help="the registered model name the records must carry")
    s.add_argument("--reference", required=True, help="reference data URI (models:/, runs:/, s3://, a path)")
    s.add_argument("--store", required=True, help="directory of the record store (a persistent volume)")
    s.add_argument("--port", type=_port, default=8080)
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--interval", type=duration, default=duration("10m"), help="time between evaluations")
    s.add_argument("--window", type=duration, default=duration("1h"), help="traffic one evaluation looks at")
    s.add_argument("--retention", type=duration, default=duration("7d"), help="how long records are kept")
    s.add_argument("--stable", help="the stable version (shadow comparison)")
    s.add_argument("--candidate", help="the candidate version (shadow comparison)")
    s.add_argument("--strategy", choices=("canary", "shadow", "blue-green"), default="canary")
    s.add_argument("--task", choices=("auto", "classification", "regression"), default="auto")
    s.add_argument("--shadow-tolerance", type=_non_negative, default=0.0)
    s.add_argument("--shadow-window", type=duration, default=duration("30s"))
    s.add_argument("--max-reference-rows", type=_positive_int, default=50_000)
    s.add_argument("--drift-share", type=_share, default=0.5, help="share of drifted columns for model_drift_detected")
    s.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    s.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    if args.window < args.interval:
        raise CLIError(f"--window ({args.window:g}s) is shorter than --interval ({args.interval:g}s)", 2)
    from monitor import reference as ref
    from monitor.service import Config, Evaluator, Monitor

    try:
        frame = ref.load(args.reference, args.tracking_uri, max_rows=args.max_reference_rows)
    except ReferenceError as e:
        raise CLIError(f"cannot load the reference: {e}; {ref.how_to_log(args.model)}") from None
    config = Config(
        model=args.model,
        store=args.store,
        interval_s=args.interval,
        window_s=args.window,
        retention_s=args.retention,
        stable=args.stable,
        candidate=args.candidate,
        strategy=args.strategy,
        task=args.task,
        shadow_tolerance=args.shadow_tolerance,
        shadow_window_s=args.shadow_window,
        drift_share=args.drift_share,
    )
    try:
        monitor = Monitor(config, frame)
        probe = os.path.join(args.store, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise CLIError(f"cannot use the store {args.store}: {e.strerror or e}") from None
    if not monitor.schema.features:
        raise CLIError(f"the reference {args.reference} has no feature column (only {monitor.schema.prediction})")
    sock = _bind(args.host, args.port)

    import uvicorn

    from monitor.app import create_app

    evaluator = Evaluator(monitor, args.interval)
    app = create_app(monitor, evaluator)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    evaluator.start()
    logging.getLogger("monitor").info(
        "serving %s on %s:%d: reference %d rows x %d features%s, store %s",
        args.model,
        args.host,
        sock.getsockname()[1],
        len(monitor.reference),
        len(monitor.schema.features),
        f" + outputs column {monitor.schema.prediction!r}" if monitor.schema.prediction else "",
        args.store,
    )
    try:
        server.run(sockets=[sock])
    finally:
        evaluator.stop(timeout=1.0)
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CLIError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.command == "serve":
            return serve(args)
        raise CLIError(f"unknown command {args.command}", 2)
    except CLIError as e:
        print(f"monitor: {e}" if not str(e).startswith("python -m monitor") else str(e), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
