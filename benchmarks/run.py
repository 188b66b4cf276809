"""Speed and memory of jaxnets against the numpy and PyTorch-eager baselines (W1-W7).

    python benchmarks/run.py                 # the full benchmark (several minutes)
    python benchmarks/run.py --quick         # a seconds-long smoke run (what CI executes)
    python benchmarks/run.py --json out.json --only W1,W3 --reps 7

Each workload runs in a fresh subprocess. Inside it, every implementation is set up, compiled
(jax: ``lower().compile()``, timed and reported on its own) and run once to warm up (not with
``--quick``); then the timed repetitions are interleaved -- repetition 1 of every
implementation, then repetition 2, ... -- together with one float32 product of two 2048 x 2048
matrices per repetition (numpy and jax), whose best rate over the whole run is the machine's
measured matmul peak. Interleaving matters: on a shared machine the speed drifts by tens of
percent within minutes, and only implementations timed side by side compare fairly.
Reported: the median (and min) seconds per unit, examples/s, the ratio against each baseline
(``x faster`` = baseline median / this median), GFLOP/s of the workload's matmul/conv work and
that as a fraction of the measured peak.

Memory: ``peak RSS (workload)`` is the high-water resident set of the timing subprocess: Python,
every imported library, the synthetic data and all implementations of that workload together.
Without ``--quick``, each implementation is also run on its own in a fresh subprocess (setup,
compile, one run) and ``peak RSS (alone)`` is that process's high-water mark -- which still
imports every library of the workload and holds its synthetic data -- with the part added by
that implementation's setup, compile and run (the high-water mark minus the resident set
before its setup) beside it.

W5 (manual vs autodiff gradients) is not a separate run: it is the ratio of the ``-manual`` and
``-auto`` jaxnets implementations of every workload.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

WORKLOAD_KEYS = ("W1", "W2", "W3", "W4", "W4b", "W6", "W7")


# ------------------------------------------------------------------------------------------
# Process memory


def _status_kib(field):
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in KiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mib():
    """Current resident set size in MiB."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def peak_rss_mib():
    """High-water resident set size of this process in MiB."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        if sys.platform == "darwin":
            kib /= 1024
    return kib / 1024


# ------------------------------------------------------------------------------------------
# Worker side (runs inside the subprocess)


def _torch_status():
    import baseline_torch

    return baseline_torch.TORCH_AVAILABLE, baseline_torch.TORCH_UNAVAILABLE_REASON, baseline_torch.TORCH_VERSION


def _peak_probe(n):
    """Functions timing one n x n float32 matrix product with numpy and with jax."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    mm = jax.jit(jnp.matmul)
    mm(ja, jb).block_until_ready()
    a @ b
    return {"numpy": lambda: a @ b, "jax": lambda: mm(ja, jb).block_until_ready()}


