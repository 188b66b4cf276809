"""Choose the Fashion-MNIST convnet's settings on validation accuracy alone.

    python examples/tune_fashion_convnet.py --candidate aug20-d90 --seed 0 --json tune.jsonl
    python examples/tune_fashion_convnet.py --summary tune.jsonl

Each candidate is one set of settings of the README's two-conv-layer net (conv3x3-BN-relu-pool x2,
fc-BN-relu-dropout, fc). A run trains it with ``train.fit`` on the seed's train/validation split of
the 60,000 training images and records the best validation accuracy and its epoch; the test set is
never loaded, so the choice cannot see it. ``--summary`` ranks the candidates by mean best
validation accuracy over the seeds run. The winner is the ``fashion-convnet`` row of
``examples/results.py``, which then measures the test accuracy (README, Results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

from jaxnets import data, models, train

_AUG = dict(crop_pad=2, flip_prob=0.5)

#: name -> (convnet keyword arguments, TrainConfig keyword arguments); adam, batch 100 throughout.
CANDIDATES = {
    "aug10-d80": (dict(dropout=0.4), dict(lr_decay=0.8, epochs=10, **_AUG)),
    "aug20-d85": (dict(dropout=0.4), dict(lr_decay=0.85, epochs=20, **_AUG)),
    "aug20-d90": (dict(dropout=0.4), dict(lr_decay=0.9, epochs=20, **_AUG)),
    "aug30-d90": (dict(dropout=0.4), dict(lr_decay=0.9, epochs=30, **_AUG)),
    "aug20-d90-h512": (dict(hidden_dims=(512,), dropout=0.5), dict(lr_decay=0.9, epochs=20, **_AUG)),
    "aug20-d85-lr2e3": (dict(dropout=0.4), dict(learning_rate=2e-3, lr_decay=0.85, epochs=20, **_AUG)),
    "crop20-d90": (dict(dropout=0.4), dict(lr_decay=0.9, epochs=20, crop_pad=2)),
    "noaug20-d85": (dict(dropout=0.4), dict(lr_decay=0.85, epochs=20)),
}


def build(name: str):
    """The model and TrainConfig of candidate ``name``."""
    model_kw, config_kw = CANDIDATES[name]
    model_kw = {"channels": (32, 64), "hidden_dims": (256,), "normalization": "batchnorm", **model_kw}
    config = train.TrainConfig(**{"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 100, **config_kw})
    return models.convnet(num_classes=10, **model_kw), config


def run(name: str, seed: int, data_dir=None) -> dict:
    """Train candidate ``name`` on seed ``seed``'s split; its best validation accuracy (no test figure)."""
    start = time.perf_counter()
    split = data.load_dataset("fashion-mnist", data_dir, seed=seed, download=False)
    split = {k: v for k, v in split.items() if not k.endswith("_test")}
    model, config = build(name)
    ts = train.fit(model, split, config, key=jax.random.key(seed))
    val = [float(v) for v in ts.history["val_acc"]]
    best = max(range(len(val)), key=lambda i: (val[i], -i))
    return {
        "candidate": name,
        "seed": seed,
        "best_val_acc": val[best],
        "best_epoch": best + 1,
        "val_acc": val,
        "wall_s": time.perf_counter() - start,
        "device": str(jax.devices()[0]),
    }


def summary(lines: list[dict]) -> str:
    """Candidates ranked by mean best validation accuracy over their seeds."""
    by_name: dict[str, list[dict]] = {}
    for r in lines:
        by_name.setdefault(r["candidate"], []).append(r)
    rows = sorted(by_name.items(), key=lambda kv: -statistics.fmean(r["best_val_acc"] for r in kv[1]))
    out = ["| candidate | mean best val | per seed (epoch) |", "| --- | --- | --- |"]
    for name, runs in rows:
        runs = sorted(runs, key=lambda r: r["seed"])
        per_seed = ", ".join(f"{r['seed']}: {r['best_val_acc']:.4f} ({r['best_epoch']})" for r in runs)
        out.append(f"| {name} | {statistics.fmean(r['best_val_acc'] for r in runs):.4f} | {per_seed} |")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", choices=sorted(CANDIDATES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="folder holding fashion-mnist/ (else $JAXNETS_DATA)")
    parser.add_argument("--json", default=None, help="append the run's figures as one JSON line to this file")
    parser.add_argument("--summary", default=None, metavar="JSONL", help="rank the candidates of this file")
    args = parser.parse_args(argv)
    if args.candidate:
        result = run(args.candidate, args.seed, args.data_dir)
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")
    if args.summary:
        with open(args.summary) as f:
            print(summary([json.loads(line) for line in f if line.strip()]))
    if not args.candidate and not args.summary:
        parser.error("give --candidate and/or --summary")


if __name__ == "__main__":
    main()
