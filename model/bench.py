"""Benchmark: CompiledForest.risk against scikit-learn's score_samples on the same fitted pipeline.

Run as `python -m model.bench [--trees 128] [--features 12] [--repeat 2000]`. Fits a
SimpleImputer + IsolationForest(max_samples=256) pipeline on synthetic data, checks that the
compiled scores equal scikit-learn's, then times one row, 64 rows and 1,024 rows per call
(median and p99 over many calls, each call on different rows) and says whether the targets
hold: <= 50 us for one row, <= 5 us per row in batches of 64. The targets are judged on the
default kernel (numba when installed); the pure-numpy fallback is timed in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from model.forest import DEFAULT_KERNEL, CompiledForest

ONE_ROW_TARGET_US = 50.0
BATCH_64_TARGET_US_PER_ROW = 5.0


def make_data(n_rows: int, n_features: int, seed: int) -> NDArray[np.float64]:
    """Correlated normal features with a few outliers and 2 % missing values."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
    X: NDArray[np.float64] = rng.normal(size=(n_rows, n_features)) @ mixing
    outliers = rng.random(n_rows) < 0.01
    X[outliers] += rng.normal(scale=8.0, size=(int(outliers.sum()), n_features))
    X[rng.random(X.shape) < 0.02] = np.nan
    return X


def fit(n_trees: int, n_features: int) -> Pipeline:
    model = Pipeline([
        ("impute", SimpleImputer(strategy="median")),
        ("forest", IsolationForest(n_estimators=n_trees, max_samples=256, random_state=7)),
    ])
    return model.fit(make_data(20_000, n_features, seed=1))


def time_calls(call: Callable[[np.ndarray], object], pool: np.ndarray, batch: int,
               repeat: int) -> tuple[float, float]:
    """Median and p99 wall time of one call, in microseconds, cycling through `pool`."""
    starts = range(0, len(pool) - batch + 1, batch)
    batches = [pool[i:i + batch] for i in starts]
    for rows in batches[:10]:  # warm caches and lazily built layouts
        call(rows)
    elapsed_ns = np.empty(repeat)
    for i in range(repeat):
        rows = batches[i % len(batches)]
        started = time.perf_counter_ns()
        call(rows)
        elapsed_ns[i] = time.perf_counter_ns() - started
    median_us, p99_us = np.percentile(elapsed_ns, [50, 99]) / 1e3
    return float(median_us), float(p99_us)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=128)
    parser.add_argument("--features", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=2000,
                        help="calls timed per compiled case (scikit-learn gets 1/20 of them)")
    options = parser.parse_args(argv)

    model = fit(options.trees, options.features)
    compiled_at = time.perf_counter()
    forest = CompiledForest.from_pipeline(model)  # numba: includes compiling or loading walks
    compile_ms = (time.perf_counter() - compiled_at) * 1e3
    forests = [forest]
    if forest.kernel != "numpy":
        forests.append(CompiledForest.from_pipeline(model, kernel="numpy"))
    pool = make_data(16_384, options.features, seed=2)
    expected = -model.score_samples(pool)
    difference = 0.0
    for compiled in forests:
        one_by_one = np.concatenate([compiled.risk(pool[i:i + 1]) for i in range(256)])
        difference = max(difference, np.abs(compiled.risk(pool) - expected).max(),
                         np.abs(one_by_one - expected[:256]).max())
    print(f"{options.trees} trees, {options.features} features, max_samples=256; "
          f"kernel {forest.kernel} (default {DEFAULT_KERNEL}), compiled in {compile_ms:.0f} ms; "
          f"max |risk + score_samples| = {difference:.1e}")

    sklearn_repeat = max(20, options.repeat // 20)
    chosen = f"CompiledForest.risk [{forest.kernel}]"
    cases = [
        ("scikit-learn score_samples", model.score_samples, 1, sklearn_repeat),
        ("scikit-learn score_samples", model.score_samples, 64, sklearn_repeat),
        (chosen, forest.risk, 1, options.repeat * 5),
        (chosen, forest.risk, 64, options.repeat),
        (chosen, forest.risk, 1024, max(20, options.repeat // 10)),
    ]
    for fallback in forests[1:]:
        cases += [(f"CompiledForest.risk [{fallback.kernel}]", fallback.risk, batch, repeat)
                  for batch, repeat in [(1, options.repeat * 5), (64, options.repeat)]]
    print(f"{'':28s} {'rows':>5s} {'median us':>10s} {'p99 us':>9s} {'us/row':>8s}")
    measured: dict[tuple[str, int], float] = {}
    for label, call, batch, repeat in cases:
        median_us, p99_us = time_calls(call, pool, batch, repeat)
        measured[label, batch] = median_us
        print(f"{label:28s} {batch:5d} {median_us:10.1f} {p99_us:9.1f} {median_us / batch:8.2f}")

    one_row = measured[chosen, 1]
    per_row_64 = measured[chosen, 64] / 64
    print(f"speed-up over scikit-learn in this run: "
          f"{measured['scikit-learn score_samples', 1] / one_row:.0f}x at 1 row, "
          f"{measured['scikit-learn score_samples', 64] / 64 / per_row_64:.0f}x at 64 rows")
    for fallback in forests[1:]:
        slow = f"CompiledForest.risk [{fallback.kernel}]"
        print(f"{forest.kernel} over {fallback.kernel} in this run: "
              f"{measured[slow, 1] / one_row:.1f}x at 1 row, "
              f"{measured[slow, 64] / 64 / per_row_64:.1f}x at 64 rows")
    one_ok, batch_ok = one_row <= ONE_ROW_TARGET_US, per_row_64 <= BATCH_64_TARGET_US_PER_ROW
    print(f"target one row <= {ONE_ROW_TARGET_US:.0f} us: {'met' if one_ok else 'MISSED'} "
          f"({one_row:.1f} us)")
    print(f"target 64 rows <= {BATCH_64_TARGET_US_PER_ROW:.0f} us/row: "
          f"{'met' if batch_ok else 'MISSED'} ({per_row_64:.2f} us/row)")
    return 0 if one_ok and batch_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
