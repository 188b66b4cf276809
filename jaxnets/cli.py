"""The ``jaxnets`` command: train, sweep, evaluate and gradient-check the course nets.

    jaxnets train                      # a batch-norm + dropout fc net on sklearn digits (~10 s)
    jaxnets train --model convnet --epochs 5 --out runs/cnn
    jaxnets train --resume --out runs/cnn --epochs 10
    jaxnets sweep --lr log:1e-2:1:5 --reg 1e-4,1e-3,1e-2
    jaxnets evaluate --checkpoint runs/cnn
    jaxnets gradcheck --model fc
    jaxnets launch -n 2 -- train --out runs/two   # 2 local processes on JAX's distributed runtime

Bad input (unknown names, non-positive sizes, a run directory that already holds a run, a
corrupt checkpoint, ...) ends with one line ``jaxnets: error: ...`` on stderr and exit status 2.
A run that diverged (non-finite loss) keeps its last good checkpoint, writes its metrics and
exits with status 1.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax

from jaxnets import checkpoints, distributed, files, gradcheck, plots, presets, runs, train
from jaxnets.errors import InputError

__all__ = ["main", "build_parser", "UsageError", "EXIT_ERROR", "EXIT_DIVERGED", "EXIT_BUG"]

EXIT_ERROR = 2
EXIT_DIVERGED = 1
EXIT_BUG = 1
_DEFAULT_REGS = "1e-4,1e-3,1e-2"
_NO_DOWNLOAD_HELP = "never download data; fail if the files are not already there"


class UsageError(InputError):
    """Bad command-line input: reported as one line ``jaxnets: error: ...``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors raise ``UsageError`` (one line, no usage dump) instead of exiting."""

    def error(self, message):
        raise UsageError(message)


# ---------------------------------------------------------------------------------- arguments


def _number(convert, ok, expected):
    """An argparse type: ``convert(text)``, refused unless ``ok(value)``, the error naming ``expected``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_positive_float = _number(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
_nonnegative_float = _number(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")


def _fraction(text: str) -> float:
    value = _nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (the drop probability), got {text!r}")
    return value


def _decay(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (the per-epoch learning-rate factor), got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    """``"100,100"`` -> ``[100, 100]``; ``""`` -> ``[]``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers like 100,100, got {text!r}"
        ) from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 100,100, got {text!r}")
    return values


def _opt(group, flag: str, help: str, **kw) -> None:
    """One option; unset options stay None, so ``_given`` sees which the user gave."""
    group.add_argument(flag, help=help, **{"default": None, **kw})


def _add_model_args(p: argparse.ArgumentParser, default_model: str) -> None:
    g = p.add_argument_group("model and data")
    _opt(g, "--model", f"the net to train (default {default_model})", choices=presets.names())
    _opt(g, "--data", "data set (default digits); digits-01 is the binary 0-vs-1 task of digits-cnn",
         choices=presets.DATASETS)
    _opt(g, "--data-dir", "folder holding mnist/, fashion-mnist/ or cifar-10-batches-py/ (default $JAXNETS_DATA, "
         "else ~/.cache/jaxnets); missing files are downloaded there", metavar="DIR")
    _opt(g, "--no-download", _NO_DOWNLOAD_HELP, action="store_true", default=False)
    _opt(g, "--hidden", "hidden layer widths, e.g. 100,100 (default per model)", type=_int_list, metavar="N,N")
    _opt(g, "--channels", "conv channels of three-layer-convnet (one value) and convnet, e.g. 32,64",
         type=_int_list, metavar="N,N")
    _opt(g, "--filter-size", "conv filter size of three-layer-convnet and convnet (default 3)",
         type=_positive_int, metavar="K")
    _opt(g, "--normalization", "normalisation after hidden layers of fc (and batchnorm for convnet)",
         choices=presets.NORMALIZATIONS)
    _opt(g, "--dropout", "drop probability after hidden layers of fc/convnet (default per model)",
         type=_fraction, metavar="P")
    _opt(g, "--grads", "gradients from autodiff or the hand-derived backward passes (default auto)",
         choices=("auto", "manual"))
    _opt(g, "--seed", "seed of the data split, init, order and dropout (default 0)", type=int)


def _add_optim_args(p: argparse.ArgumentParser, sweep: bool) -> None:
    g = p.add_argument_group("optimisation")
    _opt(g, "--optimizer", "update rule (default per model)", choices=presets.OPTIMIZERS)
    if sweep:
        _opt(g, "--lr", "learning rates: a list 1e-3,2e-3 or log:START:STOP:N (default 5 log-spaced values "
             "from 1/10 to 10x the model's default lr)", metavar="GRID")
        _opt(g, "--reg", f"L2 strengths, same forms (default {_DEFAULT_REGS})", metavar="GRID")
    else:
        _opt(g, "--lr", "learning rate (default per model)", type=_positive_float)
        _opt(g, "--reg", "L2 strength: loss += 0.5 reg sum W^2", type=_nonnegative_float)
    _opt(g, "--lr-decay", "multiply the lr by F after every epoch", type=_decay, metavar="F")
    _opt(g, "--epochs", "epochs (default per model)", type=_positive_int)
    _opt(g, "--batch-size", "minibatch size (default per model)", type=_positive_int, metavar="N")
    _opt(g, "--with-replacement", "sample each minibatch with replacement (as the course does) instead of "
         "shuffled passes", action="store_true")
    _opt(g, "--augment", "augment training images: random crops of the image zero-padded by 2, left-right flips "
         "(p=0.5)", action="store_true")
    if not sweep:
        _opt(g, "--patience", "stop after E epochs without a better val accuracy (default: never)",
             type=_positive_int, metavar="E")
        _opt(g, "--devices", "split each minibatch over N devices (data parallel; default 1)",
             type=_positive_int, metavar="N")


def _add_output(p: argparse.ArgumentParser, out_help: str, quiet_help: str):
    g = p.add_argument_group("output")
    _opt(g, "--out", out_help, metavar="DIR")
    _opt(g, "--quiet", quiet_help, action="store_true", default=False)
    return g


def _command(sub, name: str, run, help: str, description: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(run=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxnets`` argument parser (errors raise ``UsageError``).

    A new option is one ``_opt(group, "--flag", "help", ...)`` line; a new subcommand one
    ``_command(...)`` call plus its options.
    """
    parser = _Parser(prog="jaxnets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,sweep,evaluate,gradcheck,launch}")

    tr = _command(sub, "train", _cmd_train, "train one model, with progress, plots, metrics and checkpoints",
                  "Train one model and keep its best-validation weights.\n\nWrites under --out: config.json, "
                  "metrics.json, curves.png, weights.png and checkpoint.npz (updated every epoch; --resume continues "
                  "from it).\nExit status: 0 done, 1 training diverged (or a bug), 2 bad input.")
    _add_model_args(tr, "fc")
    _add_optim_args(tr, sweep=False)
    g = _add_output(tr, "run directory (default runs/<model>-<data>-<timestamp>)",
                    "no progress bar or per-epoch lines; still print the test accuracy")
    _opt(g, "--resume", "continue the run in --out DIR from its checkpoint (only --epochs may change, to train "
         "longer)", action="store_true", default=False)
    g = tr.add_argument_group("several processes", "all three, or none (then a cluster launcher's environment, e.g. "
                              "SLURM, is used if present); --devices then counts the devices of all processes "
                              "(default: all of them)")
    _opt(g, "--coordinator", "process 0's address, the same for all", metavar="HOST:PORT")
    _opt(g, "--num-processes", "processes in the run", type=_positive_int, metavar="N")
    _opt(g, "--process-id", "this process, 0..N-1 (0 writes files)", type=int, metavar="I")
    _opt(g, "--init-timeout", "seconds to wait for every process to join (default 30)", type=_positive_float,
         default=30.0, metavar="S")

    sw = _command(sub, "sweep", _cmd_sweep,
                  "grid-search learning rate x reg, all configurations trained at once (vmap)",
                  "Learning rate x L2 strength grid search: every configuration trains at once (one vmapped, "
                  "compiled program).\n\nWrites sweep.json and sweep.png (val accuracy heat map) under --out.")
    _add_model_args(sw, "two-layer")
    _add_optim_args(sw, sweep=True)
    _add_output(sw, "output directory (default runs/sweep-<model>-<data>-<timestamp>)",
                "print only the best configuration and its test accuracy")

    ev = _command(sub, "evaluate", _cmd_evaluate, "test accuracy and confusion matrix of a saved run",
                  "Rebuild a run's model from its config.json, print its test accuracy and confusion matrix, and "
                  "write confusion.png next to the checkpoint.")
    _opt(ev, "--checkpoint", "a run directory or its checkpoint.npz", required=True, metavar="PATH")
    _opt(ev, "--data-dir", "where the data lives now, if it moved", metavar="DIR")
    _opt(ev, "--no-download", _NO_DOWNLOAD_HELP, action="store_true", default=False)
    _opt(ev, "--which", "the best-validation weights (default) or those of the last epoch", choices=("best", "last"),
         default="best")

    gc = _command(sub, "gradcheck", _cmd_gradcheck, "check hand-derived gradients against autodiff and numeric ones",
                  "Without --model: every layer and loss with a hand-derived backward. With --model: a whole small "
                  "model, per parameter.\nAll in float64; exit status 1 if an error is over its bar (autodiff "
                  f"{gradcheck.AUTODIFF_BAR:.0e}, numeric {gradcheck.NUMERIC_BAR:.0e}).")
    _opt(gc, "--model", "check this whole model instead of the layers", choices=presets.names())
    _opt(gc, "--trials", "random shapes per function (default 2)", type=_positive_int, default=2)
    _opt(gc, "--seed", "first seed (default 0); with --model: seed of the params and inputs", type=int, default=0)

    la = _command(sub, "launch", _cmd_launch, "run a command in N local processes joined by JAX's distributed runtime",
                  "Start N local processes of `jaxnets train ... --coordinator 127.0.0.1:PORT --num-processes N "
                  "--process-id I` (a free port; this environment passed on, e.g. XLA_FLAGS). Ctrl-C ends all of "
                  "them; when one fails the others are ended and its status is the exit status.")
    _opt(la, "-n", "processes", dest="num_processes", type=_positive_int, required=True, metavar="N")
    la.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND ...", help="e.g. -- train --epochs 2")
    return parser


# ------------------------------------------------------------------------------ configuration


def _flag(dest: str) -> str:
    """A library option as the command spells it: ``batch_size`` -> ``--batch-size``."""
    return "--" + dest.replace("_", "-")


def _given(args: argparse.Namespace) -> dict:
    """The configuration flags the user actually gave (argparse leaves the others at None)."""
    return {k: getattr(args, k) for k in presets.CONFIG_KEYS if getattr(args, k, None) is not None}


# ---------------------------------------------------------------------------------------- train


def _cmd_train(args) -> int:
    _init_processes(args)
    try:
        return _train_run(args)
    except jax.errors.JaxRuntimeError as e:
        if distributed.is_multiprocess():  # a lost peer: one line, and no wait on the shutdown barrier
            distributed.fail(e)
        raise


def _train_run(args) -> int:
    from tqdm import tqdm

    if args.resume and args.out is None:
        raise UsageError("--resume needs --out DIR, the directory of the run to continue")
    run = runs.start_train(_given(args), args.argv, args.out, resume=args.resume, download=not args.no_download,
                           progress=False if args.quiet else None, name=_flag)
    cfg, split, out, ts = run["config"], run["split"], run["out"], run["state"]
    steps, quiet = run["prep"]["steps"], args.quiet or not run["writer"]  # only process 0 reports progress
    if not quiet:
        print(f"training {cfg['model']} on {cfg['data']} ({split.get('num_train', len(split['y_train']))} train, "
              f"{len(split['y_val'])} val, {len(split['y_test'])} test) for {cfg['epochs']} epochs of {steps} "
              f"steps on {run['device']}; run dir {out}")
    bar = tqdm(total=cfg["epochs"] * steps, initial=ts.epoch * steps, unit="it", desc=cfg["model"], disable=quiet,
               file=sys.stderr, dynamic_ncols=True, leave=False)

    def on_epoch(ts, rec):
        bar.update(rec["steps"])
        if not quiet:
            bar.write(f"epoch {rec['epoch']:>3}/{cfg['epochs']}  loss {rec['loss']:.4f}  train acc "
                      f"{rec['train_acc']:.4f}  val acc {rec['val_acc']:.4f}  ({rec['time']:.2f} s, "
                      f"{time.perf_counter() - run['started']:.1f} s elapsed)", file=sys.stdout)

    try:
        result = runs.run_train(run, on_epoch)
    finally:
        bar.close()
    ts, metrics = result["state"], result["metrics"]
    stopped = ts.history.get("stopped")
    diverged = bool(stopped and stopped.startswith("diverged"))
    if not run["writer"]:
        return EXIT_DIVERGED if diverged else 0
    if diverged:
        print(f"jaxnets: training stopped: {stopped}; the checkpoint keeps epoch {ts.epoch}", file=sys.stderr)
    elif stopped and not quiet:
        print(f"stopped: {stopped}")
    if not quiet:
        val = metrics["val_accuracy"] if metrics["val_accuracy"] is not None else float("nan")
        print(f"best val accuracy {val:.4f} at epoch {metrics['best_epoch']}; wrote config.json, metrics.json, "
              f"curves.png, weights.png, {checkpoints.CHECKPOINT_NAME} to {out} ({metrics['wall_time_s']:.1f} s)")
    print(f"test accuracy: {result['test_accuracy']:.6f}")
    return EXIT_DIVERGED if diverged else 0


# ---------------------------------------------------------------------------------------- sweep


def _cmd_sweep(args) -> int:
    lr_text, reg_text = args.lr, args.reg or _DEFAULT_REGS
    args.lr = args.reg = None  # grids, not single values
    sweep = runs.start_sweep(_given(args), lr_text, reg_text, args.out, download=not args.no_download,
                             progress=False if args.quiet else None, name=_flag)
    cfg, prep, out = sweep["config"], sweep["prep"], sweep["out"]
    lrs, regs = cfg["lr"], cfg["reg"]
    if not args.quiet:
        print(f"training {len(lrs) * len(regs)} configurations of {cfg['model']} on {cfg['data']} at once "
              f"({len(lrs)} lr x {len(regs)} reg, {cfg['epochs']} epochs each) on {jax.devices()[0]}")
    result = train.sweep(prep["model"], prep["split"], lrs, regs, prep["tconfig"], key=prep["key"],
                         loss_ops=prep["loss_ops"])
    summary = runs.sweep_summary(result, lrs, regs, prep["model"], prep["split"])
    if not args.quiet:
        for lr, reg, tr_acc, val_acc in summary["rows"]:
            print(f"lr {lr:e} reg {reg:e} train accuracy: {tr_acc:f} val accuracy: {val_acc:f}")
    best = summary["best"]
    print(f"best validation accuracy achieved during cross-validation: {best['val_accuracy']:f} "
          f"(lr {best['lr']:e} reg {best['reg']:e})")
    print(f"test accuracy of the best configuration: {best['test_accuracy']:f}")
    record = runs.write_sweep(sweep, summary, result, args.argv)
    if not args.quiet:
        print(f"wrote sweep.json and sweep.png to {out} ({record['wall_time_s']:.1f} s, "
              f"training {record['train_time_s']:.1f} s)")
    return 0


# ------------------------------------------------------------------------------------- evaluate


def _cmd_evaluate(args) -> int:
    r = runs.evaluate(args.checkpoint, args.which, data_dir=args.data_dir, download=not args.no_download, name=_flag)
    cfg, matrix, names = r["config"], r["confusion"], r["class_names"]
    print(f"{cfg['model']} on {cfg['data']}, {args.which} weights (epoch {r['epoch']} checkpoint): "
          f"{int(matrix.sum())} test examples")
    print(f"test accuracy: {r['accuracy']:.6f}")
    width = max(5, len(str(matrix.max())) + 1)
    print("confusion matrix (rows: true class, columns: predicted class)")
    print(" " * 6 + "".join(f"{j:>{width}}" for j in range(len(matrix))))
    for i, row in enumerate(matrix):
        print(f"{i:>5} " + "".join(f"{n:>{width}}" for n in row) + (f"   {names[i]}" if names else ""))
    target = r["checkpoint"].parent / "confusion.png"
    plots.plot_confusion(matrix, target, class_names=names,
                         title=f"{cfg['model']} on {cfg['data']}: test accuracy {r['accuracy']:.4f}")
    print(f"wrote {target}")
    return 0


# ------------------------------------------------------------------------------------ gradcheck

_BARS = f"autodiff < {gradcheck.AUTODIFF_BAR:.0e}, numeric < {gradcheck.NUMERIC_BAR:.0e}"


def _cmd_model_gradcheck(args) -> int:
    report = presets.model_gradcheck(args.model, args.seed)
    print(f"gradcheck {args.model}: float64, 4 examples of shape {report['input_shape']}, {report['loss']} loss "
          f"+ L2 (reg 0.1), numeric step {report['step']:g}")
    width = max(len(name) for name in report["errors"]) + len(" max relative error:") + 1
    print(f"{'':<{width}}{'vs autodiff':>13}{'vs numeric':>13}")
    failed = [name for name, e in report["errors"].items() if not gradcheck.within_bars(e)]
    for name, e in report["errors"].items():
        print(f"{name + ' max relative error:':<{width}}{e['autodiff']:>13.2e}{e['numeric']:>13.2e}"
              + ("   FAIL" if name in failed else ""))
    n = len(report["errors"])
    print(f"\n{n - len(failed)}/{n} parameters within the bars ({_BARS})"
          + (f"; over: {', '.join(failed)}" if failed else ""))
    if any(report["errors"][name]["autodiff"] < gradcheck.AUTODIFF_BAR for name in failed):
        print("(manual agrees with autodiff there: a numeric error near 1 usually means a finite-difference "
              "step crossed a relu or max-pool kink; try another --seed)")
    return 1 if failed else 0


def _cmd_gradcheck(args) -> int:
    """One row per layer and loss (or per parameter of ``--model``): max relative error of the manual gradient."""
    if args.model is not None:
        return _cmd_model_gradcheck(args)
    print(f"{'function':<22}{'vs autodiff':>14}{'vs numeric':>14}   bars: {_BARS}")
    worst = gradcheck.check_cases(args.trials, args.seed)  # the rows appear when all are checked
    failed = [name for name, e in worst.items() if not gradcheck.within_bars(e)]
    for name, e in worst.items():
        print(f"{name:<22}{e['autodiff']:>14.2e}{e['numeric']:>14.2e}   {'FAIL' if name in failed else 'ok'}")
    n = len(gradcheck.CASES)
    print(f"\n{n - len(failed)}/{n} within their bars" + (f"; over: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


# --------------------------------------------------------------------------- several processes


def _init_processes(args) -> None:
    """Join JAX's distributed runtime when asked to (before anything touches the backend).

    A data-parallel run in one process gets a runtime of its own, so that it reduces across its
    devices exactly as the same run spread over several processes does (bit-identical results).
    """
    flags = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in flags) or distributed.cluster_detected():
        distributed.initialize(*flags, init_timeout_s=args.init_timeout, name=_flag)
        if distributed.is_multiprocess():
            distributed.relay_runtime_errors()  # losing process 0 then ends this one in one line too
    elif (args.devices or 1) > 1:
        distributed.initialize_local(init_timeout_s=args.init_timeout)


def _cmd_launch(args) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if cmd[:1] != ["train"]:
        raise UsageError(f"launch runs `train` in every process, e.g. launch -n 2 -- train --epochs 2; got {cmd}")
    taken = [flag for flag in ("--coordinator", "--num-processes", "--process-id") if flag in cmd]
    if taken:
        raise UsageError(f"launch sets {', '.join(taken)} itself; drop it from the command")
    return distributed.launch(args.num_processes, cmd)


# ----------------------------------------------------------------------------------------- main


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status.

    0 ok; 1 diverged, gradcheck over its bars, or a bug (an unexpected exception: its traceback
    goes to a file named on stderr); 2 bad input (``InputError``) or a file the system refused.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        return args.run(args)
    except InputError as e:
        print(f"jaxnets: error: {_one_line(e)}", file=sys.stderr)
    except FileNotFoundError as e:
        print(f"jaxnets: error: {_one_line(e.strerror and f'{e.filename}: {e.strerror}' or e)}", file=sys.stderr)
    except KeyboardInterrupt:  # checkpoints are written atomically: the last finished epoch is safe
        print("jaxnets: interrupted (a train run continues with --resume --out DIR)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `jaxnets ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # the system refused a file (permissions, disk full): not a bug
        print(f"jaxnets: error: {_one_line(e)}", file=sys.stderr)
    except Exception as e:  # anything else is a bug in jaxnets, not bad input
        path = files.write_traceback(e)
        print(
            f"jaxnets: internal error (a bug in jaxnets, not in your input): {type(e).__name__}: "
            f"{_one_line(e)[:300]}; full traceback written to {path}",
            file=sys.stderr,
        )
        return EXIT_BUG
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