def worker(key, quick, reps, torch_wanted, sizes=None, numpy_wanted=True):
    """Time workload ``key``; returns the result dict (printed as JSON by ``main``)."""
    import workloads

    t_start = time.perf_counter()
    load_start = os.getloadavg()
    torch_ok, torch_reason, torch_version = _torch_status() if torch_wanted else (False, "disabled by --no-torch", None)
    wl = workloads.build(key, quick, torch_ok, sizes if key in ("W6", "W7") else None)
    numpy_skipped = not numpy_wanted and any(impl.name == "numpy" for impl in wl.impls)
    wl.impls = [impl for impl in wl.impls if numpy_wanted or impl.name != "numpy"]
    result = {
        "key": key,
        "title": wl.title,
        "unit": wl.unit,
        "units_per_run": wl.units_per_run,
        "examples_per_run": wl.examples_per_run,
        "flops_per_run": wl.flops_per_run,
        "notes": list(wl.notes),
        "baselines": list(wl.baselines),
        "impls": {},
    }
    if "torch" in wl.baselines and not torch_ok:
        result["notes"].append(f"torch skipped: {torch_reason}")
        result["impls"]["torch"] = {"skipped": torch_reason}
    if numpy_skipped:
        result["notes"].append("numpy skipped: disabled by --no-numpy")
        result["impls"]["numpy"] = {"skipped": "disabled by --no-numpy"}

    states = {}
    for impl in wl.impls:
        entry = {"note": impl.note}
        state = impl.setup()
        if impl.compile is not None:
            dt, state = workloads.timed(impl.compile, state)
            entry["compile_s"] = dt
        if not quick:  # warm-up (oneDNN / BLAS pick kernels, caches fill); a smoke run skips it
            dt, state = workloads.timed(impl.run, state)
            entry["warmup_s"] = dt
        entry["times_s"] = []
        entry["cpu_s"] = []
        states[impl.name] = state
        result["impls"][impl.name] = entry

    peak_n = 256 if quick else 2048
    probes = _peak_probe(peak_n)
    peak_times = {k: [] for k in probes}
    for _ in range(reps):
        for impl in wl.impls:
            cpu0 = time.process_time()
            dt, states[impl.name] = workloads.timed(impl.run, states[impl.name])
            result["impls"][impl.name]["times_s"].append(dt)
            result["impls"][impl.name]["cpu_s"].append(time.process_time() - cpu0)
        for k, probe in probes.items():
            peak_times[k].append(workloads.timed(probe)[0])

    for impl in wl.impls:
        entry = result["impls"][impl.name]
        times = entry["times_s"]
        units = impl.units_per_run or wl.units_per_run
        scale = units / wl.units_per_run  # of the workload's examples and FLOPs per run
        entry["units_per_run"] = units
        entry["median_s"] = statistics.median(times) / units
        entry["min_s"] = min(times) / units
        entry["examples_per_s"] = scale * wl.examples_per_run / statistics.median(times)
        entry["gflops"] = scale * wl.flops_per_run / statistics.median(times) / 1e9
        # CPU seconds (all threads of this process) per unit: above the wall time when threads
        # work in parallel, inflated by busy-waiting threads on a loaded machine
        entry["cpu_per_unit_s"] = statistics.median(entry["cpu_s"]) / units
        state = states[impl.name]
        if isinstance(state, dict) and "last_loss" in state:
            entry["last_loss"] = state["last_loss"]
    flops = workloads.flops_matmul(peak_n)
    result["peak"] = {
        "n": peak_n,
        "gflops": {k: flops / min(v) / 1e9 for k, v in peak_times.items()},
        "median_gflops": {k: flops / statistics.median(v) / 1e9 for k, v in peak_times.items()},
    }
    result["peak_rss_mib"] = peak_rss_mib()
    result["wall_s"] = time.perf_counter() - t_start
    result["loadavg_start"], result["loadavg_end"] = load_start, os.getloadavg()
    import jax

    result["jax_backend"] = jax.default_backend()
    result["jax_devices"] = [str(d) for d in jax.devices()]
    result["torch"] = torch_version
    return result


def memory_worker(key, impl_name, quick, torch_wanted, sizes=None):
    """Run one implementation alone (setup, compile, one run) and report its memory."""
    import workloads

    torch_ok = _torch_status()[0] if torch_wanted else False
    wl = workloads.build(key, quick, torch_ok, sizes if key in ("W6", "W7") else None)
    impl = next(i for i in wl.impls if i.name == impl_name)
    before = rss_mib()
    state = impl.setup()
    if impl.compile is not None:
        state = impl.compile(state)
    impl.run(state)
    return {"key": key, "impl": impl_name, "rss_before_setup_mib": before, "peak_rss_mib": peak_rss_mib()}


# ------------------------------------------------------------------------------------------
# Parent side


