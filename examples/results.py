"""Reproduce the README's Results table: each row over several seeds, and the table from the figures.

    python examples/results.py --row digits-fc --seeds 0,1,2 --json results.json
    python examples/results.py --row fashion-convnet --data-dir /path/to/data --json results.json
    python examples/results.py --table results.json

Each row trains one model with ``jaxnets.train.fit`` (best-validation weights kept) per seed (the
seed draws the data split, the initial weights, the minibatch order, dropout and augmentation) and
records its test accuracy, best validation accuracy and its epoch, and wall time (data loading,
compilation and training included). ``--json`` merges the figures into a JSON file together with
the machine they were measured on; ``--table`` prints the README's Markdown table (mean +- std over
the seeds) from it. Accuracies are bit-identical for the same seed on the same machine type only:
XLA's CPU code differs between processors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax

from jaxnets import data, files, models, train

ROWS = {
    "digits-fc": dict(
        data="digits",
        model=lambda: models.fc_net([256, 256], 10, normalization="batchnorm", dropout=0.2, weight_scale=None),
        config=train.TrainConfig(optimizer="adam", learning_rate=2e-3, lr_decay=0.95, epochs=60, batch_size=50),
    ),
    "digits-convnet": dict(
        data="digits",
        model=lambda: models.convnet((32, 64), (256,), 10, normalization="batchnorm", dropout=0.3),
        config=train.TrainConfig(optimizer="adam", learning_rate=2e-3, lr_decay=0.93, epochs=60, batch_size=50),
    ),
    "digits01-cnn": dict(
        data="digits-01",
        model=lambda: models.digits_cnn(),
        config=train.TrainConfig(loss="squared_error", optimizer="sgd", learning_rate=0.1, epochs=100, batch_size=20),
    ),
    "fashion-two-layer": dict(
        data="fashion-mnist",
        model=lambda: models.two_layer_net(1000, 10, weight_scale=None),
        config=train.TrainConfig(optimizer="adam", learning_rate=1e-3, lr_decay=0.9, epochs=30, batch_size=200),
    ),
    "fashion-fc": dict(
        data="fashion-mnist",
        model=lambda: models.fc_net([1024, 512], 10, normalization="batchnorm", dropout=0.3, weight_scale=None),
        config=train.TrainConfig(optimizer="adam", learning_rate=1e-3, lr_decay=0.9, epochs=40, batch_size=200),
    ),
    # settings chosen on validation accuracy alone: examples/tune_fashion_convnet.py (candidate aug30-d90)
    "fashion-convnet": dict(
        data="fashion-mnist",
        model=lambda: models.convnet((32, 64), (256,), 10, normalization="batchnorm", dropout=0.4),
        config=train.TrainConfig(
            optimizer="adam", learning_rate=1e-3, lr_decay=0.9, epochs=30, batch_size=100, crop_pad=2, flip_prob=0.5
        ),
    ),
}

#: Each row's claim: the test accuracy every seed must reach (tests/test_slow_results.py asserts it).
TARGETS = {
    "digits-fc": 0.97,
    "digits-convnet": 0.985,
    "digits01-cnn": 0.94,  # 1.0 on seed 0 only; seeds 1 and 2 gave 0.9722 and 0.9444
    "fashion-two-layer": 0.88,
    "fashion-fc": 0.90,
    "fashion-convnet": 0.935,  # the published mark for two conv layers with pooling and batch norm: 0.934
}


def machine() -> dict:
    """Where the figures were measured: platform, CPU model, core count, jax version and device."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
    }


