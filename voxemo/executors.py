"""Where independent pieces of work run: in this process (`LocalExecutor`, the default) or as Ray
tasks on a local Ray instance or a cluster (`RayExecutor`).

A piece of work is a plain function `fn(shared, **job)`: `shared` is what every job reads (the
decoded clips or the model inputs of a cross-validation run), `job` what is particular to one (a
fold). It returns plain values (metrics, curves, weights as numpy arrays), never writes the run
directory: the driver does, so a cluster needs no shared disk. `Executor.map(fn, shared, jobs)`
yields `(index, result)` as the jobs finish: in order for the local executor, in order of completion
for Ray.

Ray is imported only inside `RayExecutor` and `ray_init` (`pip install 'voxemo[ray]'`);
`ray_init` starts an embedded local instance, or joins the cluster named by `address` or
RAY_ADDRESS, with usage statistics off, and turns a missing package or an address that does not
answer into one `ExecutorError` that says what to do.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence

EXECUTORS = ("local", "ray")
CONNECT_TIMEOUT_S = 10  # seconds a cluster's head has to accept a connection


class ExecutorError(RuntimeError):
    """Ray is missing, or the cluster address does not answer."""


class LocalExecutor:
    """Runs each job in this process, one after the other (the default: no extra package, no process)."""

    name = "local"
    remote = False  # jobs run where the run directory is: they may keep checkpoints in it

    def map(self, fn: Callable, shared: Any, jobs: Sequence[dict]) -> Iterator[tuple[int, Any]]:
        for i, job in enumerate(jobs):
            yield i, fn(shared, **job)

    def close(self) -> None:
        pass


def _call_with_threads(fn: Callable, threads: int, shared: Any, job: dict):
    """A Ray task's body: torch limited to the CPUs the task was given, then the job."""
    import torch

    torch.set_num_threads(max(1, threads))
    return fn(shared, **job)


class RayExecutor:
    """Submits each job as a Ray task with `cpus` CPUs (torch's threads in it); `shared` goes into Ray's object store once
    (`ray.put`) and every task reads it from there (on a cluster it is copied once to each node
    that runs a task).

    address: None starts an embedded local instance (or joins RAY_ADDRESS when it is set);
    "auto" joins the cluster this machine belongs to; "host:port" a cluster's head.
    num_cpus: the CPUs of an embedded local instance (default: all of this machine's).
    """

    name = "ray"
    remote = True  # jobs may run on another machine: they keep nothing on disk, they return it

    def __init__(self, address: str | None = None, *, cpus: int = 1, num_cpus: int | None = None,
                 temp_dir: str | None = None):
        self.cpus = cpus
        self.ray = ray_init(address, num_cpus=num_cpus, temp_dir=temp_dir)

    def map(self, fn: Callable, shared: Any, jobs: Sequence[dict]) -> Iterator[tuple[int, Any]]:
        ray, cpus = self.ray, self.cpus
        if not jobs:
            return
        ref = ray.put(shared)
        task = ray.remote(num_cpus=cpus, max_retries=1)(_call_with_threads)
        pending = {task.remote(fn, cpus, ref, job): i for i, job in enumerate(jobs)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for r in done:
                    yield pending.pop(r), ray.get(r)
        finally:
            for r in pending:  # an error or an interrupt: do not leave tasks running on the cluster
                ray.cancel(r, force=True)

    def close(self) -> None:
        """Leave the instance running (others may share it); `ray_shutdown` ends an embedded one."""


def make_executor(name: str, *, address: str | None = None, cpus: int = 1, num_cpus: int | None = None):
    """`LocalExecutor()` or `RayExecutor(address, cpus=cpus, num_cpus=num_cpus)` by name; ValueError for another name."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, cpus=cpus, num_cpus=num_cpus)
    raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {name!r}")


def import_ray():
    """The ray module, or ExecutorError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ExecutorError("--executor ray needs Ray: pip install 'voxemo[ray]' "
                            f"(ray[data,tune] 2.x; {e.name or 'ray'} is missing)") from None
    return ray


def ray_init(address: str | None = None, *, num_cpus: int | None = None, temp_dir: str | None = None):
    """Connect to Ray once per process and return the ray module.

    `address` "local", or none and no RAY_ADDRESS: an embedded local instance with `num_cpus` CPUs, no
    dashboard, usage statistics off, on 127.0.0.1 only. With either: that cluster ("host:port",
    "ray://host:port" or "auto"), or ExecutorError when its head does not answer within
    CONNECT_TIMEOUT_S (Ray itself would retry for minutes).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = None if address == "local" else address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"log_to_driver": False, "configure_logging": False}
    if address is None:
        kwargs.update(num_cpus=num_cpus, _temp_dir=temp_dir, include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        check_answers(address)
        kwargs.update(address=address)
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        raise ExecutorError(f"cannot connect to {_where(address)}: {_first_line(e)}") from None
    return ray


def _where(address: str | None) -> str:
    if not address:
        return "a local Ray instance"
    return (f"the Ray cluster at {address} (is its head running? `ray start --head` on it; "
            "RAY_ADDRESS or --ray-address names it)")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def check_answers(address: str) -> None:
    """ExecutorError unless something listens at a "host:port" (or "ray://host:port") address within
    CONNECT_TIMEOUT_S; "auto" is left to Ray, which fails at once when no cluster runs here."""
    import socket

    hostport = address.removeprefix("ray://")
    if hostport == "auto":
        return
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ExecutorError(f"a Ray address is host:port, ray://host:port or auto, not {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ExecutorError(f"cannot connect to {_where(address)}: {e.strerror or _first_line(e)}") from None


def ray_shutdown() -> None:
    """End this process's connection to Ray (and an embedded instance with it)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
