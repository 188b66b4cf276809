"""The ``jaxnets`` command."""

from __future__ import annotations

import argparse
import sys

from jaxnets import gradcheck


def _cmd_gradcheck(args) -> int:
    """One row per layer and loss: max relative error of the manual gradient."""
    print(f"{'function':<22}{'vs autodiff':>14}{'vs numeric':>14}   bars: autodiff < "
          f"{gradcheck.AUTODIFF_BAR:.0e}, numeric < {gradcheck.NUMERIC_BAR:.0e}")
    failed = []
    for case in gradcheck.CASES:
        worst = {"autodiff": 0.0, "numeric": 0.0}
        for seed in range(args.seed, args.seed + args.trials):
            errors = gradcheck.check_case(case, seed)
            worst = {k: max(worst[k], errors[k]) for k in worst}
        ok = worst["autodiff"] < gradcheck.AUTODIFF_BAR and worst["numeric"] < gradcheck.NUMERIC_BAR
        failed += [] if ok else [case.name]
        print(f"{case.name:<22}{worst['autodiff']:>14.2e}{worst['numeric']:>14.2e}   {'ok' if ok else 'FAIL'}")
    print(f"\n{len(gradcheck.CASES) - len(failed)}/{len(gradcheck.CASES)} within their bars"
          + (f"; over: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxnets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gc = sub.add_parser("gradcheck", help="check every hand-derived backward against autodiff and numeric gradients")
    gc.add_argument("--trials", type=int, default=2, help="random shapes per function (default 2)")
    gc.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    gc.set_defaults(run=_cmd_gradcheck)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
