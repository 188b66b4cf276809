"""Training across processes on JAX's distributed runtime: real processes on loopback, free ports, timeouts."""

import json
import os
import signal
import subprocess
import sys
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
    one mid-run ends the other within 30 s, non-zero (process 1 killed: process 0 says so in one
    line; process 0 killed: the runtime aborts process 1 with its own log); the checkpoint loads;
    --resume finishes."""
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
    if killed == 1:
        ours = [line for line in err.splitlines() if line.startswith("jaxnets: error")]
        assert len(ours) == 1 and "process 0 of 2" in ours[0] and "lost a peer" in ours[0], err[-2000:]
    else:  # the coordinator went with process 0: the runtime's own fatal error, not our line
        assert "another task died" in err, err[-2000:]
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
