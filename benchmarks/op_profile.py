"""Op-level timings behind the benchmark's misses: XLA:CPU against numpy on the same operations.

    python benchmarks/op_profile.py [--reps 9] [--json FILE]
    python benchmarks/op_profile.py --trace W1 jaxnets-auto [--top 20] [--size w6_n=5000]

``--trace WORKLOAD IMPL`` profiles one run of a benchmark implementation (``workloads.py``) with
``jax.profiler`` (XLA:CPU's per-kernel trace events switched on through
``--xla_cpu_enable_xprof_traceme``) and prints the time spent in each compiled kernel, summed
over the run: the per-op breakdown of the library's real compiled epoch.

Every jax operation is timed inside a compiled ``lax.scan`` of ``steps`` iterations (as in
``train.make_epoch_fn``) and reported per iteration; numpy runs the same operation in a Python
loop. Medians of interleaved repetitions. What is measured:

* W1's two matrix products per step (batch 200, 3072 -> 100): the forward ``x @ W`` and the
  weight gradient as ``x^T @ dh`` (D, H) -- what autodiff and ``manual_grads.affine_backward``
  produce for a (D, H) weight -- and as ``dh^T @ x`` (H, D), what they produce for the
  transposed weight ``train.make_epoch_fn`` carries through its scan.
* W3's convolution products (im2col ``(147, 51200)``, 32 filters): forward ``w @ cols`` and the
  weight gradient ``dout @ cols^T``.
* ``lax.conv_general_dilated`` (NCHW, 7x7, pad 3) forward + weight gradient, at the top level of
  a jitted function and inside a scan: XLA:CPU hands the former to its convolution library and
  runs the latter with a generic loop emitter.
* W2's dropout masks (5 x 200 x 100 per step): ``jax.random.bernoulli`` (jax's threefry, which
  on CPU lowers each draw to a rolled ``fori_loop``, a while loop of small kernels inside the
  scan) against ``layers.dropout_forward``'s bits from XLA's fused threefry generator.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def _bench(fns, reps):
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--trace", nargs=2, metavar=("WORKLOAD", "IMPL"), help="per-kernel profile of one run, e.g. W1 jaxnets-auto"
    )
    parser.add_argument("--top", type=int, default=20, help="kernels to list with --trace")
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="with --trace: override one of workloads.sizes(), e.g. w6_n=5000 (a shorter epoch)",
    )
    args = parser.parse_args(argv)
    if args.trace:
        overrides = {}
        for item in args.size:
            name, _, value = item.partition("=")
            if not value.isdigit():
                parser.error(f"--size: expected NAME=INT, got {item!r}")
            overrides[name] = int(value)
        return trace(*args.trace, top=args.top, sizes=overrides)

    import jax
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(0)
    rows = []

    def scan_of(f, steps, *stacked):
        """f over the stacked inputs inside one compiled scan, results accumulated (not reduced)."""
        out = jax.eval_shape(f, *(a[0] for a in stacked))
        body = lambda c, a: (c + f(*a), None)
        fn = jax.jit(lambda *xs: lax.scan(body, jnp.zeros(out.shape, out.dtype), xs)[0])
        return lambda: fn(*stacked).block_until_ready()

    # W1 products
    S, B, D, H = 40, 200, 3072, 100
    xs = rng.standard_normal((S, B, D), dtype=np.float32)
    hs = rng.standard_normal((S, B, H), dtype=np.float32)
    W = rng.standard_normal((D, H), dtype=np.float32)
    jx, jh, jW = jnp.asarray(xs), jnp.asarray(hs), jnp.asarray(W)
    f = 2 * B * D * H
    t = _bench(
        {
            "xla fwd x @ W": scan_of(lambda x: x @ jW, S, jx),
            "xla dW x^T @ dh": scan_of(lambda x, h: x.T @ h, S, jx, jh),
            "xla dW^T dh^T @ x (carried layout)": scan_of(lambda x, h: h.T @ x, S, jx, jh),
            "numpy fwd x @ W": lambda: [xs[i] @ W for i in range(S)],
            "numpy dW x^T @ dh": lambda: [xs[i].T @ hs[i] for i in range(S)],
        },
        args.reps,
    )
    rows += [("W1", k, v / S, f / (v / S) / 1e9) for k, v in t.items()]

    # W3 conv products
    S3, F, CK, L = 4, 32, 147, 51200
    cols = rng.standard_normal((S3, CK, L), dtype=np.float32)
    dout = rng.standard_normal((S3, F, L), dtype=np.float32)
    w = rng.standard_normal((F, CK), dtype=np.float32)
    jc, jd, jw = jnp.asarray(cols), jnp.asarray(dout), jnp.asarray(w)
    f = 2 * F * CK * L
    t = _bench(
        {
            "xla conv fwd w @ cols": scan_of(lambda c: jw @ c, S3, jc),
            "xla conv dw dout @ cols^T": scan_of(lambda d, c: d @ c.T, S3, jd, jc),
            "numpy conv fwd w @ cols": lambda: [w @ cols[i] for i in range(S3)],
            "numpy conv dw dout @ cols^T": lambda: [dout[i] @ cols[i].T for i in range(S3)],
        },
        args.reps,
    )
    rows += [("W3", k, v / S3, f / (v / S3) / 1e9) for k, v in t.items()]

    # lax.conv top level vs inside a scan
    x = jnp.asarray(rng.standard_normal((2, 50, 3, 32, 32), dtype=np.float32))
    wk = jnp.asarray(rng.standard_normal((32, 3, 7, 7), dtype=np.float32))

    def conv_loss(wk, xb):
        out = lax.conv_general_dilated(xb, wk, (1, 1), ((3, 3), (3, 3)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return jnp.sum(out * out)

    top = jax.jit(jax.grad(conv_loss))
    looped = jax.jit(
        lambda wk, xs: lax.scan(lambda c, xb: (c + jax.grad(conv_loss)(wk, xb), None), jnp.zeros_like(wk), xs)[0]
    )
    f = 2 * 2 * 50 * 32 * 32 * 32 * 147
    t = _bench(
        {
            "lax.conv fwd+dw, top level": lambda: top(wk, x[0]).block_until_ready(),
            "lax.conv fwd+dw, inside scan": lambda: looped(wk, x[:1]).block_until_ready(),
        },
        max(2, args.reps // 3),
    )
    rows += [("W3", k, v, f / v / 1e9) for k, v in t.items()]

    # dropout masks
    S2 = 100
    keys = jax.random.split(jax.random.key(0), S2)

    from jaxnets import layers

    def masks(draw):
        def five(k):
            ks = jax.random.split(k, 5)
            return sum(jnp.sum(draw(ks[i])) for i in range(5))

        fn = jax.jit(lambda keys: lax.scan(lambda c, k: (c + five(k), None), 0, keys)[0])
        return lambda: fn(keys).block_until_ready()

    ones = jnp.ones((200, 100))
    npr = np.random.default_rng(0)
    t = _bench(
        {
            "jax.random.bernoulli: 5 dropout masks 200x100": masks(lambda k: jax.random.bernoulli(k, 0.5, (200, 100))),
            "layers.dropout_forward (XLA threefry): 5 masks 200x100": masks(
                lambda k: layers.dropout_forward(ones, k, 0.5)[1] > 0
            ),
            "numpy PCG64: 5 dropout masks 200x100": lambda: [
                [npr.random((200, 100), dtype=np.float32) >= 0.5 for _ in range(5)] for _ in range(S2)
            ],
        },
        args.reps,
    )
    rows += [("W2", k, v / S2, None) for k, v in t.items()]

    print(
        f"op timings (medians of {args.reps}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, jax {jax.__version__}, "
        f"numpy {np.__version__}, {os.cpu_count()} CPUs)\n"
    )
    print("| workload | operation | time per call | GFLOP/s |")
    print("| --- | --- | ---: | ---: |")
    for wl, name, sec, gf in rows:
        print(f"| {wl} | {name} | {sec * 1e3:.3f} ms | {'' if gf is None else f'{gf:.0f}'} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"workload": a, "op": b, "seconds": c, "gflops": d} for a, b, c, d in rows], fh, indent=1)


def trace(workload: str, impl_name: str, top: int = 20, sizes=None):
    """Print the kernels of one profiled run of ``impl_name`` in ``workload``, longest first."""
    flag = "--xla_cpu_enable_xprof_traceme=true"
    if flag not in os.environ.get("XLA_FLAGS", ""):  # must be set before jax starts: re-run ourselves
        env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip())
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    import collections
    import glob
    import gzip
    import tempfile

    import jax

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workloads

    wl = workloads.build(workload, quick=False, torch_ok=False, sizes=sizes)
    impls = {i.name: i for i in wl.impls}
    if impl_name not in impls:
        raise SystemExit(
            f"op_profile: error: {workload} has no implementation {impl_name!r}; choose from {sorted(impls)}"
        )
    impl = impls[impl_name]
    state = impl.setup()
    if impl.compile:
        state = impl.compile(state)
    state = impl.run(state)  # warm-up
    with tempfile.TemporaryDirectory() as out:
        with jax.profiler.trace(out, create_perfetto_trace=True):
            t0 = time.perf_counter()
            state = impl.run(state)
            wall = time.perf_counter() - t0
        (path,) = glob.glob(f"{out}/**/*.trace.json.gz", recursive=True)
        with gzip.open(path) as fh:
            events = json.load(fh)["traceEvents"]
    total, count = collections.Counter(), collections.Counter()
    skip = ("$", "ThunkExecutor", "SlinkyThreadPool", "PjitFunction", "CommonPjRt", "while")
    for e in events:  # XLA kernels; not Python frames, runtime spans, or while loops (they contain kernels)
        if e.get("ph") == "X" and not e["name"].startswith(skip):
            total[e["name"]] += e["dur"]
            count[e["name"]] += 1
    hlo = state["fn"].as_text() if isinstance(state, dict) and hasattr(state.get("fn"), "as_text") else ""
    print(f"{workload} {impl_name}: one run {wall * 1e3:.1f} ms under the profiler; kernels, summed over the run:\n")
    print("| kernel | what (compiled HLO) | calls | total | per call |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, us in total.most_common(top):
        kernel = _describe_kernel(hlo, name)
        print(f"| {name} | {kernel} | {count[name]} | {us / 1e3:.1f} ms | {us / count[name]:.1f} us |")


def _describe_kernel(hlo: str, name: str) -> str:
    """``result-type opcode`` of instruction ``name`` in ``hlo``; for a fusion, the root op inside it."""
    import re

    m = re.search(rf"%{re.escape(name)} = (\([^)]*\)|\S+) ([\w-]+)\(([^)]*)\)(.*)", hlo)
    if not m:
        return ""
    shape, op, operands, rest = m.groups()
    called = re.search(r"calls=%([\w.-]+)", rest)
    if op == "fusion" and called:
        body = re.search(rf"%{re.escape(called.group(1))} \(.*?\n}}", hlo, re.S)
        root = re.search(r"ROOT %\S+ = (\S+) ([\w-]+)\(", body.group(0)) if body else None
        if root:
            op = f"fusion, root {root.group(2)}"
    if op in ("dot", "fusion, root dot"):
        dims = re.findall(
            r"(lhs_contracting_dims=\{[\d,]*\}, rhs_contracting_dims=\{[\d,]*\})",
            rest + (body.group(0) if op != "dot" and body else ""),
        )
        op += f" ({dims[0]})" if dims else ""
    return f"`{shape} {op}`"


if __name__ == "__main__":
    main()
