"""A fitted scikit-learn IsolationForest pipeline compiled to flat numpy arrays: exact, fast scores.

Contract: `CompiledForest.risk(X)` equals `-model.score_samples(X)` of scikit-learn 1.9 (the
anomaly score 2**(-E[h(x)] / c(max_samples)), in (0, 1]) within 1e-9, and in practice bit for
bit: the preprocessing repeats scikit-learn's float64 operations, rows are cast to float32
before the trees as scikit-learn does, each tree contributes scikit-learn's own per-leaf
`depth + c(n_node_samples) - 1` and the trees are summed in scikit-learn's order.

Speed: scikit-learn spends milliseconds per call on input validation and a Python loop over
the trees. With numba installed, two compiled walks over heap-ordered padded trees
(`_HeapTables`) score one row in ~10 us and a batch in ~1-2.5 us per row (128-200 trees),
2.5-4x faster than the pure-numpy kernel kept as the fallback without numba: one row as a
few vectorised passes over all nodes (`_NodeTable`, ~30 us) and a batch as `depth`
vectorised steps over (trees x rows) (`_LevelTables`, ~4-7 us per row). `python -m
model.bench` measures them against scikit-learn. Instances are immutable after compilation
and safe to share between threads; the numba walks release the GIL.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

# scikit-learn ships no type stubs; the fitted objects are inspected through Any.
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # the numpy kernels below give the same scores, 2.5-4x slower
    HAVE_NUMBA = False

Floats = NDArray[np.float64]
Floats32 = NDArray[np.float32]
Indices = NDArray[np.intp]
Indices32 = NDArray[np.int32]

# A batch is walked in chunks of about this many (tree, row) cells: 128 trees x 512 rows
# measured fastest per row here (smaller chunks pay numpy's per-call overhead more often,
# larger ones fall out of cache).
CHUNK_CELLS = 1 << 16
# Padding every tree to the forest's depth costs trees * 2**(depth + 1) table entries
# (~20 bytes each); 2**21 allows e.g. 256 trees of depth 12 (max_samples 4096) in ~40 MB.
MAX_PADDED_NODES = 1 << 21
_LEAF = -1  # sklearn's _TREE_LEAF in children_left / children_right

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


@dataclass(frozen=True)
class _Nodes:
    """Every node of every tree, concatenated: node i of tree t has key offset[t] + i."""

    column: Indices  # column of the prepared float32 row the split reads; 0 on leaves
    threshold: Floats32  # floor32 of scikit-learn's threshold; +inf on leaves (always left)
    left: Indices  # key of the left child, _LEAF on leaves
    right: Indices
    n_samples: Floats  # training samples that reached the node (for attribution)
    path_length: Floats  # scikit-learn's per-tree h at this node, read at leaves
    roots: Indices
    depth: int  # deepest leaf, in edges


def _flatten(forest: Any, prep: _Preprocess) -> _Nodes:
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
        split = nodes.children_left != _LEAF
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
            np.where(split, nodes.children_left + offset, _LEAF),
            np.where(split, nodes.children_right + offset, _LEAF),
            nodes.n_node_samples.astype(np.float64), path_length))
        offset += nodes.node_count
    columns = zip(*parts, strict=True)
    column, threshold, left, right, n_samples, path_length = (np.concatenate(c) for c in columns)
    roots = np.cumsum([0] + [tree.tree_.node_count for tree in forest.estimators_[:-1]])
    depth = max(tree.tree_.max_depth for tree in forest.estimators_)
    return _Nodes(column.astype(np.intp), threshold.astype(np.float32), left.astype(np.intp),
                  right.astype(np.intp), n_samples, path_length, roots.astype(np.intp), depth)


class _Scratch(threading.local):
    """Per-thread successor array: the internal part is rewritten per row, leaves point to
    themselves so that following successors `depth` times ends on every path's leaf."""

    def __init__(self, n_internal: int, n_leaves: int) -> None:
        self.successor = np.arange(n_internal + n_leaves, dtype=np.intp)
        self.internal = self.successor[:n_internal]


