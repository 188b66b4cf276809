"""The document's "broken backprop" experiment: true vs deliberately wrong max-pooling backward.

    python examples/broken_backprop.py                     # 500 epochs, three hidden sizes
    python examples/broken_backprop.py --quick --out /tmp/quick.png

The multi-channel digits CNN (``models.digits_cnn``: 0 vs 1 on the 8x8 sklearn digits, the
squared-error (L2) cost) is trained twice per hidden size from the same initial weights and
minibatch order: with ``ops=manual_grads`` (the true hand-derived backward) and with
``ops=broken_grads`` (the same, except that the backward through both max-pooling layers uses
the document's wrong rule ``dx = mask^T * up(dout)^T``). As in the document, only the sizes of
the last fully-connected layers change: W3 16x18, W4 18x20, W5 20x1 (its result 1), 16x48,
48x56, 56x1 (result 2) and, for its result 3 whose sizes it forgot, the base net's 16x28,
28x36, 36x1. Training is 500 epochs of plain SGD as in the document (which updated after
every example; minibatches of 24 keep the run to a minute or two on two CPU cores). Like the
document, the data is split into training and test images only (288 / 72); ``fit``'s
validation slot is handed the test images, so its per-epoch accuracy is test accuracy, but
nothing is selected on it.

Prints a side-by-side table (final cost and test accuracy of the final weights, true vs
broken) and writes the cost curves, one panel per hidden size, to ``--out``. The cost of an
epoch is the mean over its minibatches of ``(1/2N) sum (p - y)^2``.
"""

from __future__ import annotations

import argparse
import time
from types import ModuleType

import jax
import numpy as np

from jaxnets import broken_grads, data, manual_grads, models, train

# (W3, W4) output widths, in the document's order: result 1, result 2, result 3 (base net).
HIDDEN_SIZES = ((18, 20), (48, 56), (28, 36))
VARIANTS = {"true": manual_grads, "broken": broken_grads}
CONFIG = train.TrainConfig(loss="squared_error", optimizer="sgd", learning_rate=0.1, epochs=500, batch_size=24)
QUICK_EPOCHS, QUICK_SIZES = 3, HIDDEN_SIZES[:1]


def epoch_costs(losses, epochs: int) -> np.ndarray:
    """Per-epoch cost: the mean of each epoch's step losses, ``(epochs * steps,) -> (epochs,)``.

    >>> epoch_costs([1.0, 3.0, 0.5, 0.5], 2)
    array([2. , 0.5])
    """
    return np.asarray(losses, np.float64).reshape(epochs, -1).mean(axis=1)


def load_split(seed: int) -> dict:
    """Digits 0 and 1 as training and test images only, the test images also in ``fit``'s validation slot."""
    split = data.load_digits(binary=True, val_fraction=0.0, test_fraction=0.2, seed=seed)
    return {**split, "X_val": split["X_test"], "y_val": split["y_test"]}


def train_variant(hidden_dims, ops: ModuleType, split: dict, config: train.TrainConfig, *, key) -> dict:
    """Train ``digits_cnn(hidden_dims, ops=ops)`` with ``fit``; return its cost curve and test accuracy.

    Returns:
      ``{"costs": (epochs,), "final_cost", "test_acc", "time"}``; ``time`` is the wall time in
      seconds, compilation included.
    """
    start = time.perf_counter()
    model = models.digits_cnn(hidden_dims, ops=ops)
    ts = train.fit(model, split, config, key=key, loss_ops=ops)
    if "stopped" in ts.history:
        raise RuntimeError(f"{ops.__name__} with hidden sizes {hidden_dims}: {ts.history['stopped']}")
    costs = epoch_costs(ts.history["loss"], ts.epoch)
    test_acc = train.accuracy(model, ts.params, ts.state, split["X_test"], split["y_test"])
    return {"costs": costs, "final_cost": float(costs[-1]), "test_acc": test_acc, "time": time.perf_counter() - start}


def compare(split: dict, config: train.TrainConfig, hidden_sizes=HIDDEN_SIZES, *, key, log=print) -> list[dict]:
    """Both variants for every hidden size, one shared ``key`` (same weights, same minibatches).

    Returns:
      One row per hidden size: ``{"hidden_dims": (H3, H4), "true": {...}, "broken": {...}}``
      with the dicts of ``train_variant``.
    """
    rows = []
    for hidden_dims in hidden_sizes:
        row = {"hidden_dims": tuple(hidden_dims)}
        for name, ops in VARIANTS.items():
            row[name] = train_variant(hidden_dims, ops, split, config, key=key)
            log(
                f"  {_shapes(hidden_dims)}  {name:6s}  final cost {row[name]['final_cost']:.3e}  "
                f"test acc {row[name]['test_acc']:.4f}  ({row[name]['time']:.1f} s)"
            )
        rows.append(row)
    return rows


def _shapes(hidden_dims) -> str:
    H3, H4 = hidden_dims
    return f"W3 16x{H3}, W4 {H3}x{H4}, W5 {H4}x1"


def format_table(rows: list[dict], epochs: int) -> str:
    """The side-by-side table: hidden sizes, final cost and test accuracy of the true and broken nets."""
    head = (
        f"{'hidden sizes':28s}  {'final cost (epoch ' + str(epochs) + ')':>23s}  {'test accuracy':>17s}\n"
        f"{'':28s}  {'true':>11s} {'broken':>11s}  {'true':>8s} {'broken':>8s}"
    )
    lines = [head, "-" * len(head.splitlines()[0])]
    for row in rows:
        t, b = row["true"], row["broken"]
        lines.append(
            f"{_shapes(row['hidden_dims']):28s}  {t['final_cost']:11.3e} {b['final_cost']:11.3e}  "
            f"{t['test_acc']:8.4f} {b['test_acc']:8.4f}"
        )
    return "\n".join(lines)


def plot_costs(rows: list[dict], path: str) -> None:
    """Cost curves, one panel per hidden size, true and broken nets on a log scale; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.4), squeeze=False, sharey=True)
    for ax, row in zip(axes[0], rows, strict=False):
        for name, color in (("true", "tab:blue"), ("broken", "tab:red")):
            result = row[name]
            epochs = np.arange(1, len(result["costs"]) + 1)
            ax.plot(
                epochs,
                result["costs"],
                color=color,
                lw=1.2,
                label=f"{name} backprop (test acc {result['test_acc']:.3f})",
            )
        ax.set_yscale("log")
        ax.set_title(_shapes(row["hidden_dims"]), fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("cost (mean squared error / 2)")
    fig.suptitle("digits 0 vs 1 CNN: true vs broken max-pooling backward", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs per run (default {CONFIG.epochs})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split, initial weights and minibatches")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK_EPOCHS} epochs, first hidden size only"
    )
    parser.add_argument("--out", default="broken_backprop.png", help="where to write the cost curves (PNG)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else CONFIG.epochs)
    config = CONFIG._replace(epochs=epochs)
    hidden_sizes = QUICK_SIZES if args.quick else HIDDEN_SIZES
    split = load_split(args.seed)
    print(
        f"digits 0 vs 1: {len(split['y_train'])} train / {len(split['y_test'])} test images; "
        f"{epochs} epochs of SGD (lr {config.learning_rate:g}, batch {config.batch_size}), squared-error cost"
    )
    rows = compare(split, config, hidden_sizes, key=jax.random.key(args.seed))
    print()
    print(format_table(rows, epochs))
    plot_costs(rows, args.out)
    print(f"\ncost curves written to {args.out}; total {time.perf_counter() - start:.1f} s on {jax.devices()[0]}")
    return rows


if __name__ == "__main__":
    main()
