"""Which GPUs each worker sees: ``CUDA_VISIBLE_DEVICES`` per worker slot.

Without it every worker's framework opens every GPU of the container: each allocates its CUDA
context (hundreds of MB) on each GPU and, with PyTorch/TensorFlow defaults, puts its model on
GPU 0, so one GPU serves every worker and the others idle. With ``--gpus N`` (``SERVING_GPUS``;
the deployment sets it to the GPUs it requested) the supervisor gives each worker its own share:

* workers >= GPUs: worker ``s`` gets GPU ``s mod N`` (one per GPU, the default: the targets run one
  worker per GPU; more workers share GPUs round-robin);
* workers < GPUs: worker ``s`` gets GPUs ``s, s + W, s + 2W, ...`` (every GPU is used).

The indices are the container's own (0..N-1, what the NVIDIA runtime exposes); when the
supervisor's environment already narrows them (``CUDA_VISIBLE_DEVICES=2,3``), a worker's share
is taken from that list. CUDA reads the variable when a process first initialises CUDA, so it must
be in the worker's environment from the start, as the supervisor passes it.
"""

from __future__ import annotations

from collections.abc import Mapping

CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"


def worker_devices(slot: int, workers: int, gpus: int, environ: Mapping[str, str]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of worker ``slot`` of ``workers`` sharing ``gpus`` GPUs."""
    if gpus < 1 or workers < 1 or not 0 <= slot < workers:
        raise ValueError(f"slot {slot} of {workers} worker(s) on {gpus} GPU(s)")
    inherited = [d.strip() for d in environ.get(CUDA_VISIBLE_DEVICES, "").split(",") if d.strip()]
    devices = inherited[:gpus] if inherited else [str(i) for i in range(gpus)]
    n = len(devices)
    share = [devices[slot % n]] if workers >= n else devices[slot::workers]
    return ",".join(share)