class _NodeTable:
    """One row: decide every split of the forest at once, then follow the decisions.

    With one row, the cost of the (trees x depth) walk is numpy's per-call overhead, not
    arithmetic, so a few passes over all internal nodes (~8k for 128 trees of 256 samples)
    beat eight gather-compare-advance steps. Internal nodes are sorted by the column they
    read so that the row's value at every split is `np.repeat(row, counts)`, cheaper than a
    gather.
    """

    def __init__(self, nodes: _Nodes, width: int) -> None:
        internal = np.flatnonzero(nodes.left != _LEAF)
        internal = internal[np.argsort(nodes.column[internal], kind="stable")]
        leaves = np.flatnonzero(nodes.left == _LEAF)
        n_internal = len(internal)
        ident = np.empty(len(nodes.left), np.intp)  # key -> position in these tables
        ident[internal] = np.arange(n_internal)
        ident[leaves] = n_internal + np.arange(len(leaves))
        self.counts = np.bincount(nodes.column[internal], minlength=width)
        self.threshold = nodes.threshold[internal]
        self.left = ident[nodes.left[internal]]
        self.to_right = ident[nodes.right[internal]] - self.left
        self.roots = ident[nodes.roots]
        self.path_length = np.zeros(n_internal + len(leaves))
        self.path_length[n_internal:] = nodes.path_length[leaves]
        self.depth = nodes.depth
        self._scratch = _Scratch(n_internal, len(leaves))

    def path_length_sum(self, row: Floats32) -> Floats:
        """Sum over the trees of h(row), as an array of one element."""
        scratch = self._scratch
        right = np.repeat(row, self.counts) > self.threshold
        np.add(self.left, right * self.to_right, out=scratch.internal)
        successor = scratch.successor
        node = self.roots
        for _ in range(self.depth):
            node = successor[node]
        # cumsum adds in tree order like scikit-learn; a plain sum would add pairwise.
        return np.cumsum(self.path_length[node])[-1:]


class _Layout(NamedTuple):
    """Per batch size: walk start positions, row offsets into the flattened rows, and the
    first level's reads and thresholds (each tree's root)."""

    start: Indices
    row_offset: Indices
    root_read: Indices
    root_threshold: Floats32 | None  # None when every tree is a single leaf