def _subprocess(args, env, timeout):
    """Run this script with ``args``; the JSON lines it prints, decoded."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]


def machine_info():
    """nproc, CPU model, library versions."""
    info = {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    try:
        info["sched_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    import importlib.metadata as md

    for pkg in ("jax", "jaxlib", "numpy", "torch", "optax"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = None
    info["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    return info


def summarize(results):
    """Add ratios, peak fractions and the W5 table to the per-workload results."""
    peak = max(max(r["peak"]["gflops"].values()) for r in results.values())
    summary = {"peak_gflops": peak, "workloads": {}, "w5": {}}
    for key, r in results.items():
        rows = {}
        for name, e in r["impls"].items():
            if "median_s" not in e:
                continue
            row = {k: e[k] for k in ("median_s", "min_s", "examples_per_s", "gflops")}
            row["compile_s"] = e.get("compile_s")
            row["peak_fraction"] = e["gflops"] / peak
            for base in r["baselines"]:
                b = r["impls"].get(base, {})
                if "median_s" in b and base != name:
                    row[f"speedup_vs_{base}"] = b["median_s"] / e["median_s"]
            rows[name] = row
        summary["workloads"][key] = rows
        pairs = [(n, n.replace("-auto", "-manual")) for n in rows if n.endswith("-auto")]
        for auto, manual in pairs:
            if manual in rows:
                summary["w5"][f"{key} {auto.removesuffix('-auto')}"] = rows[manual]["median_s"] / rows[auto]["median_s"]
    summary["targets"] = targets(summary)
    return summary


# (workload, implementations, measure, threshold, how it reads): the targets
TARGETS = [
    ("W1", ("jaxnets-auto", "jaxnets-manual"), "speedup_vs_numpy", 1.5, ">= 1.5x faster than numpy"),
    ("W1", ("jaxnets-auto", "jaxnets-manual"), "speedup_vs_torch", 2.0, ">= 2x faster than torch eager"),
    ("W1", ("jaxnets-auto", "jaxnets-manual"), "peak_fraction", 0.75, ">= 75% of the measured matmul peak"),
    ("W2", ("jaxnets-auto", "jaxnets-manual"), "speedup_vs_numpy", 1.5, ">= 1.5x faster than numpy"),
    ("W2", ("jaxnets-auto", "jaxnets-manual"), "speedup_vs_torch", 2.0, ">= 2x faster than torch eager"),
    ("W3", ("jaxnets-auto", "jaxnets-manual"), "speedup_vs_torch", 1.2, ">= 1.2x torch eager"),
    ("W6", ("jaxnets-auto", "jaxnets-manual"), "speedup_vs_torch", 1.2, ">= 1.2x torch eager"),
    ("W7", ("jaxnets-auto", "jaxnets-manual"), "speedup_vs_torch", 1.2, ">= 1.2x torch eager (end to end)"),
    (
        "W4",
        ("jaxnets-sweep-auto",),
        "speedup_vs_jaxnets-seq-auto",
        3.0,
        "vmapped >= 3x faster than 15 sequential (compiled epochs)",
    ),
    (
        "W4",
        ("jaxnets-train.sweep",),
        "speedup_vs_jaxnets-train.fit-seq",
        3.0,
        "train.sweep >= 3x faster than train.fit per config (end to end)",
    ),
]


def targets(summary):
    """Each target with the measured value of every implementation it applies to and met / missed."""
    out = []
    for key, impls, measure, threshold, text in TARGETS:
        rows = summary["workloads"].get(key, {})
        for impl in impls:
            value = rows.get(impl, {}).get(measure)
            if value is not None:
                out.append(
                    {
                        "workload": key,
                        "impl": impl,
                        "target": text,
                        "value": value,
                        "threshold": threshold,
                        "met": value >= threshold,
                        "percent": value >= 0 and 100 * value / threshold,
                    }
                )
    for name, ratio in summary["w5"].items():
        out.append(
            {
                "workload": name.split()[0],
                "impl": name.split()[1],
                "target": "W5: manual within 1.1x of autodiff",
                "value": ratio,
                "threshold": 1.1,
                "met": ratio <= 1.1,
                "percent": 100 * 1.1 / ratio,
            }
        )
    return out


def _fmt_time(s):
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def markdown(results, summary, memory, info, args):
    """The report as markdown tables."""
    out = []
    peak = summary["peak_gflops"]
    out.append(
        f"Machine: {info['nproc']} CPUs ({info.get('cpu')}), {info['platform']}; jax {info['jax']} "
        f"(backend {next(iter(results.values()))['jax_backend']}), numpy {info['numpy']}, torch {info['torch']}, "
        f"optax {info['optax']}. XLA_FLAGS={info['XLA_FLAGS']!r}."
    )
    out.append(
        f"Measured float32 matmul peak: **{peak:.0f} GFLOP/s** (best {results[next(iter(results))]['peak']['n']}² "
        "product, numpy or jax, over all repetitions of the run)."
    )
    out.append(
        f"Medians of {args.reps} interleaved repetitions{'' if args.quick else ' after one warm-up'}; "
        "compile time apart.\n"
    )
    out.append(
        "| workload | implementation | median per unit | min | examples/s | vs numpy | vs torch | "
        "GFLOP/s | % of peak | compile | peak RSS alone |"
    )
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, r in results.items():
        rows = summary["workloads"][key]
        for name, e in r["impls"].items():
            if "skipped" in e:
                out.append(f"| {key} | {name} | skipped: {e['skipped']} | | | | | | | | |")
                continue
            row = rows[name]
            vs = []
            for base in ("numpy", "torch"):
                v = row.get(f"speedup_vs_{base}")
                vs.append(f"{v:.2f}x" if v else "")
            if key.startswith("W4"):
                base = {"jaxnets-train.sweep": "jaxnets-train.fit-seq"}.get(name, name.replace("sweep", "seq"))
                v = row.get("speedup_vs_" + base) if "sweep" in name else None
                vs = [f"{v:.2f}x vs {base.removeprefix('jaxnets-')}" if v else "", ""]
            mem = memory.get(f"{key}:{name}")
            mem_s = ""
            if mem:
                mem_s = f"{mem['peak_rss_mib']:.0f} MiB (+{mem['peak_rss_mib'] - mem['rss_before_setup_mib']:.0f})"
            comp = f"{row['compile_s']:.1f} s" if row.get("compile_s") is not None else ""
            out.append(
                f"| {key} | {name} | {_fmt_time(row['median_s'])}/{r['unit']} | {_fmt_time(row['min_s'])} | "
                f"{row['examples_per_s']:,.0f} | {vs[0]} | {vs[1]} | {row['gflops']:.1f} | "
                f"{100 * row['peak_fraction']:.0f}% | {comp} | {mem_s} |"
            )
    out.append("")
    out.append("| workload | what one unit is | peak RSS (workload process) |")
    out.append("| --- | --- | ---: |")
    for key, r in results.items():
        out.append(f"| {key} | {r['title']} | {r['peak_rss_mib']:.0f} MiB |")
    out.append("")
    out.append(
        "W5, manual (`ops=manual_grads`) / autodiff (`ops=layers`) median time (1.00 = same; < 1 manual is faster):\n"
    )
    out.append("| workload | manual / auto |")
    out.append("| --- | ---: |")
    for k, v in summary["w5"].items():
        out.append(f"| {k} | {v:.2f} |")
    out.append("\nTargets (same run):\n")
    out.append("| workload | implementation | target | measured | met |")
    out.append("| --- | --- | --- | ---: | --- |")
    for t in summary["targets"]:
        measured = f"{100 * t['value']:.0f}%" if "peak" in t["target"] else f"{t['value']:.2f}x"
        verdict = "yes" if t["met"] else f"no ({t['percent']:.0f}% of the way)"
        out.append(f"| {t['workload']} | {t['impl']} | {t['target']} | {measured} | {verdict} |")
    loads = ", ".join(f"{k} {r['loadavg_start'][0]:.1f}->{r['loadavg_end'][0]:.1f}" for k, r in results.items())
    out.append(
        f"\n1-minute load average at the start -> end of each workload's process: {loads} "
        f"(the machine has {info['nproc']} CPUs; above that, other processes competed for them)."
    )
    notes = [f"- {r['key']}: {n}" for r in results.values() for n in r["notes"]]
    if notes:
        out.append("\nNotes:\n" + "\n".join(notes))
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions: a smoke run for CI")
    parser.add_argument("--json", metavar="FILE", help="write all results (raw times too) as JSON")
    parser.add_argument("--only", default=",".join(WORKLOAD_KEYS), help="comma-separated workloads (default all)")
    parser.add_argument(
        "--reps", type=int, default=None, help="timed repetitions per implementation (default 7; 2 with --quick)"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    parser.add_argument("--no-numpy", action="store_true", help="skip the numpy baselines (e.g. on a GPU host)")
    parser.add_argument(
        "--memory",
        choices=("auto", "on", "off"),
        default="auto",
        help="per-implementation memory subprocesses (auto: on unless --quick)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per subprocess")
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="shorter W6/W7 runs: w6_n (training images, default 55000) or w6_val (validation images, 5000)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 2 if args.quick else 7
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")

    sizes = {}
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in ("w6_n", "w6_val") or not value.isdigit() or int(value) < 1:
            parser.error(f"--size: expected w6_n=INT or w6_val=INT (INT >= 1), got {item!r}")
        sizes[name] = int(value)
    if args.worker:
        # one JSON line per workload; several workloads share the process only with --quick
        for key in args.worker.split(","):
            result = worker(key, args.quick, args.reps, not args.no_torch, sizes, not args.no_numpy)
            print(json.dumps(result), flush=True)
        return 0
    if args.memory_worker:
        key, impl = args.memory_worker.split(":", 1)
        print(json.dumps(memory_worker(key, impl, args.quick, not args.no_torch, sizes)))
        return 0

    canonical = {k.upper(): k for k in WORKLOAD_KEYS}
    keys = [canonical.get(k.strip().upper(), k.strip()) for k in args.only.split(",") if k.strip()]
    bad = [k for k in keys if k not in WORKLOAD_KEYS]
    if bad:
        parser.error(f"--only: unknown workload(s) {bad}; choose from {', '.join(WORKLOAD_KEYS)}")
    common = (["--quick"] if args.quick else []) + (["--no-torch"] if args.no_torch else [])
    common += ["--no-numpy"] if args.no_numpy else []
    common += [f"--size={k}={v}" for k, v in sizes.items()]
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    info = machine_info()
    t0 = time.perf_counter()
    results = {}
    if args.quick:
        # A smoke run: its timings mean nothing, so two processes share the workloads and run at
        # the same time (imports and XLA compiles are most of its time), and each process's
        # peak RSS covers the workloads before it in that process.
        second = ("W4", "W4b", "W7")  # about half the smoke run's compiles
        groups = [[k for k in keys if k not in second], [k for k in keys if k in second]]
        print(
            f"[{time.perf_counter() - t0:6.1f} s] {','.join(keys)} (quick, 2 processes) ...",
            file=sys.stderr,
            flush=True,
        )
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            jobs = [
                pool.submit(
                    _subprocess, ["--worker", ",".join(g), "--reps", str(args.reps), *common], env, args.timeout
                )
                for g in groups
                if g
            ]
            for job in jobs:
                for r in job.result():
                    r["notes"].append("--quick: workloads share two concurrent processes; peak RSS is cumulative")
                    results[r["key"]] = r
        results = {k: results[k] for k in keys}
    else:
        # A fresh process per workload, so its peak RSS is its own.
        for key in keys:
            print(f"[{time.perf_counter() - t0:6.1f} s] {key} ...", file=sys.stderr, flush=True)
            for r in _subprocess(["--worker", key, "--reps", str(args.reps), *common], env, args.timeout):
                results[r["key"]] = r
    memory = {}
    if args.memory == "on" or (args.memory == "auto" and not args.quick):
        for key in keys:
            for name, e in results[key]["impls"].items():
                if "skipped" in e:
                    continue
                print(f"[{time.perf_counter() - t0:6.1f} s] memory {key} {name} ...", file=sys.stderr, flush=True)
                memory[f"{key}:{name}"] = _subprocess(["--memory-worker", f"{key}:{name}", *common], env, args.timeout)[
                    0
                ]
    summary = summarize(results)
    report = markdown(results, summary, memory, info, args)
    print(report)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
    if args.json:
        doc = {
            "command": " ".join(
                [Path(sys.executable).name, "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
            ),
            "quick": args.quick,
            "reps": args.reps,
            "machine": info,
            "summary": summary,
            "workloads": results,
            "memory": memory,
            "markdown": report,
            "total_s": time.perf_counter() - t0,
        }
        Path(args.json).write_text(json.dumps(doc, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
