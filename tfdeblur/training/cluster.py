"""Multi-worker training from `TF_CONFIG` (docs/distributed.md).

`TF_CONFIG` is TensorFlow's standard cluster spec, one per process:

    {"cluster": {"chief": ["host0:port"], "worker": ["host1:port", ...]},
     "task": {"type": "worker", "index": 0}}

`chief` is optional; without it `worker[0]` is the chief. Only the chief
writes the run folder (config, checkpoints, logs, model, results); the
others write their checkpoints (every task must save: saving reads
distributed variables through collectives) to temporary folders they
delete.

`MultiWorkerMirroredStrategy` blocks, at creation, until every task has
joined, and ignores SIGTERM meanwhile. So that a bad cluster fails in
bounded time: a non-chief task first checks that the chief's address
accepts TCP connections, and a watchdog ends the process (exit 2, one
`error:` line naming the addresses) if the cluster has not formed within
`timeout` seconds; collectives during training time out after the same
delay.
"""
import dataclasses
import json
import os
import socket
import sys
import threading
import time

from tfdeblur.training.errors import RunError

JOBS = ("chief", "worker")


class ClusterError(RunError):
    """A malformed `TF_CONFIG` or a cluster that does not form."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    jobs: dict  # job -> list of "host:port"
    task_type: str
    task_index: int

    @property
    def num_workers(self):
        return sum(len(v) for v in self.jobs.values())

    @property
    def chief_field(self):
        return "cluster.chief[0]" if "chief" in self.jobs else "cluster.worker[0]"

    @property
    def chief_address(self):
        return self.jobs["chief"][0] if "chief" in self.jobs else self.jobs["worker"][0]

    @property
    def is_chief(self):
        if "chief" in self.jobs:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def address(self):
        return self.jobs[self.task_type][self.task_index]

    def peers(self):
        return [a for job in JOBS for a in self.jobs.get(job, []) if a != self.address]


def _address_ok(value):
    if not isinstance(value, str):
        return False
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def parse_tf_config(text):
    """`Cluster` of a TF_CONFIG string; None when it is empty or names a
    single task (plain single-worker training). Raises `ClusterError`
    naming the faulty field."""
    if text is None or not text.strip():
        return None
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ClusterError(f"TF_CONFIG is not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise ClusterError(f"TF_CONFIG must be a JSON object with cluster and task; got {type(config).__name__}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterError(f'TF_CONFIG cluster must be an object of job -> ["host:port", ...]; got {cluster!r}')
    for job, addresses in cluster.items():
        if job not in JOBS:
            raise ClusterError(
                f"TF_CONFIG cluster.{job}: unsupported job (MultiWorkerMirroredStrategy takes chief and worker)"
            )
        if not isinstance(addresses, list) or not addresses:
            raise ClusterError(f'TF_CONFIG cluster.{job} must be a non-empty list of "host:port"; got {addresses!r}')
        for i, address in enumerate(addresses):
            if not _address_ok(address):
                raise ClusterError(f'TF_CONFIG cluster.{job}[{i}] must be "host:port"; got {address!r}')
    if len(cluster.get("chief", [])) > 1:
        raise ClusterError(f"TF_CONFIG cluster.chief must hold one address; got {len(cluster['chief'])}")
    task = config.get("task")
    if not isinstance(task, dict):
        raise ClusterError(f'TF_CONFIG task must be an object {{"type": ..., "index": ...}}; got {task!r}')
    task_type = task.get("type")
    if task_type not in cluster:
        raise ClusterError(f"TF_CONFIG task.type must be one of the cluster's jobs ({', '.join(cluster)}); got {task_type!r}")
    index = task.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise ClusterError(
            f"TF_CONFIG task.index must be an integer in [0, {len(cluster[task_type])}) for cluster.{task_type}; got {index!r}"
        )
    all_addresses = [a for job in JOBS for a in cluster.get(job, [])]
    if len(set(all_addresses)) != len(all_addresses):
        raise ClusterError(f"TF_CONFIG cluster lists an address twice: {all_addresses}")
    parsed = Cluster({job: list(cluster[job]) for job in JOBS if job in cluster}, task_type, index)
    return parsed if parsed.num_workers > 1 else None


def wait_for_chief(cluster, timeout):
    """Non-chief tasks: waits until the chief's address accepts TCP
    connections; `ClusterError` naming it after `timeout` seconds."""
    if cluster.is_chief:
        return
    host, _, port = cluster.chief_address.rpartition(":")
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=min(2.0, timeout)):
                return
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise ClusterError(
        f"cannot reach the chief at {cluster.chief_address} (TF_CONFIG {cluster.chief_field}) "
        f"within {timeout:g} s ({last.__class__.__name__ if last else 'timeout'})"
    )


def create_strategy(cluster, timeout):
    """`MultiWorkerMirroredStrategy` for `cluster` (TF_CONFIG already set),
    created under a watchdog: if the other tasks have not joined within
    `timeout` seconds the process prints one `error:` line and exits 2."""
    import tensorflow as tf

    wait_for_chief(cluster, timeout)
    done = threading.Event()

    def watchdog():
        if not done.wait(timeout):
            print(
                f"error: the cluster did not form within {timeout:g} s: task {cluster.task_type}:"
                f"{cluster.task_index} at {cluster.address} waited for {', '.join(cluster.peers())}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(2)

    threading.Thread(target=watchdog, daemon=True).start()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    finally:
        done.set()
