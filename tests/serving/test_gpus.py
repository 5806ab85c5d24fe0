"""Workers pinned to GPUs: with ``--gpus N`` / ``SERVING_GPUS`` each worker process starts with its
own ``CUDA_VISIBLE_DEVICES``. Checked on the real runtime (no GPU needed): the environment each
worker process actually has, read from /proc, including a replacement for a crashed worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.config import parse_settings
from serving.gpus import worker_devices
from tests.serving.conftest import IrisModel, ServerFactory
from tests.serving.helpers import children_of, kill_quietly, wait_until


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


def worker_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def devices_by_slot(server_pid: int) -> dict[str, str | None]:
    envs = [worker_env(pid) for pid in children_of(server_pid)]
    return {e["SERVING_WORKER_SLOT"]: e.get("CUDA_VISIBLE_DEVICES") for e in envs}


def test_each_worker_gets_its_gpu_and_a_replacement_the_same(
    start_server: ServerFactory, iris_model: IrisModel
) -> None:
    server = start_server(iris_model.path, workers=3, extra_args=["--gpus", "2"], env={"CUDA_VISIBLE_DEVICES": ""})
    wait_until(lambda: len(children_of(server.pid)) == 3, "3 workers")
    assert devices_by_slot(server.pid) == {"0": "0", "1": "1", "2": "0"}

    (victim,) = [pid for pid in children_of(server.pid) if worker_env(pid)["SERVING_WORKER_SLOT"] == "1"]
    kill_quietly(victim)
    wait_until(lambda: victim not in children_of(server.pid) and len(children_of(server.pid)) == 3, "a replacement")
    assert devices_by_slot(server.pid) == {"0": "0", "1": "1", "2": "0"}


def test_inherited_devices_are_shared_out_and_no_gpus_leaves_them_alone(
    start_server: ServerFactory, iris_model: IrisModel
) -> None:
    env = {"SERVING_GPUS": "4", "CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    server = start_server(iris_model.path, workers=2, env=env)
    wait_until(lambda: len(children_of(server.pid)) == 2, "2 workers")
    assert devices_by_slot(server.pid) == {"0": "4,6", "1": "5,7"}

    plain = start_server(iris_model.path, workers=2, env={"CUDA_VISIBLE_DEVICES": "4,5"})
    wait_until(lambda: len(children_of(plain.pid)) == 2, "2 workers")
    assert devices_by_slot(plain.pid) == {"0": "4,5", "1": "4,5"}