def run_row(name: str, *, data_dir=None, seed: int = 0, epochs: int | None = None, verbose: bool = True) -> dict:
    """Train row ``name`` of :data:`ROWS` with ``seed``; return its figures (test accuracy, wall time, ...)."""
    if name not in ROWS:
        raise ValueError(f"name must be one of {sorted(ROWS)}, got {name!r}")
    row = ROWS[name]
    config = row["config"] if epochs is None else row["config"]._replace(epochs=epochs)
    start = time.perf_counter()
    split = data.load_dataset(row["data"], data_dir, seed=seed)
    model = row["model"]()
    log = (
        (
            lambda ts, r: print(
                f"  seed {seed}  epoch {r['epoch']:3d}  loss {r['loss']:.4f}  train {r['train_acc']:.4f}  "
                f"val {r['val_acc']:.4f}  {time.perf_counter() - start:6.1f}s",
                flush=True,
            )
        )
        if verbose
        else None
    )
    ts = train.fit(model, split, config, key=jax.random.key(seed), on_epoch=log)
    test_acc = train.accuracy(model, ts.best_params, ts.best_state, split["X_test"], split["y_test"])
    val_accs = ts.history["val_acc"]
    return {
        "row": name,
        "seed": seed,
        "epochs": ts.epoch,
        "best_val_acc": ts.best_val_acc,
        "best_epoch": 1 + max(range(len(val_accs)), key=lambda i: (val_accs[i], -i)),
        "test_acc": test_acc,
        "n_test": len(split["y_test"]),
        "wall_s": time.perf_counter() - start,
        "stopped": ts.history.get("stopped"),
    }


def merge_results(path, results: list[dict]) -> dict:
    """Merge ``results`` into the JSON at ``path`` (a run replaces the same row and seed); write it atomically."""
    doc = {"machine": None, "rows": {}}
    if os.path.exists(path):
        with open(path) as f:
            doc = json.load(f)
    for r in results:
        runs = [x for x in doc["rows"].get(r["row"], []) if x["seed"] != r["seed"]] + [r]
        doc["rows"][r["row"]] = sorted(runs, key=lambda x: x["seed"])
    doc["machine"] = machine()
    files.write_json(path, doc)
    return doc


def _mean_std(values) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def table(doc: dict) -> str:
    """The README's Markdown Results table from a :func:`merge_results` document: mean ± std over the seeds.

    >>> doc = {"machine": {"cpu": "CPU X", "nproc": 2, "jax": "0.0"}, "rows": {"digits-fc": [
    ...     {"seed": s, "test_acc": a, "best_val_acc": 0.98, "best_epoch": 9, "wall_s": 8.0}
    ...     for s, a in [(0, 0.975), (1, 0.98)]]}}
    >>> print(table(doc).splitlines()[2])
    | digits-fc | 0.9775 ± 0.0035 | 0.9750 | >= 0.97 (met on 2/2) | 0.9800 ± 0.0000 | 8 s | 0, 1 |
    """
    lines = [
        "| row | test accuracy (mean ± std) | worst seed | target | best val (mean ± std) | wall time (mean) | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in sorted(doc["rows"].items(), key=lambda item: list(ROWS).index(item[0])):
        accs = [r["test_acc"] for r in runs]
        met = sum(a >= TARGETS[name] for a in accs)
        lines.append(
            f"| {name} | {_mean_std(accs)} | {min(accs):.4f} | >= {TARGETS[name]:g} (met on {met}/{len(accs)}) | "
            f"{_mean_std([r['best_val_acc'] for r in runs])} | {statistics.fmean(r['wall_s'] for r in runs):.0f} s | "
            f"{', '.join(str(r['seed']) for r in runs)} |"
        )
    m = doc["machine"]
    lines.append("")
    lines.append(f"Measured on {m['cpu']} ({m['nproc']} cores), jax {m['jax']}.")
    return "\n".join(lines)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    return seeds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", choices=sorted(ROWS), action="append", help="row(s) to run")
    parser.add_argument("--data-dir", default=None, help="folder holding fashion-mnist/ (else $JAXNETS_DATA)")
    parser.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated seeds (default 0)")
    parser.add_argument("--epochs", type=int, default=None, help="override the row's epoch count")
    parser.add_argument("--json", default=None, help="merge each run's figures into this JSON file")
    parser.add_argument("--table", default=None, metavar="JSON", help="print the Markdown table of this JSON file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not args.row and not args.table:
        parser.error("give --row and/or --table")
    for name in args.row or []:
        for seed in args.seeds:
            result = run_row(name, data_dir=args.data_dir, seed=seed, epochs=args.epochs, verbose=not args.quiet)
            print(
                f"{name} seed {seed}: test accuracy {result['test_acc']:.4f}  best val {result['best_val_acc']:.4f} "
                f"(epoch {result['best_epoch']})  wall {result['wall_s']:.1f} s",
                flush=True,
            )
            if args.json:
                merge_results(args.json, [result])
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)))


if __name__ == "__main__":
    main()
