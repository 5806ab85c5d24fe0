"""Micro-benchmark of one worker's request path, in-process: ``POST /invocations`` through the
worker's ASGI app (metrics middleware, handler, MLflow's parse -> schema -> predict -> serialize)
with no sockets, one request at a time, on one core.

    python bench/hotpath.py                 # iris and breast-cancer, CPU ms per request
    python bench/hotpath.py --profile bc    # cProfile of the breast-cancer path, top 30

Reported: CPU milliseconds per request (``time.process_time``, so the neighbours' load is left
out) of (a) MLflow's own ``scoring_server.invocations`` in a loop (the in-process limit of
``bench/peers.py``) and (b) the worker's ASGI app around it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import make_models


def _app(model_path: str) -> Any:
    from serving.app import build_app
    from serving.config import Settings
    from serving.metrics import Metrics

    settings = Settings(model_uri=model_path)
    app, serving_app = build_app(settings, Metrics())
    assert serving_app.load_now()
    return app


async def _asgi_loop(app: Any, body: bytes, seconds: float) -> tuple[int, float]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    def scope() -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}

    for _ in range(50):
        await app(scope(), receive, send)
    assert sent[0]["status"] == 200, sent[:2]
    count = 0
    begin = time.process_time()
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        await app(scope(), receive, send)
        count += 1
        sent.clear()
    return count, time.process_time() - begin


def asgi_ms(model_path: str, body: bytes, seconds: float) -> float:
    app = _app(model_path)
    count, cpu = asyncio.run(_asgi_loop(app, body, seconds))
    return cpu * 1e3 / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--profile", choices=["iris", "bc"], default=None)
    args = parser.parse_args(argv)
    from bench.peers import in_process_ms

    with tempfile.TemporaryDirectory() as tmp:
        models = make_models(Path(tmp))
        if args.profile:
            path, body = models["iris" if args.profile == "iris" else "breast-cancer"]
            app = _app(path)
            profiler = cProfile.Profile()
            profiler.enable()
            asyncio.run(_asgi_loop(app, body, args.seconds))
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return 0
        for name, (path, body) in models.items():
            limit = in_process_ms(path, body, args.seconds)
            worker = asgi_ms(path, body, args.seconds)
            print(f"{name:14s} mlflow invocations {limit:6.2f} ms CPU/req   worker ASGI app {worker:6.2f} ms CPU/req")
    return 0


if __name__ == "__main__":
    sys.exit(main())
