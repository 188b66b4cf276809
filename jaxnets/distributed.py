"""Training across processes (and hosts) on JAX's distributed runtime.

Every process runs the same program: ``initialize`` joins the processes before anything touches
the backend, ``shard_training_set`` keeps each process's share of the training set (rows of one
global array spread over every process's devices), and ``train.fit(..., devices=...)`` then
runs data-parallel over the devices of all processes. The minibatch order is a function of the
seed alone, so a run is the same whatever the number of processes: bit for bit when one process
holding all the devices joins a runtime of its own (``initialize_local``, as ``jaxnets train``
does), so that it reduces through the same collectives.

    # on every process (or: jaxnets launch -n 2 -- train ...)
    from jaxnets import distributed
    distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=i)
    ts = distributed.fit(model, data, config, key=key)

``launch`` starts N local processes with a free port, for trying all this on one machine.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from jaxnets.errors import InputError

__all__ = [
    "initialize",
    "initialize_local",
    "cluster_detected",
    "is_multiprocess",
    "is_writer",
    "process_rows",
    "shard_training_set",
    "rows_held",
    "fit",
    "fail",
    "relay_runtime_errors",
    "free_port",
    "launch",
]

# Environment variables that say a cluster launcher started this process among several;
# ``jax.distributed.initialize()`` then finds the coordinator and process id by itself.
_CLUSTER_SIZES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "JAX_NUM_PROCESSES")


def cluster_detected(environ=None) -> bool:
    """Whether a cluster launcher (SLURM, Open MPI, ``JAX_COORDINATOR_ADDRESS``) started several processes.

    >>> cluster_detected({"SLURM_NTASKS": "4"}), cluster_detected({})
    (True, False)
    """
    environ = os.environ if environ is None else environ
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    return any(environ.get(name, "").isdigit() and int(environ[name]) > 1 for name in _CLUSTER_SIZES)


def _loopback(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    init_timeout_s: float = 30,
    heartbeat_timeout_s: int = 10,
    shutdown_timeout_s: int = 10,
    name: Callable[[str], str] = str,
) -> None:
    """Join ``num_processes`` processes at ``coordinator`` ("HOST:PORT"); call before anything touches JAX's backend.

    With no arguments, a cluster launcher's environment (SLURM, Open MPI, ...) supplies them
    (``jax.distributed.initialize()``'s own detection). A coordinator on a loopback host binds
    loopback only; otherwise it binds all interfaces of process 0's host. If the peers have not
    all joined within ``init_timeout_s`` seconds, the process ends with one line on stderr
    naming itself and the coordinator, and exit status 2 (instead of the runtime's abort).

    Raises:
      ValueError: only some of the three arguments given, or out of range.
    """
    import jax

    values = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    given = [name(k) for k, v in values.items() if v is not None]
    if given and len(given) < len(values):
        missing = [name(k) for k, v in values.items() if v is None]
        raise InputError(
            f"{', '.join(given)} given without {', '.join(missing)}: {', '.join(map(name, values))} "
            "must be given together (or none of them)"
        )
    kwargs = dict(initialization_timeout=int(init_timeout_s) + 10, heartbeat_timeout_seconds=int(heartbeat_timeout_s))
    kwargs["shutdown_timeout_seconds"] = int(shutdown_timeout_s)
    where = "the cluster's coordinator"
    if all(given):
        host, sep, port = str(coordinator).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(f"{name('coordinator')} must be HOST:PORT with a port in 1..65535, got {coordinator!r}")
        if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
            raise InputError(f"{name('num_processes')} must be a positive int, got {num_processes!r}")
        if isinstance(process_id, bool) or not isinstance(process_id, int) or not 0 <= process_id < num_processes:
            raise InputError(f"{name('process_id')} must be an int in 0..{num_processes - 1}, got {process_id!r}")
        kwargs.update(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
        if _loopback(host):
            kwargs["coordinator_bind_address"] = coordinator
        where = f"process {process_id} of {num_processes}: the coordinator at {coordinator}"
    joined = threading.Event()

    def watchdog():
        # The runtime aborts with a C++ stack trace when peers are missing; end first, in one line.
        if not joined.wait(init_timeout_s):
            print(
                f"jaxnets: error: {where}: not every process joined within {init_timeout_s:g} s "
                "(a peer never started, or cannot reach the coordinator)",
                file=sys.stderr,
                flush=True,
            )
            os._exit(2)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        jax.distributed.initialize(**kwargs)
    finally:
        joined.set()


def initialize_local(*, init_timeout_s: float = 30) -> None:
    """Join a runtime of this one process (coordinator on a free loopback port); call before the backend starts.

    Its devices then reduce through the CPU collectives that several processes use (Gloo), not the
    in-process ones, which sum in another order: so a data-parallel run over N devices is
    bit-identical whether one process holds them all or several share them (same machine type).
    Where the backend is already running (``cli.main`` called from a session that used JAX), or a
    runtime was joined before, it does nothing: the run then matches to float32 rounding only.
    """
    import jax
    from jax._src import xla_bridge  # jax has no public "is the backend up" query

    if jax.distributed.is_initialized() or getattr(xla_bridge, "backends_are_initialized", lambda: False)():
        return
    initialize(f"127.0.0.1:{free_port()}", 1, 0, init_timeout_s=init_timeout_s)


def is_multiprocess() -> bool:
    """Whether this process is one of several joined by ``initialize``."""
    import jax

    return jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes files and progress: process 0 (the only one when not distributed)."""
    import jax

    return jax.process_index() == 0


def fail(error: BaseException, code: int = 1) -> None:
    """End this process at once with one line naming it and ``error`` (for a lost peer: the runtime
    would otherwise wait on its shutdown barrier or abort)."""
    import jax

    message = " ".join(str(error).split())
    if "gloo" in message.lower() or "connection" in message.lower():
        message = f"lost a peer process ({message[:300]})"
    print(f"jaxnets: error: process {jax.process_index()} of {jax.process_count()}: {message}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)


# The runtime's own end when it loses the coordinator (process 0): a C++ fatal log line and a
# stack trace, from a thread Python cannot reach, then SIGABRT.
_RUNTIME_FATAL = b"Terminating process because the JAX distributed service detected fatal errors"
_LOG_LINE = re.compile(rb"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")  # absl/glog prefix
_LOG_START = re.compile(rb"[IWEF](\d|$)")  # what may be the first bytes of such a line


def relay_runtime_errors() -> None:
    """Send this process's stderr through a relay process that passes it on as it comes, except the
    runtime's fatal end, which it turns into one line naming this process. Call after ``initialize``.

    The relay holds the real stderr, so it outlives the abort and ends when this process does.
    """
    import jax

    where = f"process {jax.process_index()} of {jax.process_count()}"
    read_end, write_end = os.pipe()
    code = "import sys; from jaxnets.distributed import _relay; _relay(sys.argv[1])"
    # its own session: a Ctrl-C to the terminal's process group must not end it before this process
    subprocess.Popen(
        [sys.executable, "-c", code, where], stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True
    )
    os.close(read_end)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)


def _relay(where: str, source: int = 0, out=None, quiet_s: float = 1.0) -> None:
    """Copy ``source`` to ``out`` (stderr) as it comes. An absl log line and the lines after it are
    held for ``quiet_s``; if the runtime's fatal line comes within it, they are dropped with
    everything after it, and one line of ours says what happened."""
    out = out or sys.stderr.buffer
    held, held_since, rest = [], 0.0, b""
    while True:
        if held:
            wait = held_since + quiet_s - time.monotonic()
            if wait <= 0 or not select.select([source], [], [], wait)[0]:
                out.write(b"".join(held))  # a log block that did not end in the fatal line
                out.flush()
                held = []
        chunk = os.read(source, 1 << 16)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if _RUNTIME_FATAL in line:
                out.write(
                    f"jaxnets: error: {where}: lost the coordinator (process 0) or a peer; the distributed "
                    "runtime ended this process\n".encode()
                )
                out.flush()
                while os.read(source, 1 << 16):  # the stack trace that follows
                    pass
                return
            log = _LOG_LINE.search(line)
            if log and not held:  # a progress bar's partial line may precede it on the same line
                out.write(line[: log.start()])
                line = line[log.start() :]
            if held or log:
                held_since = held_since if held else time.monotonic()
                held.append(line + b"\n")
            else:
                out.write(line + b"\n")
        if rest and not held and not _LOG_START.match(rest):
            out.write(rest)  # a progress bar's partial line
            rest = b""
        out.flush()
    out.write(b"".join(held) + rest)
    out.flush()


def process_rows(num_rows: int, num_devices: int, process_index: int, process_count: int) -> tuple[int, int, int]:
    """``(start, stop, padded)``: the rows process ``process_index`` holds of ``num_rows`` spread over
    ``num_devices`` devices (equal per process), ``padded`` the total once rounded up to split evenly.

    >>> process_rows(10, 4, 1, 2)
    (6, 10, 12)
    """
    padded = -(-num_rows // num_devices) * num_devices
    per_process = padded // process_count
    start = process_index * per_process
    return min(start, num_rows), min(start + per_process, num_rows), padded


def shard_training_set(data: dict, devices: int | None = None, batch_size: int = 1) -> dict:
    """``data`` with ``X_train``/``y_train`` replaced by global arrays of which this process holds only its rows.

    The rows are laid out over the devices ``train.fit(..., devices=devices)`` uses (every
    process's equal share of them), padded to split evenly; ``"num_train"`` keeps the true count,
    and ``fit`` never draws the padding. In one process, ``data`` is returned unchanged.

    Args:
      data: a split dict whose training set every process loaded the same way (same seed).
      devices: devices over all processes (default: all of them).
      batch_size: the minibatch size, checked to split evenly over ``devices``.
    """
    import jax

    from jaxnets import train

    if jax.process_count() == 1:
        return data
    devices = jax.device_count() if devices is None else devices
    sharding = train._data_parallel(devices, batch_size)
    X, y = np.asarray(data["X_train"]), np.asarray(data["y_train"])
    start, stop, padded = process_rows(len(y), devices, jax.process_index(), jax.process_count())
    per_process = padded // jax.process_count()

    def share(a):
        local = a[start:stop]
        local = np.concatenate([local, np.zeros((per_process - len(local), *a.shape[1:]), a.dtype)])
        return jax.make_array_from_process_local_data(sharding, local, (padded, *a.shape[1:]))

    return {**data, "X_train": share(X), "y_train": share(y), "num_train": len(y)}


def rows_held(a) -> list[int]:
    """How many rows of the global array ``a`` each process holds (its own devices' shards), from every process.

    A collective: every process must call it.
    """
    from jax.experimental import multihost_utils

    local = sum(s.data.shape[0] for s in {s.index[0].start: s for s in a.addressable_shards}.values())
    return [int(n) for n in np.ravel(multihost_utils.process_allgather(np.array(local)))]


def fit(model, data: dict, config=None, *, key, devices: int | None = None, **kwargs):
    """``train.fit`` over the devices of every process, each holding only its share of the training set.

    Call ``initialize`` first; in one process this is ``train.fit(..., devices=devices)``.
    Returns the ``TrainState`` (its parameters replicated on every process).
    """
    import jax

    from jaxnets import train

    config = train.TrainConfig() if config is None else config
    if jax.process_count() > 1:
        devices = jax.device_count() if devices is None else devices
        data = shard_training_set(data, devices, config.batch_size)
    return train.fit(model, data, config, key=key, devices=devices, **kwargs)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _describe_status(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def launch(num_processes: int, argv: Sequence[str], *, port: int | None = None, grace_s: float = 5.0) -> int:
    """Run ``jaxnets ARGV --coordinator 127.0.0.1:PORT --num-processes N --process-id I`` for I in 0..N-1.

    The children inherit this process's environment and output. Ctrl-C or SIGTERM is passed on
    to all of them; when one fails, the others are ended (SIGTERM, then SIGKILL after
    ``grace_s``) and one line says which process failed and how.

    Returns:
      0 if every process succeeded, else the failed process's exit status (128 + signal if killed).
    """
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise InputError(f"num_processes must be a positive int, got {num_processes!r}")
    if not argv:
        raise InputError("launch needs a command to run, e.g. ['train', '--epochs', '2']")
    port = free_port() if port is None else port
    base = [sys.executable, "-m", "jaxnets", *argv, "--coordinator", f"127.0.0.1:{port}"]
    base += ["--num-processes", str(num_processes)]
    children: list[subprocess.Popen] = []
    received = []

    def forward(signum, frame):
        received.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    # Handlers first: a Ctrl-C while the children start must reach them, not orphan them.
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    failed = None
    try:
        for i in range(num_processes):
            children.append(subprocess.Popen([*base, "--process-id", str(i)]))
            if received:  # interrupted while starting: the ones already started got the signal
                break
        while any(c.poll() is None for c in children):
            for i, child in enumerate(children):
                code = child.poll()
                if code and failed is None and not received:
                    failed = (i, code)
                    print(f"jaxnets launch: process {i} {_describe_status(code)}; ending the others", file=sys.stderr)
                    for other in children:
                        if other.poll() is None:
                            other.terminate()
            if failed is not None or received:
                deadline = time.monotonic() + grace_s
                while any(c.poll() is None for c in children) and time.monotonic() < deadline:
                    time.sleep(0.05)
                for child in children:
                    if child.poll() is None:
                        child.kill()
                break
            time.sleep(0.05)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for child in children:
            if child.poll() is None:  # leaving early (an exception here): never orphan a child
                child.kill()
            child.wait()
    if failed is None:
        failed = next(((i, c.returncode) for i, c in enumerate(children) if c.returncode), None)
        if failed is not None and not received:
            print(f"jaxnets launch: process {failed[0]} {_describe_status(failed[1])}", file=sys.stderr)
    if failed is None:
        return 130 if received else 0
    code = failed[1]
    return 128 - code if code < 0 else code
