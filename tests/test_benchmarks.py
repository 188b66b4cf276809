"""The benchmark harness runs end to end: ``benchmarks/run.py --quick`` (in the slow tier).

The smoke run uses tiny sizes and two repetitions; this only checks that every workload and
implementation ran and produced sane numbers, not how fast anything is.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

# Over a minute of compiling and timing on 2 cores: the slow tier (`pytest -m slow`).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"

EXPECTED = {
    "W1": ["numpy", "torch", "jaxnets-auto", "jaxnets-manual"],
    "W2": ["numpy", "torch", "jaxnets-auto", "jaxnets-manual"],
    "W3": ["numpy", "torch", "jaxnets-auto", "jaxnets-manual"],
    "W4": [
        "jaxnets-sweep-auto",
        "jaxnets-seq-auto",
        "jaxnets-sweep-manual",
        "jaxnets-seq-manual",
        "jaxnets-train.sweep",
        "jaxnets-train.fit-seq",
    ],
    "W4b": ["jaxnets-sweep-auto", "jaxnets-seq-auto", "jaxnets-sweep-manual", "jaxnets-seq-manual"],
    "W6": ["numpy", "torch", "jaxnets-auto", "jaxnets-manual"],
    "W7": ["torch", "jaxnets-auto", "jaxnets-manual"],
}


def _positive_finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    # the timeout only stops a hang; how fast the run is belongs to the benchmark, not a test
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_quick_run_has_every_workload_and_implementation(quick_run):
    doc, _ = quick_run
    assert doc["quick"] is True
    assert set(doc["workloads"]) == set(EXPECTED)
    for key, impls in EXPECTED.items():
        got = doc["workloads"][key]["impls"]
        for name in impls:
            assert name in got, f"{key}: {name} missing"
            entry = got[name]
            if name == "torch" and "skipped" in entry:  # torch not importable here: skipped with a note
                assert any("torch skipped" in n for n in doc["workloads"][key]["notes"])
                continue
            assert entry["times_s"] and all(_positive_finite(t) for t in entry["times_s"]), (key, name, entry)
            for field in ("median_s", "min_s", "examples_per_s", "gflops"):
                assert _positive_finite(entry[field]), (key, name, field, entry[field])
            if name.startswith("jaxnets") and "train." not in name and key != "W7":  # fit compiles when timed
                assert _positive_finite(entry["compile_s"])


def test_quick_run_reports_peak_ratios_memory_and_w5(quick_run):
    doc, stdout = quick_run
    summary = doc["summary"]
    assert _positive_finite(summary["peak_gflops"])
    w1 = summary["workloads"]["W1"]
    assert _positive_finite(w1["jaxnets-auto"]["speedup_vs_numpy"])
    assert 0 < w1["jaxnets-auto"]["peak_fraction"]
    assert _positive_finite(summary["workloads"]["W4"]["jaxnets-sweep-auto"]["speedup_vs_jaxnets-seq-auto"])
    assert _positive_finite(summary["workloads"]["W4"]["jaxnets-train.sweep"]["speedup_vs_jaxnets-train.fit-seq"])
    assert {t["workload"] for t in summary["targets"]} >= {"W1", "W2", "W3", "W4", "W6", "W7"}
    for key in EXPECTED:
        assert _positive_finite(doc["workloads"][key]["peak_rss_mib"])
        assert _positive_finite(summary["w5"][f"{key} jaxnets" if not key.startswith("W4") else f"{key} jaxnets-sweep"])
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["jax"]
    assert "| W1 | jaxnets-auto |" in stdout and "| W3 |" in doc["markdown"]

