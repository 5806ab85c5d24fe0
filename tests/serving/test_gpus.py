"""Workers pinned to GPUs: with ``--gpus N`` / ``SERVING_GPUS`` each worker process starts with its
own ``CUDA_VISIBLE_DEVICES``. Checked on the real runtime (no GPU needed): the environment each
worker's model actually sees (``os.environ``, what CUDA reads; not ``/proc/PID/environ``, which
for a forked worker is the fork server's), with and without the fork server, including a
replacement for a crashed worker."""

from __future__ import annotations

import pytest

from serving.config import parse_settings
from serving.gpus import worker_devices
from tests.serving.conftest import ServerFactory
from tests.serving.helpers import WAIT, answers_by_worker, frame, kill_quietly, wait_until, workers_of


@pytest.mark.parametrize(
    ("workers", "gpus", "inherited", "want"),
    [
        (2, 2, "", ["0", "1"]),  # one worker per GPU: the targets' default
        (3, 2, "", ["0", "1", "0"]),  # more workers than GPUs: round-robin
        (1, 2, "", ["0,1"]),  # fewer: every GPU still used
        (2, 4, "4,5,6,7", ["4,6", "5,7"]),  # an environment that already narrowed the devices
        (2, 2, "3, 1", ["3", "1"]),
    ],
)
def test_devices_per_worker(workers: int, gpus: int, inherited: str, want: list[str]) -> None:
    env = {"CUDA_VISIBLE_DEVICES": inherited} if inherited else {}
    assert [worker_devices(s, workers, gpus, env) for s in range(workers)] == want


def test_gpus_flag_and_env() -> None:
    assert parse_settings(["--gpus", "2"], env={}).gpus == 2
    assert parse_settings([], env={"SERVING_GPUS": "4"}).gpus == 4
    assert parse_settings([], env={}).gpus == 0
    with pytest.raises(SystemExit, match="--gpus / SERVING_GPUS"):
        parse_settings([], env={"SERVING_GPUS": "-1"})


def seen_by_workers(url: str, names: list[str], workers: int) -> dict[str, dict[str, str]]:
    """{worker pid: {variable: value}} as each worker's model sees its environment."""
    answers = answers_by_worker(url, frame(env=names), workers)
    return {pid: dict(zip(names, values, strict=True)) for pid, values in answers.items()}


def devices_by_slot(url: str, workers: int) -> dict[str, str]:
    seen = seen_by_workers(url, ["SERVING_WORKER_SLOT", "CUDA_VISIBLE_DEVICES"], workers)
    return {env["SERVING_WORKER_SLOT"]: env["CUDA_VISIBLE_DEVICES"] for env in seen.values()}


@pytest.mark.parametrize("fork_server", ["on", "off"])
def test_each_worker_gets_its_gpu_and_a_replacement_the_same(
    start_server: ServerFactory, slow_model: str, fork_server: str
) -> None:
    server = start_server(
        slow_model,
        workers=3,
        extra_args=["--gpus", "2", "--fork-server", fork_server],
        env={"CUDA_VISIBLE_DEVICES": ""},
    )
    assert devices_by_slot(server.url, 3) == {"0": "0", "1": "1", "2": "0"}

    seen = seen_by_workers(server.url, ["SERVING_WORKER_SLOT"], 3)
    (victim,) = [int(pid) for pid, env in seen.items() if env["SERVING_WORKER_SLOT"] == "1"]
    kill_quietly(victim)
    wait_until(lambda: victim not in workers_of(server.pid) and len(workers_of(server.pid)) == 3, "a replacement")
    server.wait_ready(WAIT)
    assert devices_by_slot(server.url, 3) == {"0": "0", "1": "1", "2": "0"}


def test_inherited_devices_are_shared_out_and_no_gpus_leaves_them_alone(
    start_server: ServerFactory, slow_model: str
) -> None:
    env = {"SERVING_GPUS": "4", "CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    server = start_server(slow_model, workers=2, env=env)
    assert devices_by_slot(server.url, 2) == {"0": "4,6", "1": "5,7"}

    plain = start_server(slow_model, workers=2, env={"CUDA_VISIBLE_DEVICES": "4,5"})
    assert devices_by_slot(plain.url, 2) == {"0": "4,5", "1": "4,5"}
