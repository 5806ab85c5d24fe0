"""Command line and environment of ``python -m serving``.

Precedence: command-line flag, then environment variable, then default. The image runs
``ENTRYPOINT ["python", "-m", "serving"]`` with ``CMD ["serve"]`` (SageMaker starts containers as
``docker run IMAGE serve``), so a bare ``serve`` positional is accepted and means the same as none.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_MODEL_URI = "/opt/model"
DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_SECONDS = 60
# Longer than the idle timeout of the usual proxies in front of a pod (AWS ALB and nginx: 60 s) so
# the server is not the side that closes an idle connection the proxy is about to reuse (the proxy
# would see a reset and answer 502). Google Cloud's load balancers keep backend connections for
# 600 s: behind those, raise it with SERVING_KEEPALIVE_SECONDS=620.
DEFAULT_KEEPALIVE_SECONDS = 75

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))?/?$")


@dataclasses.dataclass(frozen=True)
class Settings:
    model_uri: str = DEFAULT_MODEL_URI
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int | None = None  # None: from the cgroup CPU limit
    timeout: int = DEFAULT_TIMEOUT_SECONDS  # whole seconds, as MLflow's own timeout
    keepalive: int = DEFAULT_KEEPALIVE_SECONDS
    graceful_timeout: float | None = None  # None: timeout + 5 s
    model_name: str = "unknown"
    model_version: str = "unknown"
    log_level: str = "info"
    access_log: bool = False
    port_file: str | None = None  # write the bound port here once listening (for port 0)

    @property
    def shutdown_grace(self) -> float:
        """How long a worker waits for in-flight requests after SIGTERM."""
        if self.graceful_timeout is not None:
            return self.graceful_timeout
        return self.timeout + 5.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


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


def _env_float(env: Mapping[str, str], key: str) -> float | None:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{key}={raw!r} is not a number") from exc


def _env_int(env: Mapping[str, str], key: str) -> int | None:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{key}={raw!r} is not an integer") from exc


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description=(
            "Serve an MLflow pyfunc model with MLflow's scoring protocol (/invocations, /ping, "
            "/health, /version) plus Prometheus metrics on /metrics."
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
    parser.add_argument(
        "--port",
        type=int,
        help="port (env SERVING_PORT, then AIP_HTTP_PORT, then SAGEMAKER_BIND_TO_PORT; 8080); 0 picks a free port",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        help="worker processes (env SERVING_WORKERS; default: the container's CPU limit)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_int,
        help="request timeout in whole seconds, answered with 504 (env SERVING_TIMEOUT_SECONDS, 60)",
    )
    parser.add_argument(
        "--keepalive",
        type=_positive_int,
        help="idle keep-alive timeout in seconds (env SERVING_KEEPALIVE_SECONDS, 75)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=_positive_float,
        help="seconds in-flight requests get after SIGTERM (env SERVING_GRACEFUL_TIMEOUT_SECONDS;"
        " default: timeout + 5)",
    )
    parser.add_argument("--log-level", help="env SERVING_LOG_LEVEL, default info")
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="log every request (env SERVING_ACCESS_LOG=true); off by default",
    )
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    return parser


def parse_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if env is None else env
    args = build_parser().parse_args(argv)

    model_uri = args.model_uri or environ.get("MODEL_URI") or DEFAULT_MODEL_URI
    port = args.port
    if port is None:
        for key in ("SERVING_PORT", "AIP_HTTP_PORT", "SAGEMAKER_BIND_TO_PORT"):
            port = _env_int(environ, key)
            if port is not None:
                break
    if port is None:
        port = DEFAULT_PORT
    if not 0 <= port <= 65535:
        raise SystemExit(f"port {port} is out of range")

    workers = args.workers if args.workers is not None else _env_int(environ, "SERVING_WORKERS")
    if workers is not None and workers < 1:
        raise SystemExit("SERVING_WORKERS must be >= 1")

    timeout = args.timeout or _env_int(environ, "SERVING_TIMEOUT_SECONDS")
    if timeout is not None and timeout < 1:
        raise SystemExit("SERVING_TIMEOUT_SECONDS must be >= 1")
    keepalive = args.keepalive or _env_int(environ, "SERVING_KEEPALIVE_SECONDS")
    graceful = args.graceful_timeout or _env_float(environ, "SERVING_GRACEFUL_TIMEOUT_SECONDS")
    access_log = args.access_log
    if access_log is None:
        access_log = environ.get("SERVING_ACCESS_LOG", "").lower() in {"1", "true", "yes"}

    name, version = model_identity(model_uri, environ)
    return Settings(
        model_uri=model_uri,
        host=args.host or environ.get("SERVING_HOST") or "0.0.0.0",
        port=port,
        workers=workers,
        timeout=timeout if timeout is not None else DEFAULT_TIMEOUT_SECONDS,
        keepalive=keepalive if keepalive is not None else DEFAULT_KEEPALIVE_SECONDS,
        graceful_timeout=graceful,
        model_name=name,
        model_version=version,
        log_level=(args.log_level or environ.get("SERVING_LOG_LEVEL") or "info").lower(),
        access_log=bool(access_log),
        port_file=args.port_file,
    )