class _LevelTables:
    """Batches: every tree padded to a complete binary tree of the forest's depth.

    Level l holds the trees' nodes at depth l side by side (tree t, position j at t * 2**l + j),
    so the child of position p is 2p + (x > threshold) and a batch advances with a handful
    of vectorised operations per level over (trees x rows). A leaf above the bottom becomes a
    split with threshold +inf (always left) and its value is stored at its leftmost
    descendant in the bottom level. Walk positions are laid out tree-major so that the final
    reduction adds the trees in scikit-learn's order.
    """

    def __init__(self, nodes: _Nodes, n_trees: int) -> None:
        depth = nodes.depth
        if n_trees << (depth + 1) > MAX_PADDED_NODES:
            raise UnsupportedModel(
                f"{n_trees} trees of depth {depth} are too large to pad "
                f"(> {MAX_PADDED_NODES} nodes): lower max_samples or n_estimators")
        self.columns: list[Indices] = []
        self.thresholds: list[Floats32] = []
        self.credits: list[Floats] = []  # per level >= 1: isolation credit of the edge in
        self.leaf_path_length = np.zeros(n_trees << depth)
        frontier, position = nodes.roots, np.arange(n_trees)
        for level in range(depth + 1):
            split = nodes.left[frontier] != _LEAF
            leaves = frontier[~split]
            self.leaf_path_length[position[~split] << (depth - level)] = nodes.path_length[leaves]
            if level == depth:
                break
            column = np.zeros(n_trees << level, np.intp)
            threshold = np.full(n_trees << level, np.inf, np.float32)
            parents, position = frontier[split], position[split]
            column[position] = nodes.column[parents]
            threshold[position] = nodes.threshold[parents]
            frontier = np.concatenate((nodes.left[parents], nodes.right[parents]))
            position = np.concatenate((2 * position, 2 * position + 1))
            credit = np.zeros(n_trees << (level + 1))
            credit[position] = np.log2(np.tile(nodes.n_samples[parents], 2)
                                       / nodes.n_samples[frontier])
            self.columns.append(column)
            self.thresholds.append(threshold)
            self.credits.append(credit)
        self.n_trees = n_trees
        self.chunk_rows = max(16, CHUNK_CELLS // n_trees)
        self._layouts: dict[int, _Layout] = {}

    def _layout(self, n_rows: int, width: int) -> _Layout:
        layout = self._layouts.get(n_rows)
        if layout is None:
            start = np.repeat(np.arange(self.n_trees), n_rows)
            row_offset = np.tile(np.arange(n_rows) * width, self.n_trees)
            root_read = (self.columns[0].take(start) + row_offset) if self.columns else start
            root_threshold = self.thresholds[0].take(start) if self.thresholds else None
            layout = _Layout(start, row_offset, root_read, root_threshold)
            if len(self._layouts) >= 8:  # the chunk size and a few batch sizes; rebuilding
                self._layouts = {}  # one costs about 5 % of its batch
            self._layouts[n_rows] = layout
        return layout

    def path_length_sums(self, rows: Floats32) -> Floats:
        """Sum over the trees of h(row) for each row of a C-contiguous (rows, width) array."""
        n_rows, width = rows.shape
        layout = self._layout(n_rows, width)
        flat = rows.ravel()
        position = layout.start
        if layout.root_threshold is not None:
            # Level 0 reads each tree's root, known per batch size: saves ~7 % of a batch.
            right = flat.take(layout.root_read) > layout.root_threshold
            position = np.add(position, position)
            position += right
        for column, threshold in zip(self.columns[1:], self.thresholds[1:], strict=True):
            at = column.take(position)
            at += layout.row_offset
            right = flat.take(at) > threshold.take(position)
            position += position
            position += right
        leaf = self.leaf_path_length.take(position).reshape(self.n_trees, n_rows)
        # Reducing a C-ordered (trees, rows) array over axis 0 adds tree by tree, in
        # scikit-learn's order (a 1-D sum would add pairwise).
        sums: Floats = np.add.reduce(leaf, axis=0)
        return sums

    def attribution(self, rows: Floats32, n_features: int) -> Floats:
        """Per row and input feature: sum over trees of the isolation credit of the splits on
        the row's path that read the feature, each tree weighted by 1 / its path length."""
        n_rows, width = rows.shape
        layout = self._layout(n_rows, width)
        row_offset, position = layout.row_offset, layout.start
        flat = rows.ravel()
        keys, credits = [], []
        row_key = row_offset // width * n_features
        for level, (column, threshold) in enumerate(zip(self.columns, self.thresholds,
                                                        strict=True)):
            read = column.take(position)
            right = flat.take(read + row_offset) > threshold.take(position)
            position = 2 * position + right
            keys.append(row_key + read % n_features)  # a NaN -> +inf copy reads column + n
            credits.append(self.credits[level].take(position))
        weight = 1.0 / np.maximum(self.leaf_path_length.take(position), 1.0)
        if not keys:
            return np.zeros((n_rows, n_features))
        total = np.bincount(np.concatenate(keys), weights=(np.stack(credits) * weight).ravel(),
                            minlength=n_rows * n_features)  # float64, given weights
        return total.astype(np.float64, copy=False).reshape(n_rows, n_features)


def _walk_one(row: Floats32, column: Indices32, threshold: Floats32, leaf: Floats,
              depth: int) -> float:
    """Sum over the trees of h(row), as `_HeapTables` lays them out (compiled by numba)."""
    n_trees = leaf.shape[0]
    node = np.ones(n_trees, np.int32)
    # Level by level over all trees: the trees' walks are independent, so the CPU overlaps
    # them instead of waiting on each dependent load of one walk (~2x on one row).
    for _ in range(depth):
        for t in range(n_trees):
            at = np.uint32(node[t])  # unsigned indices skip numba's negative-index fix-up
            node[t] = 2 * at + (row[np.uint32(column[t, at])] > threshold[t, at])
    total = 0.0
    first_leaf = 1 << depth
    for t in range(n_trees):  # tree by tree, in scikit-learn's order
        total += leaf[t, np.uint32(node[t] - first_leaf)]
    return total


def _walk_rows(rows: Floats32, column: Indices32, threshold: Floats32, leaf: Floats,
               depth: int) -> Floats:
    """Sum over the trees of h(row) for each row of a C-contiguous (rows, width) array."""
    n_rows, width = rows.shape
    flat = rows.ravel()
    sums = np.zeros(n_rows)
    node = np.empty(n_rows, np.int32)
    first_leaf = 1 << depth
    # Tree by tree (its tables stay in L1), each level over all rows (independent walks).
    for t in range(leaf.shape[0]):
        node[:] = 1
        for _ in range(depth):
            for r in range(n_rows):
                at = np.uint32(node[r])
                read = np.uintp(r * width + column[t, at])
                node[r] = 2 * at + (flat[read] > threshold[t, at])
        for r in range(n_rows):  # adds tree t to every row: scikit-learn's order per row
            sums[r] += leaf[t, np.uint32(node[r] - first_leaf)]
    return sums


def _jit(function: Callable[..., Any]) -> Any:
    """`function` compiled by numba, cached on disk; None without numba."""
    if not HAVE_NUMBA:
        return None
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # neither __pycache__ nor the user cache is writable: no disk cache
        return numba.njit(nogil=True)(function)


_walk_one_jit = _jit(_walk_one)
_walk_rows_jit = _jit(_walk_rows)


class _HeapTables:
    """The numba kernels' layout: every tree padded to the forest's depth d in heap order.

    Tree t's internal node i (1 <= i < 2**d) is at [t, i] of `column` and `threshold`, its
    children are 2i and 2i + 1, and the walk that ends on i >= 2**d reads its path length at
    `leaf[t, i - 2**d]`. Built from `_LevelTables`, whose level l is heap indices 2**l..2**(l+1)-1
    of every tree; int32 columns and float32 thresholds keep one tree in 2 KiB (depth 8).
    """

    def __init__(self, levels: _LevelTables) -> None:
        n_trees, depth = levels.n_trees, len(levels.columns)
        self.column = np.zeros((n_trees, 1 << depth), np.int32)
        self.threshold = np.full((n_trees, 1 << depth), np.inf, np.float32)
        for level, (column, threshold) in enumerate(zip(levels.columns, levels.thresholds,
                                                        strict=True)):
            self.column[:, 1 << level:2 << level] = column.reshape(n_trees, 1 << level)
            self.threshold[:, 1 << level:2 << level] = threshold.reshape(n_trees, 1 << level)
        self.leaf = levels.leaf_path_length.reshape(n_trees, 1 << depth).copy()
        self.depth = depth

    def warm_up(self, width: int) -> None:
        """Compile (or load from numba's disk cache) both walks for exactly the argument
        types of live calls, so that the first request does not pay ~1 s of JIT."""
        self.path_length_sums(np.zeros((1, width), np.float32))
        self.path_length_sums(np.zeros((2, width), np.float32))

    def path_length_sums(self, rows: Floats32) -> Floats:
        if len(rows) == 1:
            total = _walk_one_jit(rows[0], self.column, self.threshold, self.leaf, self.depth)
            return np.array([total])
        sums: Floats = _walk_rows_jit(rows, self.column, self.threshold, self.leaf, self.depth)
        return sums


class CompiledForest:
    """A fitted IsolationForest pipeline as flat arrays; see the module docstring.

    `kernel` picks the tree walks: "numba" (the default when numba is importable) or the
    pure-numpy "numpy"; both give the same scores bit for bit.
    """

    def __init__(self, prep: _Preprocess, nodes: _Nodes, n_features: int, n_trees: int,
                 denominator: float, kernel: Kernel = DEFAULT_KERNEL) -> None:
        if kernel == "numba" and not HAVE_NUMBA:
            raise ValueError("kernel 'numba' needs the numba package, which is not installed")
        self.n_features = n_features
        self.n_trees = n_trees
        self.kernel = kernel
        self._prep = prep
        self._levels = _LevelTables(nodes, n_trees)  # also serves top_features
        self._single: _NodeTable | None = None
        self._heap: _HeapTables | None = None
        if kernel == "numba":
            self._heap = _HeapTables(self._levels)
            self._heap.warm_up(prep.width)
        else:
            self._single = _NodeTable(nodes, prep.width)
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
