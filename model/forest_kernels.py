"""How a compiled forest is walked: numba kernels and the numpy fallback, over tables built
from the flattened trees (`Nodes`) that `model.forest` compiles from scikit-learn.

With numba installed, two compiled walks over heap-ordered padded trees (`HeapTables`) score
one row in ~10 us and a batch in ~1-2.5 us per row (128-200 trees), 2.5-4x faster than the
pure-numpy kernel kept as the fallback without numba: one row as a few vectorised passes over
all nodes (`NodeTable`, ~30 us) and a batch as `depth` vectorised steps over (trees x rows)
(`LevelTables`, ~4-7 us per row). Every walk adds the trees in scikit-learn's order, so all
give the same sums bit for bit; the numba walks release the GIL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

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
LEAF = -1  # sklearn's _TREE_LEAF in children_left / children_right


@dataclass(frozen=True)
class Nodes:
    """Every node of every tree, concatenated: node i of tree t has key offset[t] + i."""

    column: Indices  # column of the prepared float32 row the split reads; 0 on leaves
    threshold: Floats32  # floor32 of scikit-learn's threshold; +inf on leaves (always left)
    left: Indices  # key of the left child, LEAF on leaves
    right: Indices
    n_samples: Floats  # training samples that reached the node (for attribution)
    path_length: Floats  # scikit-learn's per-tree h at this node, read at leaves
    roots: Indices
    depth: int  # deepest leaf, in edges


class _Scratch(threading.local):
    """Per-thread successor array: the internal part is rewritten per row, leaves point to
    themselves so that following successors `depth` times ends on every path's leaf."""

    def __init__(self, n_internal: int, n_leaves: int) -> None:
        self.successor = np.arange(n_internal + n_leaves, dtype=np.intp)
        self.internal = self.successor[:n_internal]


class NodeTable:
    """One row: decide every split of the forest at once, then follow the decisions.

    With one row, the cost of the (trees x depth) walk is numpy's per-call overhead, not
    arithmetic, so a few passes over all internal nodes (~8k for 128 trees of 256 samples)
    beat eight gather-compare-advance steps. Internal nodes are sorted by the column they
    read so that the row's value at every split is `np.repeat(row, counts)`, cheaper than a
    gather.
    """

    def __init__(self, nodes: Nodes, width: int) -> None:
        internal = np.flatnonzero(nodes.left != LEAF)
        internal = internal[np.argsort(nodes.column[internal], kind="stable")]
        leaves = np.flatnonzero(nodes.left == LEAF)
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


class LevelTables:
    """Batches: every tree padded to a complete binary tree of the forest's depth.

    Level l holds the trees' nodes at depth l side by side (tree t, position j at t * 2**l + j),
    so the child of position p is 2p + (x > threshold) and a batch advances with a handful
    of vectorised operations per level over (trees x rows). A leaf above the bottom becomes a
    split with threshold +inf (always left) and its value is stored at its leftmost
    descendant in the bottom level. Walk positions are laid out tree-major so that the final
    reduction adds the trees in scikit-learn's order.
    """

    def __init__(self, nodes: Nodes, n_trees: int) -> None:
        depth = nodes.depth  # model.forest refuses trees * 2**(depth + 1) > MAX_PADDED_NODES
        self.columns: list[Indices] = []
        self.thresholds: list[Floats32] = []
        self.credits: list[Floats] = []  # per level >= 1: isolation credit of the edge in
        self.leaf_path_length = np.zeros(n_trees << depth)
        frontier, position = nodes.roots, np.arange(n_trees)
        for level in range(depth + 1):
            split = nodes.left[frontier] != LEAF
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
    """Sum over the trees of h(row), as `HeapTables` lays them out (compiled by numba)."""
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


class HeapTables:
    """The numba kernels' layout: every tree padded to the forest's depth d in heap order.

    Tree t's internal node i (1 <= i < 2**d) is at [t, i] of `column` and `threshold`, its
    children are 2i and 2i + 1, and the walk that ends on i >= 2**d reads its path length at
    `leaf[t, i - 2**d]`. Built from `LevelTables`, whose level l is heap indices 2**l..2**(l+1)-1
    of every tree; int32 columns and float32 thresholds keep one tree in 2 KiB (depth 8).
    """

    def __init__(self, levels: LevelTables) -> None:
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
