"""A fitted scikit-learn IsolationForest pipeline compiled to flat numpy arrays: exact, fast scores.

Contract: `CompiledForest.risk(X)` equals `-model.score_samples(X)` of scikit-learn 1.9 (the
anomaly score 2**(-E[h(x)] / c(max_samples)), in (0, 1]) within 1e-9, and in practice bit for
bit: the preprocessing repeats scikit-learn's float64 operations, rows are cast to float32
before the trees as scikit-learn does, each tree contributes scikit-learn's own per-leaf
`depth + c(n_node_samples) - 1` and the trees are summed in scikit-learn's order.

Speed: scikit-learn spends milliseconds per call on input validation and a Python loop over
the trees. Here one row takes ~10 us and a batch ~1-2.5 us per row with numba's kernels,
2.5-4x more with the pure-numpy fallback (how the trees are walked: `model.forest_kernels`).
`python -m model.bench` measures them against scikit-learn. Instances are immutable after
compilation and safe to share between threads; the numba walks release the GIL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

# scikit-learn ships no type stubs; the fitted objects are inspected through Any.
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model.forest_kernels import (
    HAVE_NUMBA,
    LEAF,
    MAX_PADDED_NODES,
    Floats,
    Floats32,
    HeapTables,
    Indices,
    LevelTables,
    Nodes,
    NodeTable,
)

Kernel = Literal["numba", "numpy"]
DEFAULT_KERNEL: Kernel = "numba" if HAVE_NUMBA else "numpy"


class UnsupportedModel(ValueError):
    """The model has a step or attribute this evaluator cannot reproduce exactly."""

    code = "model_unsupported"


@dataclass(frozen=True)
class _Preprocess:
    """The pipeline's transformers as elementwise float64 operations on the input columns.

    Columns an imputer drops (no statistic) stay in place but are never read by a tree, so every
    operation keeps the input width. When NaN can reach the trees (no imputer), the float32 row
    is doubled: the first copy has NaN -> -inf, the second NaN -> +inf, and a split whose
    `missing_go_to_left` is false reads the second copy, so `x > threshold` sends NaN where
    scikit-learn does without a per-node test.
    """

    ops: tuple[tuple[str, Floats], ...]  # ("fill" | "subtract" | "divide", one value per column)
    columns: Indices  # input column of each feature the forest sees
    split_nan: bool
    width: int  # columns of the prepared float32 row: the input's, twice when split_nan

    def apply(self, X: Floats) -> Floats32:
        for op, values in self.ops:
            if op == "fill":
                X = np.where(np.isnan(X), values, X)
            elif op == "subtract":
                X = X - values
            else:
                X = X / values
        # scikit-learn's validate_data casts to float32 (round to nearest) before the trees.
        # Like there, a value beyond float32's range becomes inf with a RuntimeWarning.
        x32 = X.astype(np.float32, order="C")
        if not self.split_nan:
            return x32
        n_in = x32.shape[1]
        doubled = np.empty((x32.shape[0], 2 * n_in), np.float32)
        np.fmax(x32, -np.inf, out=doubled[:, :n_in])
        np.fmin(x32, np.inf, out=doubled[:, n_in:])
        return doubled


def _is_passthrough(step: Any) -> bool:
    return step is None or (isinstance(step, str) and step == "passthrough")


def _compile_steps(steps: list[tuple[str, Any]], n_in: int) -> _Preprocess:
    ops: list[tuple[str, Floats]] = []
    live = np.arange(n_in)  # input column behind each column the next step sees
    may_be_nan = np.ones(n_in, bool)
    for name, step in steps:
        if _is_passthrough(step):
            continue
        if not hasattr(step, "n_features_in_"):
            raise UnsupportedModel(f"step {name!r} ({type(step).__name__}) is not fitted")
        if isinstance(step, SimpleImputer):
            missing = step.missing_values
            if not (isinstance(missing, float) and math.isnan(missing)) or step.add_indicator:
                raise UnsupportedModel(
                    f"step {name!r}: only SimpleImputer(missing_values=np.nan, "
                    "add_indicator=False) can be compiled")
            stats = np.asarray(step.statistics_, np.float64)
            fill = np.full(n_in, np.nan)
            fill[live] = stats
            ops.append(("fill", fill))
            may_be_nan[live] = np.isnan(stats)
            if not step.keep_empty_features:  # scikit-learn drops columns it cannot fill
                live = live[~np.isnan(stats)]
        elif isinstance(step, StandardScaler):
            if step.with_mean:
                centre = np.zeros(n_in)
                centre[live] = step.mean_
                ops.append(("subtract", centre))
            if step.with_std:
                scale = np.ones(n_in)
                scale[live] = step.scale_
                ops.append(("divide", scale))
        else:
            raise UnsupportedModel(
                f"step {name!r} ({type(step).__name__}) cannot be compiled: only "
                "SimpleImputer, StandardScaler and 'passthrough' are supported")
    split_nan = bool(may_be_nan[live].any())
    return _Preprocess(tuple(ops), live, split_nan, 2 * n_in if split_nan else n_in)


def _floor_float32(values: Floats) -> Floats32:
    """The largest float32 <= each value: for a float32 x, x <= t exactly when x <= floor32(t)."""
    with np.errstate(over="ignore"):
        rounded = values.astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def _flatten(forest: Any, prep: _Preprocess) -> Nodes:
    for attribute in ("estimators_", "_decision_path_lengths",
                      "_average_path_length_per_tree", "_max_features", "_max_samples"):
        if not hasattr(forest, attribute):
            raise UnsupportedModel(
                f"IsolationForest has no {attribute}: not fitted, or fitted by another "
                "scikit-learn version")
    if forest.n_features_in_ != len(prep.columns):
        raise UnsupportedModel(
            f"IsolationForest expects {forest.n_features_in_} features, the steps before it "
            f"give {len(prep.columns)}")
    # scikit-learn only indexes X[:, estimators_features_[t]] when features were subsampled.
    subsample = forest._max_features != forest.n_features_in_
    n_in = prep.width // 2  # offset of the NaN -> +inf copy (used only when split_nan)
    parts: list[tuple[Any, ...]] = []
    offset = 0
    for t, tree in enumerate(forest.estimators_):
        nodes = tree.tree_
        split = nodes.children_left != LEAF
        if not np.isfinite(nodes.threshold[split]).all():
            raise UnsupportedModel(f"tree {t} has a non-finite split threshold")
        feature = np.where(split, nodes.feature, 0)
        if subsample:
            feature = np.asarray(forest.estimators_features_[t])[feature]
        column = prep.columns[feature]
        if prep.split_nan:  # NaN goes right: read the NaN -> +inf copy of the row
            column = column + (split & ~nodes.missing_go_to_left.astype(bool)) * n_in
        # The exact expression scikit-learn adds per tree in _parallel_compute_tree_depths.
        path_length = (forest._decision_path_lengths[t]
                       + forest._average_path_length_per_tree[t] - 1.0)
        parts.append((
            column, np.where(split, _floor_float32(nodes.threshold), np.float32(np.inf)),
            np.where(split, nodes.children_left + offset, LEAF),
            np.where(split, nodes.children_right + offset, LEAF),
            nodes.n_node_samples.astype(np.float64), path_length))
        offset += nodes.node_count
    columns = zip(*parts, strict=True)
    column, threshold, left, right, n_samples, path_length = (np.concatenate(c) for c in columns)
    roots = np.cumsum([0] + [tree.tree_.node_count for tree in forest.estimators_[:-1]])
    depth = max(tree.tree_.max_depth for tree in forest.estimators_)
    return Nodes(column.astype(np.intp), threshold.astype(np.float32), left.astype(np.intp),
                 right.astype(np.intp), n_samples, path_length, roots.astype(np.intp), depth)


class CompiledForest:
    """A fitted IsolationForest pipeline as flat arrays; see the module docstring.

    `kernel` picks the tree walks: "numba" (the default when numba is importable) or the
    pure-numpy "numpy"; both give the same scores bit for bit.
    """

    def __init__(self, prep: _Preprocess, nodes: Nodes, n_features: int, n_trees: int,
                 denominator: float, kernel: Kernel = DEFAULT_KERNEL) -> None:
        if kernel == "numba" and not HAVE_NUMBA:
            raise ValueError("kernel 'numba' needs the numba package, which is not installed")
        self.n_features = n_features
        self.n_trees = n_trees
        self.kernel = kernel
        self._prep = prep
        if n_trees << (nodes.depth + 1) > MAX_PADDED_NODES:
            raise UnsupportedModel(
                f"{n_trees} trees of depth {nodes.depth} are too large to pad "
                f"(> {MAX_PADDED_NODES} nodes): lower max_samples or n_estimators")
        self._levels = LevelTables(nodes, n_trees)  # also serves top_features
        self._single: NodeTable | None = None
        self._heap: HeapTables | None = None
        if kernel == "numba":
            self._heap = HeapTables(self._levels)
            self._heap.warm_up(prep.width)
        else:
            self._single = NodeTable(nodes, prep.width)
        self._denominator = denominator

    @classmethod
    def from_pipeline(cls, model: Any, *, kernel: Kernel = DEFAULT_KERNEL) -> CompiledForest:
        """Compile a fitted Pipeline([...transformers, IsolationForest]) or a bare forest.

        Transformers may be SimpleImputer (missing_values=np.nan, any strategy), StandardScaler
        or 'passthrough'/None; anything else raises UnsupportedModel naming the step.
        """
        steps = list(model.steps) if isinstance(model, Pipeline) else [("model", model)]
        name, forest = steps[-1]
        if not isinstance(forest, IsolationForest):
            raise UnsupportedModel(
                f"last step {name!r} is {type(forest).__name__}, not an IsolationForest")
        first = next(step for _, step in steps if not _is_passthrough(step))
        if not hasattr(first, "n_features_in_"):
            raise UnsupportedModel(f"{type(first).__name__} is not fitted")
        prep = _compile_steps(steps[:-1], int(first.n_features_in_))
        nodes = _flatten(forest, prep)
        n_trees = len(forest.estimators_)
        # The exact denominator of IsolationForest._compute_score_samples.
        denominator = float(n_trees * _average_path_length([forest._max_samples])[0])
        return cls(prep, nodes, int(first.n_features_in_), n_trees, denominator, kernel)

    def _prepare(self, X: Floats) -> Floats32:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected an array of shape (n, {self.n_features}), got {X.shape}")
        return self._prep.apply(X)

    def risk(self, X: Floats) -> Floats:
        """The anomaly score 2**(-E[h(x)] / c(max_samples)) in (0, 1] of each row of X
        (float64, (n, n_features), NaN allowed where an imputer step exists): equal to
        -model.score_samples(X) within 1e-9."""
        rows = self._prepare(X)
        n_rows, chunk = len(rows), self._levels.chunk_rows
        if n_rows <= chunk:
            depths = self._path_length_sums(rows)
        else:
            depths = np.concatenate([self._path_length_sums(rows[i:i + chunk])
                                     for i in range(0, n_rows, chunk)])
        if self._denominator == 0:  # max_samples == 1: scikit-learn's ratio defaults to 1
            return np.full(n_rows, 0.5)
        return np.power(2.0, -(depths / self._denominator))

    def _path_length_sums(self, rows: Floats32) -> Floats:
        if self._heap is not None:
            return self._heap.path_length_sums(rows)
        if self._single is not None and len(rows) == 1:
            return self._single.path_length_sum(rows[0])
        return self._levels.path_length_sums(rows)

    def top_features(self, X: Floats, k: int = 3) -> list[list[int]]:
        """For each row, the k input features that did most to isolate it, most important first.

        Path-based attribution in the spirit of DIFFI: in every tree, each split on the row's
        path credits its feature with log2(n_parent / n_child), the bits of training sample it
        cut away around the row (a split that sends the row to a near-empty child isolates it,
        one it shares with most samples does not); the tree's credits are weighted by
        1 / max(h, 1), h the tree's path length for the row, so trees that isolate the row early
        count more. Credits are summed over trees; ties go to the lower feature index.
        Deterministic; ~0.1 ms for one row, less per row in a batch: meant for flagged rows.
        """
        if not 1 <= k <= self.n_features:
            raise ValueError(f"k must be between 1 and {self.n_features}, got {k}")
        rows = self._prepare(X)
        if len(rows) == 0:
            return []
        chunk = self._levels.chunk_rows
        scores = np.concatenate([self._levels.attribution(rows[i:i + chunk], self.n_features)
                                 for i in range(0, len(rows), chunk)])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[int(j) for j in row] for row in order]
