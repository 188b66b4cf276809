"""Training across processes on JAX's distributed runtime: real processes on loopback, free ports, timeouts."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jaxnets import checkpoints, cli, data, distributed

# A small fc net (batch norm + dropout), momentum SGD, minibatches of 100 split over 4 devices.
RUN = ["--model", "fc", "--hidden", "32", "--optimizer", "momentum", "--batch-size", "100", "--devices", "4"]
RUN += ["--lr", "0.01", "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    """The children's environment: a shared persistent XLA cache (resumed runs compile the same programs)."""
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("xla-cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def env_with(env, devices_per_process):
    return {**env, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}


def jaxnets(*args, env, cwd, timeout=150):
    return subprocess.run(
        [sys.executable, "-m", "jaxnets", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*args, env, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "jaxnets", *map(str, args)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def params_of(run: Path) -> dict:
    with np.load(run / checkpoints.CHECKPOINT_NAME, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files if name.startswith("params")}


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_two_processes_match_one_and_hold_half_the_data(tmp_path, cache_env):
    """2 processes x 2 devices (launcher) == 1 process x 4 devices, bit for bit; process 0 alone writes; half
    the data each."""
    one = jaxnets("train", *RUN, "--epochs", "2", "--out", tmp_path / "one", env=env_with(cache_env, 4), cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    work = tmp_path / "work"
    work.mkdir()
    two = jaxnets(
        "launch", "-n", "2", "--", "train", *RUN, "--epochs", "2", "--out", "two", env=env_with(cache_env, 2), cwd=work
    )
    assert two.returncode == 0, two.stderr
    accuracy = lambda proc: [line for line in proc.stdout.splitlines() if line.startswith("test accuracy")]
    assert len(accuracy(two)) == 1 and accuracy(one) == accuracy(two)  # printed by process 0 alone, equal
    assert sorted(p.name for p in work.iterdir()) == ["two"]
    p1, p2 = params_of(tmp_path / "one"), params_of(work / "two")
    assert p1.keys() == p2.keys() and p1
    for name in p1:  # one process reduces through the same collectives as two (initialize_local)
        np.testing.assert_array_equal(p2[name], p1[name], err_msg=name)
    metrics = json.loads((work / "two" / "metrics.json").read_text())
    num_train = len(data.load_dataset("digits", None, seed=3)["y_train"])
    padded = -(-num_train // 4) * 4  # rows padded to split evenly over the 4 devices
    assert metrics["train_rows_per_process"] == [padded // 2, padded // 2]


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
@pytest.mark.parametrize("killed", [1, 0])
def test_only_process_0_writes_and_a_killed_peer_ends_all(tmp_path, cache_env, killed):
    """Processes started by hand, in different directories: only process 0's holds the run. Killing
    one mid-run ends the other within 30 s, non-zero, with one line naming it and what happened (no
    C++ stack trace when process 0, the coordinator, goes); the checkpoint loads; --resume finishes."""
    env = env_with(cache_env, 2)
    port = distributed.free_port()
    dirs = [tmp_path / "p0", tmp_path / "p1"]
    procs = []
    for i, cwd in enumerate(dirs):
        cwd.mkdir()
        flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", i]
        procs.append(start("train", *RUN, "--epochs", "500", "--out", "run", *flags, env=env, cwd=cwd))
    ckpt = dirs[0] / "run" / checkpoints.CHECKPOINT_NAME
    try:
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            if ckpt.is_file() and checkpoints.read_checkpoint_meta(ckpt)["epoch"] >= 1:
                break
            time.sleep(0.2)
        assert all(p.poll() is None for p in procs), [p.communicate(timeout=5)[1][-2000:] for p in procs]
        assert checkpoints.read_checkpoint_meta(ckpt)["epoch"] >= 1, "the run did not reach epoch 1 in time"
        procs[killed].send_signal(signal.SIGKILL)
        when = time.monotonic()
        survivor = procs[1 - killed]
        _, err = survivor.communicate(timeout=45)
        assert time.monotonic() - when < 30
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert survivor.returncode not in (0, None)
    ours = [line for line in err.splitlines() if line.startswith("jaxnets: error")]
    assert len(ours) == 1 and f"process {1 - killed} of 2" in ours[0], err[-2000:]
    # process 1 may see the broken collective (ours) or the lost coordinator (the runtime) first
    assert "lost a peer" in ours[0] or (killed == 0 and "lost the coordinator" in ours[0]), err[-2000:]
    assert "stack trace" not in err and "Terminating process" not in err, err[-2000:]
    assert list(dirs[1].iterdir()) == []  # process 1 never wrote
    done = checkpoints.read_checkpoint_meta(ckpt)["epoch"]
    assert done >= 1
    resumed = jaxnets(
        "launch",
        "-n",
        "2",
        "--",
        "train",
        "--resume",
        "--out",
        dirs[0] / "run",
        "--epochs",
        done + 1,
        "--quiet",
        env=env,
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((dirs[0] / "run" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == done + 1


def test_a_peer_that_never_starts(tmp_path, cache_env):
    """Process 0 of 2 alone: one line naming it and what happened, exit status 2, nothing written."""
    port = distributed.free_port()
    began = time.monotonic()
    flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0", "--init-timeout", "3"]
    proc = jaxnets("train", *RUN, "--out", "run", *flags, env=env_with(cache_env, 2), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert time.monotonic() - began < 30
    assert proc.stderr.strip().splitlines()[-1].startswith("jaxnets: error: process 0 of 2")
    assert "not every process joined within 3 s" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_launcher_reports_the_failed_process(tmp_path, cache_env):
    """A process that fails (bad input) ends the launch with its status and a line naming it."""
    proc = jaxnets("launch", "-n", "2", "--", "train", "--data-dir", tmp_path / "nowhere", env=cache_env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "jaxnets launch: process" in proc.stderr and "exited with status 2" in proc.stderr


SCRIPT = """
import json, sys
import jax, numpy as np
from jaxnets import data, distributed, models, train
port, num_processes, process_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if num_processes > 1:
    distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id, init_timeout_s=60)
else:
    distributed.initialize_local(init_timeout_s=60)
split = data.load_digits(seed=0)
model = models.two_layer_net(32, 10)
config = train.TrainConfig(optimizer="momentum", learning_rate=0.1, epochs=2, batch_size=100)
ts = distributed.fit(model, split, config, key=jax.random.key(0), devices=2)
acc = train.accuracy(model, ts.best_params, ts.best_state, split["X_test"], split["y_test"])
if distributed.is_writer():
    print(json.dumps({"acc": acc, "W1": np.asarray(ts.best_params["W1"]).tolist()}))
"""


@pytest.mark.slow  # two more multi-process starts; the command tests above cover the same machinery
def test_library_helper_in_a_script(tmp_path, cache_env):
    """``distributed.fit`` in 2 processes x 1 device gives what it gives in 1 process x 2 devices, bit for bit."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    one = subprocess.run(
        [sys.executable, script, "0", "1", "0"], env=env_with(cache_env, 2), capture_output=True, text=True, timeout=120
    )
    assert one.returncode == 0, one.stderr[-2000:]
    port = str(distributed.free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, script, port, "2", str(i)], env=env_with(cache_env, 1), stdout=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    last_json = lambda text: json.loads([line for line in text.splitlines() if line.startswith("{")][-1])
    single, multi = last_json(one.stdout), last_json(outs[0])
    assert not [line for line in outs[1].splitlines() if line.startswith("{")]  # process 1 printed nothing
    assert multi["acc"] == single["acc"]
    np.testing.assert_array_equal(multi["W1"], single["W1"])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the children through /proc")
def test_ctrl_c_in_the_launcher_ends_its_children(tmp_path, cache_env):
    launcher = start("launch", "-n", "2", "--", "train", *RUN, "--epochs", "500", env=cache_env, cwd=tmp_path)
    children_file = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    try:
        deadline = time.monotonic() + 30
        children = []
        while len(children) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            children = [int(pid) for pid in children_file.read_text().split()]
        assert len(children) == 2
        launcher.send_signal(signal.SIGINT)
        launcher.communicate(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode != 0
    for pid in children:  # reaped by the launcher, so gone from the process table
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--coordinator", "127.0.0.1:1"], "--coordinator given without --num-processes, --process-id"),
        (
            ["train", "--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
            "--process-id must be an int in 0..1",
        ),
        (["launch", "-n", "2", "--", "sweep"], "launch runs `train`"),
        (["launch", "-n", "2", "--", "train", "--process-id", "0"], "launch sets --process-id itself"),
    ],
)
def test_bad_process_flags(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_initialize_checks_its_arguments():
    with pytest.raises(ValueError, match="given together"):
        distributed.initialize("127.0.0.1:1234")
    with pytest.raises(ValueError, match="HOST:PORT"):
        distributed.initialize("127.0.0.1", 2, 0)


def _relayed(*writes: bytes, quiet_s: float = 0.05) -> bytes:
    """What ``distributed._relay`` passes on of ``writes`` (sent through a pipe, then closed)."""
    read_end, write_end = os.pipe()
    for chunk in writes:
        os.write(write_end, chunk)
    os.close(write_end)
    out = io.BytesIO()
    distributed._relay("process 1 of 2", read_end, out, quiet_s=quiet_s)
    os.close(read_end)
    return out.getvalue()


LOG_W = b"W1204 16:50:46.162486    7627 preemption_sync_manager.cc:147] Failed to retrieve preemption notice\n"
LOG_E = b"E1204 16:50:46.404544    4025 coordination_service_agent.cc:289] Polled an error\n"
FATAL = b"F1204 16:50:46.404682    4025 client.h:80] " + distributed._RUNTIME_FATAL + b". This most likely...\n"


def test_relay_turns_the_runtimes_fatal_end_into_one_line():
    got = _relayed(b"epoch 1 ok\n", b"\rfc:  50%", LOG_W, b"Additional GRPC error information\n", LOG_E, FATAL,
                   b"*** Check failure stack trace: ***\n    @ 0x7fba31740634 absl::...\n")
    lines = got.decode().split("\n")
    assert lines[0] == "epoch 1 ok" and lines[1].startswith("\rfc:  50%jaxnets: error: process 1 of 2: lost the")
    assert b"stack trace" not in got and b"Polled" not in got and b"preemption" not in got and b"GRPC" not in got


def test_relay_passes_everything_else_on():
    plain = b"line one\n\rprogress 10%\rprogress 20%\n" + LOG_W + b"continued\n" + b"jaxnets: error: x\n"
    assert _relayed(plain) == plain


def test_relay_holds_a_log_line_no_longer_than_its_quiet_time():
    """A warning stays held for ``quiet_s`` at most, even while a progress bar keeps writing."""
    read_end, write_end = os.pipe()
    out = io.BytesIO()
    relay = threading.Thread(target=distributed._relay, args=("process 1 of 2", read_end, out), kwargs={"quiet_s": 0.2})
    relay.start()
    os.write(write_end, LOG_W)
    for _ in range(10):  # 0.5 s of progress updates, none quiet for 0.2 s
        os.write(write_end, b"\rprogress")
        time.sleep(0.05)
    assert out.getvalue().startswith(LOG_W)
    os.close(write_end)
    relay.join(timeout=5)
    os.close(read_end)
