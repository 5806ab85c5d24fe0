"""Command line and environment of ``python -m serving``.

Precedence: command-line flag, then environment variable, then default. The image runs
``ENTRYPOINT ["python", "-m", "serving"]`` with ``CMD ["serve"]`` (SageMaker starts containers as
``docker run IMAGE serve``), so a bare ``serve`` positional is accepted and means the same as none.

Every numeric setting has bounds (``NUMBERS``); a value outside them, from a flag or from the
environment, stops the server before it binds anything, with one line naming the flag and the
variable. The worker count is also bounded by the CPUs the container may use
(``MAX_WORKERS_PER_CPU`` per CPU) unless ``--force-workers`` / ``SERVING_FORCE_WORKERS=1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

DEFAULT_MODEL_URI = "/opt/model"
DEFAULT_PORT = 8080
DEFAULT_METRICS_PORT = 9090
DEFAULT_TIMEOUT_SECONDS = 60
# Longer than the idle timeout of the usual proxies in front of a pod (AWS ALB and nginx: 60 s) so
# the server is not the side that closes an idle connection the proxy is about to reuse (the proxy
# would see a reset and answer 502). Google Cloud's load balancers keep backend connections for
# 600 s: behind those, raise it with SERVING_KEEPALIVE_SECONDS=620.
DEFAULT_KEEPALIVE_SECONDS = 75
# A connection must deliver its request line and headers this long after it opens (or after its
# first byte, for later requests on a keep-alive connection): what closes slow-loris connections.
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
# SageMaker's InvokeEndpoint takes at most 6 MB; Vertex AI's online prediction 1.5 MB. A body past
# the limit is answered 413 before it is read (SageMaker sets 25 MiB: see components/image.py).
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
# numpy arrays have at most 64 dimensions, and Python's JSON decoder fails (RecursionError) near
# depth 1000: nothing a model accepts nests deeper than this.
DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_MAX_CONNECTIONS = 1000  # per worker process
# SIGTERM to "stop accepting": on platforms with no preStop hook (SageMaker, Azure ML, Vertex AI)
# the load balancer learns from /ping (503 from the first instant) that the replica is going.
DEFAULT_DRAIN_SECONDS = 5.0
DEFAULT_DOWNLOAD_TIMEOUT_SECONDS = 60.0
DEFAULT_CAPTURE_SAMPLE = 1.0  # with a capture URL; no URL: capture is off
DEFAULT_CAPTURE_QUEUE = 10_000  # captured requests waiting per worker; more are dropped
DEFAULT_BATCH_MAX_WAIT_MS = 2.0  # with --batch-max-size: longest a request waits for others
ACCESS_LOGS = ("json", "text", "off")
FORK_SERVER_MODES = ("auto", "on", "off")  # serving.zygote; auto: on with two workers or more
MAX_WORKERS_PER_CPU = 4
MAX_WORKERS_FORCED = 1024

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))?/?$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class Settings:
    model_uri: str = DEFAULT_MODEL_URI
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    workers: int | None = None  # None: from the cgroup CPU limit
    gpus: int = 0  # GPUs the container was given; >0: each worker gets its share (serving.gpus)
    timeout: int = DEFAULT_TIMEOUT_SECONDS  # whole seconds, as MLflow's own timeout
    keepalive: int = DEFAULT_KEEPALIVE_SECONDS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    graceful_timeout: float | None = None  # None: timeout + 5 s
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT_SECONDS
    docs: bool = False  # /docs, /redoc, /openapi.json (MLflow's FastAPI pages)
    debug: bool = False  # stack traces in error bodies
    model_name: str = "unknown"
    model_version: str = "unknown"
    log_level: str = "info"
    access_log: str = "off"  # json (serving.accesslog), text (uvicorn's), off
    capture_url: str | None = None  # payload capture receiver (serving.capture); None: off
    capture_sample: float = DEFAULT_CAPTURE_SAMPLE
    capture_queue: int = DEFAULT_CAPTURE_QUEUE
    batch_max_size: int = 0  # adaptive batching (serving.batching): requests per predict; 0/1: off
    batch_max_wait_ms: float = DEFAULT_BATCH_MAX_WAIT_MS
    port_file: str | None = None  # write the bound ports here once listening (for port 0)
    fork_server: str = "auto"  # serving.zygote: fork workers from one process that imported MLflow

    @property
    def shutdown_grace(self) -> float:
        """How long a worker waits for in-flight requests after it stops accepting."""
        if self.graceful_timeout is not None:
            return self.graceful_timeout
        return self.timeout + 5.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Number:
    """A numeric setting: its flag, environment variables (first set wins), type and bounds."""

    field: str
    flag: str
    env: tuple[str, ...]
    kind: type
    low: float
    high: float
    help: str

    def parse(self, raw: str, source: str) -> int | float:
        try:
            value: int | float = int(raw) if self.kind is int else float(raw)
        except ValueError:
            noun = "an integer" if self.kind is int else "a number"
            raise SystemExit(f"python -m serving: {source}={raw!r} is not {noun}") from None
        if not (self.low <= value <= self.high) or (isinstance(value, float) and not math.isfinite(value)):
            raise SystemExit(
                f"python -m serving: {source}={raw} is out of range: "
                f"{self.flag} / {self.env[0]} must be between {_fmt(self.low)} and {_fmt(self.high)}"
            )
        return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


NUMBERS: tuple[Number, ...] = (
    Number(
        "port", "--port", ("SERVING_PORT", "AIP_HTTP_PORT", "SAGEMAKER_BIND_TO_PORT"), int, 0, 65535,
        "serving port (env SERVING_PORT, then AIP_HTTP_PORT, then SAGEMAKER_BIND_TO_PORT; 8080); 0 picks a free port",
    ),
    Number(
        "metrics_port", "--metrics-port", ("SERVING_METRICS_PORT",), int, 0, 65535,
        "port of /metrics, separate from the serving port (env SERVING_METRICS_PORT; 9090); 0 picks a free port",
    ),
    Number(
        "workers", "--workers", ("SERVING_WORKERS",), int, 1, MAX_WORKERS_FORCED,
        f"worker processes (env SERVING_WORKERS; default: the container's CPU limit; at most "
        f"{MAX_WORKERS_PER_CPU} per CPU unless --force-workers)",
    ),
    Number(
        "gpus", "--gpus", ("SERVING_GPUS",), int, 0, 256,
        "GPUs the container was given: each worker gets its own share through CUDA_VISIBLE_DEVICES "
        "(env SERVING_GPUS; 0 = leave the GPUs alone)",
    ),
    Number(
        "timeout", "--timeout", ("SERVING_TIMEOUT_SECONDS",), int, 1, 3600,
        "request timeout in whole seconds, answered with 504 (env SERVING_TIMEOUT_SECONDS; 60)",
    ),
    Number(
        "keepalive", "--keepalive", ("SERVING_KEEPALIVE_SECONDS",), int, 1, 3600,
        "idle keep-alive timeout in seconds (env SERVING_KEEPALIVE_SECONDS; 75)",
    ),
    Number(
        "header_timeout", "--header-timeout", ("SERVING_HEADER_TIMEOUT_SECONDS",), float, 0.1, 300,
        "seconds a connection has to send its request headers (env SERVING_HEADER_TIMEOUT_SECONDS; 10)",
    ),
    Number(
        "graceful_timeout", "--graceful-timeout", ("SERVING_GRACEFUL_TIMEOUT_SECONDS",), float, 0, 3600,
        "seconds in-flight requests get once the server stops accepting (env "
        "SERVING_GRACEFUL_TIMEOUT_SECONDS; default: timeout + 5)",
    ),
    Number(
        "drain_seconds", "--drain-seconds", ("SERVING_DRAIN_SECONDS",), float, 0, 300,
        "after SIGTERM, seconds the server keeps accepting with /ping at 503 before it stops "
        "(env SERVING_DRAIN_SECONDS; 5)",
    ),
    Number(
        "max_body_bytes", "--max-body-bytes", ("SERVING_MAX_BODY_BYTES",), int, 1024, 1 << 30,
        "largest request body, larger ones get 413 (env SERVING_MAX_BODY_BYTES; 6291456 = 6 MiB)",
    ),
    Number(
        "max_json_depth", "--max-json-depth", ("SERVING_MAX_JSON_DEPTH",), int, 2, 512,
        "deepest JSON nesting accepted, deeper gets 400 (env SERVING_MAX_JSON_DEPTH; 64)",
    ),
    Number(
        "max_connections", "--max-connections", ("SERVING_MAX_CONNECTIONS",), int, 1, 100_000,
        "open connections per worker, more get 503 (env SERVING_MAX_CONNECTIONS; 1000)",
    ),
    Number(
        "download_timeout", "--download-timeout", ("SERVING_DOWNLOAD_TIMEOUT_SECONDS",), float, 1, 3600,
        "seconds to keep retrying the model download before exiting 1 "
        "(env SERVING_DOWNLOAD_TIMEOUT_SECONDS; 60)",
    ),
    Number(
        "capture_sample", "--capture-sample", ("SERVING_CAPTURE_SAMPLE",), float, 0, 1,
        "share of scored requests captured, decided from the request id "
        "(env SERVING_CAPTURE_SAMPLE; 1 = all, 0 = none)",
    ),
    Number(
        "capture_queue", "--capture-queue", ("SERVING_CAPTURE_QUEUE",), int, 1, 1_000_000,
        "captured requests waiting to be sent, per worker; more are dropped and counted "
        "(env SERVING_CAPTURE_QUEUE; 10000)",
    ),
    Number(
        "batch_max_size", "--batch-max-size", ("SERVING_BATCH_MAX_SIZE",), int, 0, 1024,
        "adaptive batching: concurrent requests with the same columns and no params merged into "
        "one predict, at most this many (env SERVING_BATCH_MAX_SIZE; 0 = off)",
    ),
    Number(
        "batch_max_wait_ms", "--batch-max-wait-ms", ("SERVING_BATCH_MAX_WAIT_MS",), float, 0, 1000,
        "adaptive batching: longest a request waits for others while more are arriving "
        "(env SERVING_BATCH_MAX_WAIT_MS; 2)",
    ),
)
_BY_FIELD = {n.field: n for n in NUMBERS}

# boolean settings: field -> (flag, env, help)
SWITCHES: dict[str, tuple[str, str, str]] = {
    "docs": ("--docs", "SERVING_DOCS", "serve /docs, /redoc and /openapi.json (env SERVING_DOCS=1); off"),
    "debug": ("--debug", "SERVING_DEBUG", "stack traces in error responses (env SERVING_DEBUG=1); off"),
    "force_workers": (
        "--force-workers",
        "SERVING_FORCE_WORKERS",
        f"allow more than {MAX_WORKERS_PER_CPU} workers per CPU (env SERVING_FORCE_WORKERS=1)",
    ),
}


def model_identity(model_uri: str, env: Mapping[str, str]) -> tuple[str, str]:
    """(name, version) for the ``model_info`` gauge and ``/version``.

    ``MODEL_NAME`` / ``MODEL_VERSION`` win (the image build sets them from the registry); else a
    ``models:/name/7`` or ``models:/name@alias`` URI is parsed; else "unknown".
    """
    name = env.get("MODEL_NAME") or ""
    version = env.get("MODEL_VERSION") or ""
    match = _MODELS_URI.match(model_uri)
    if match:
        name = name or match.group("name")
        version = version or match.group("version") or match.group("alias") or ""
    return name or "unknown", version or "unknown"


def _switch(environ: Mapping[str, str], key: str) -> bool:
    raw = environ.get(key, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SystemExit(f"python -m serving: {key}={raw!r} is not a boolean (use 1 or 0)")


def _mode(
    flag: str | None, environ: Mapping[str, str], key: str, modes: tuple[str, ...], on: str, off: str, unset: str
) -> str:
    """A setting with named modes: the flag's value, else the variable's (a mode, or a boolean
    meaning ``on`` / ``off``), else ``unset``."""
    if flag is not None:
        return str(flag)
    raw = environ.get(key, "").strip().lower()
    if not raw:
        return unset
    if raw in modes:
        return raw
    if raw in _TRUE:
        return on
    if raw in _FALSE:
        return off
    raise SystemExit(f"python -m serving: {key}={raw!r} is not one of {', '.join(modes)}")


def _access_log(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    # SERVING_ACCESS_LOG=1, from before the formats existed, means uvicorn's log.
    return _mode(args.access_log, environ, "SERVING_ACCESS_LOG", ACCESS_LOGS, on="text", off="off", unset="off")


def _fork_server(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    return _mode(
        args.fork_server, environ, "SERVING_FORK_SERVER", FORK_SERVER_MODES, on="on", off="off", unset="auto"
    )


def _capture_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    from serving.capture import CaptureURLError, parse_url

    source, url = "--capture-url", args.capture_url
    if url is None:
        source, url = "SERVING_CAPTURE_URL", (environ.get("SERVING_CAPTURE_URL") or "").strip()
    if not url:
        return None
    try:
        parse_url(url)
    except CaptureURLError as exc:
        raise SystemExit(f"python -m serving: {source}={url!r} {exc} (--capture-url / SERVING_CAPTURE_URL)") from None
    return str(url)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description=(
            "Serve an MLflow pyfunc model with MLflow's scoring protocol (/invocations, /ping, "
            "/health, /version) and Prometheus metrics on a separate port (/metrics)."
        ),
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve"],
        default="serve",
        help="accepted for SageMaker (`docker run IMAGE serve`); the only command",
    )
    parser.add_argument("--model-uri", help="local path or models:/ URI (env MODEL_URI)")
    parser.add_argument("--host", help="address to bind (env SERVING_HOST, default 0.0.0.0)")
    for number in NUMBERS:
        parser.add_argument(number.flag, dest=number.field, metavar="N", help=number.help)
    for name, (flag, _env, text) in SWITCHES.items():
        parser.add_argument(flag, dest=name, action="store_true", default=None, help=text)
    parser.add_argument("--log-level", help="env SERVING_LOG_LEVEL, default info")
    parser.add_argument(
        "--access-log",
        nargs="?",
        const="text",
        choices=ACCESS_LOGS,
        help="access log: json (one JSON line per request on stderr), text (uvicorn's), off "
        "(env SERVING_ACCESS_LOG; off; a bare --access-log or SERVING_ACCESS_LOG=1 means text)",
    )
    parser.add_argument(
        "--capture-url",
        metavar="URL",
        help="POST a sample of scored requests as JSON lines to this http(s) URL "
        "(env SERVING_CAPTURE_URL; off)",
    )
    parser.add_argument(
        "--fork-server",
        choices=FORK_SERVER_MODES,
        help="import MLflow once and fork the workers from that process (serving.zygote): on, off, "
        "or auto = on with two workers or more (env SERVING_FORK_SERVER; auto)",
    )
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    return parser


def _numbers(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, int | float]:
    values: dict[str, int | float] = {}
    for number in NUMBERS:
        raw = getattr(args, number.field)
        if raw is not None:
            values[number.field] = number.parse(raw, number.flag)
            continue
        for key in number.env:
            text = environ.get(key)
            if text is not None and text.strip() != "":
                values[number.field] = number.parse(text.strip(), key)
                break
    return values


def check_workers(workers: int, cpus: int, forced: bool) -> None:
    """At most ``MAX_WORKERS_PER_CPU`` workers per CPU: each worker holds a copy of the model,
    and more processes than that only add memory and context switches."""
    limit = MAX_WORKERS_PER_CPU * max(cpus, 1)
    if workers > limit and not forced:
        raise SystemExit(
            f"python -m serving: {workers} workers for {cpus} CPU(s) is more than {limit} "
            f"({MAX_WORKERS_PER_CPU} per CPU); set --force-workers / SERVING_FORCE_WORKERS=1 to allow it"
        )


def parse_settings(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    cpus: Callable[[], int] | None = None,
) -> Settings:
    """Settings from flags and environment. ``cpus``: how many CPUs the container may use
    (default: ``serving.cpu.detect_workers``), read only when ``workers`` is set explicitly."""
    environ = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    numbers = _numbers(args, environ)
    switches = {
        name: (getattr(args, name) if getattr(args, name) is not None else _switch(environ, key))
        for name, (_flag, key, _help) in SWITCHES.items()
    }

    port = int(numbers.get("port", DEFAULT_PORT))
    metrics_port = int(numbers.get("metrics_port", DEFAULT_METRICS_PORT))
    if metrics_port != 0 and metrics_port == port:
        raise SystemExit(
            f"python -m serving: the metrics port ({metrics_port}) must differ from the serving port "
            "(--metrics-port / SERVING_METRICS_PORT)"
        )
    workers = numbers.get("workers")
    if workers is not None:
        if cpus is None:
            from serving.cpu import detect_workers

            cpus = detect_workers
        check_workers(int(workers), cpus(), switches["force_workers"])

    model_uri = args.model_uri or environ.get("MODEL_URI") or DEFAULT_MODEL_URI
    name, version = model_identity(model_uri, environ)
    graceful = numbers.get("graceful_timeout")
    return Settings(
        model_uri=model_uri,
        host=args.host or environ.get("SERVING_HOST") or "0.0.0.0",
        port=port,
        metrics_port=metrics_port,
        workers=int(workers) if workers is not None else None,
        gpus=int(numbers.get("gpus", 0)),
        timeout=int(numbers.get("timeout", DEFAULT_TIMEOUT_SECONDS)),
        keepalive=int(numbers.get("keepalive", DEFAULT_KEEPALIVE_SECONDS)),
        header_timeout=float(numbers.get("header_timeout", DEFAULT_HEADER_TIMEOUT_SECONDS)),
        graceful_timeout=float(graceful) if graceful is not None else None,
        drain_seconds=float(numbers.get("drain_seconds", DEFAULT_DRAIN_SECONDS)),
        max_body_bytes=int(numbers.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)),
        max_json_depth=int(numbers.get("max_json_depth", DEFAULT_MAX_JSON_DEPTH)),
        max_connections=int(numbers.get("max_connections", DEFAULT_MAX_CONNECTIONS)),
        download_timeout=float(numbers.get("download_timeout", DEFAULT_DOWNLOAD_TIMEOUT_SECONDS)),
        docs=switches["docs"],
        debug=switches["debug"],
        model_name=name,
        model_version=version,
        log_level=(args.log_level or environ.get("SERVING_LOG_LEVEL") or "info").lower(),
        access_log=_access_log(args, environ),
        capture_url=_capture_url(args, environ),
        capture_sample=float(numbers.get("capture_sample", DEFAULT_CAPTURE_SAMPLE)),
        capture_queue=int(numbers.get("capture_queue", DEFAULT_CAPTURE_QUEUE)),
        batch_max_size=int(numbers.get("batch_max_size", 0)),
        batch_max_wait_ms=float(numbers.get("batch_max_wait_ms", DEFAULT_BATCH_MAX_WAIT_MS)),
        port_file=args.port_file,
        fork_server=_fork_server(args, environ),
    )


def number(field: str) -> Number:
    """The bounds of one numeric setting (for messages and tests)."""
    return _BY_FIELD[field]
