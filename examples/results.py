"""Reproduce the README's Results table, one row at a time.

    python examples/results.py --row digits-fc
    python examples/results.py --row fashion-convnet --data-dir /path/to/data

Each row trains one model with ``jaxnets.train.fit`` (best-validation weights kept) and prints
its test accuracy and wall time (data loading, compilation and training included). ``--json``
appends the row's figures to a JSON-lines file.
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from jaxnets import data, models, train

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
    "fashion-convnet": dict(
        data="fashion-mnist",
        model=lambda: models.convnet((32, 64), (256,), 10, normalization="batchnorm", dropout=0.4),
        config=train.TrainConfig(optimizer="adam", learning_rate=1e-3, lr_decay=0.85, epochs=15, batch_size=100),
    ),
}


def run_row(name: str, *, data_dir=None, seed: int = 0, epochs: int | None = None, verbose: bool = True) -> dict:
    """Train row ``name`` of :data:`ROWS`; return its figures (test accuracy, wall time, ...)."""
    row = ROWS[name]
    config = row["config"] if epochs is None else row["config"]._replace(epochs=epochs)
    start = time.perf_counter()
    split = data.load_dataset(row["data"], data_dir, seed=seed)
    model = row["model"]()
    log = (
        (
            lambda ts, r: print(
                f"  epoch {r['epoch']:3d}  loss {r['loss']:.4f}  train {r['train_acc']:.4f}  "
                f"val {r['val_acc']:.4f}  {time.perf_counter() - start:6.1f}s",
                flush=True,
            )
        )
        if verbose
        else None
    )
    ts = train.fit(model, split, config, key=jax.random.key(seed), on_epoch=log)
    test_acc = train.accuracy(model, ts.best_params, ts.best_state, split["X_test"], split["y_test"])
    return {
        "row": name,
        "seed": seed,
        "epochs": ts.epoch,
        "best_val_acc": ts.best_val_acc,
        "test_acc": test_acc,
        "wall_s": time.perf_counter() - start,
        "device": str(jax.devices()[0]),
        "stopped": ts.history.get("stopped"),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", choices=sorted(ROWS), action="append", required=True, help="row(s) to run")
    parser.add_argument("--data-dir", default=None, help="folder holding fashion-mnist/ (else $JAXNETS_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the row's epoch count")
    parser.add_argument("--json", default=None, help="append each row's figures to this JSON-lines file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    for name in args.row:
        result = run_row(name, data_dir=args.data_dir, seed=args.seed, epochs=args.epochs, verbose=not args.quiet)
        print(f"{name}: test accuracy {result['test_acc']:.4f}  wall {result['wall_s']:.1f} s  ({result['device']})")
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
