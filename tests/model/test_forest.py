"""CompiledForest against scikit-learn: equal scores on edge values (numba and numpy kernels),
attribution, refusals."""

from __future__ import annotations

import functools
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from model import forest as forest_module
from model import forest_kernels
from model.forest import HAVE_NUMBA, CompiledForest, Kernel, UnsupportedModel

N_FEATURES = 6
TOLERANCE = 1e-9
KERNELS: list[Any] = [
    pytest.param("numba", marks=pytest.mark.skipif(not HAVE_NUMBA, reason="needs numba")),
    "numpy",  # the fallback used without numba
]


def training_data(n_rows: int = 1500, seed: int = 0, missing: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.array([1.0, 10.0, 0.01, 1000.0, 1.0, 3.0])
    X = rng.normal(size=(n_rows, N_FEATURES)) * scales + np.arange(N_FEATURES)
    X[:, 4] = rng.integers(0, 5, n_rows)  # a discrete column: many rows equal to thresholds
    X[rng.random(X.shape) < missing] = np.nan
    return X


def forest(**params: Any) -> IsolationForest:
    return IsolationForest(**{"n_estimators": 40, "random_state": 3, **params})


def fit_quietly(model: Any, X: np.ndarray) -> Any:
    # An all-NaN training column makes the scaler divide 0/0 and the imputer warn that it
    # drops the column: that is the case under test, not a mistake.
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", UserWarning)
        return model.fit(X)


def sklearn_risk(model: Any, X: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return -model.score_samples(X)


@functools.cache
def fitted(name: str) -> Any:
    """The forests under test, fitted once per session."""
    with_nan = training_data(missing=0.05)
    if name == "imputer":
        return fit_quietly(Pipeline([("impute", SimpleImputer(strategy="median")),
                                     ("forest", forest(max_samples=256))]), with_nan)
    if name == "bare":  # NaN reaches the trees: missing_go_to_left decides
        return fit_quietly(forest(), training_data())
    if name == "bare_trained_on_nan":
        return fit_quietly(forest(), with_nan)
    if name == "half_features_bootstrap":
        return fit_quietly(Pipeline([("impute", SimpleImputer(strategy="mean")),
                                     ("forest", forest(max_features=0.5, bootstrap=True))]),
                           with_nan)
    if name == "small_max_samples":
        return fit_quietly(Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                     ("forest", forest(max_samples=16))]), with_nan)
    if name == "auto_few_rows":
        return fit_quietly(forest(max_samples="auto"), training_data(n_rows=40))
    if name == "scaler":
        return fit_quietly(Pipeline([("impute", SimpleImputer(strategy="constant",
                                                               fill_value=-1.5)),
                                     ("scale", StandardScaler()),
                                     ("forest", forest(max_features=4))]), with_nan)
    if name == "scaler_then_dropping_imputer":
        empty_column = with_nan.copy()
        empty_column[:, 2] = np.nan  # dropped by the imputer: the forest sees 5 columns
        return fit_quietly(Pipeline([("passthrough", "passthrough"),
                                     ("scale", StandardScaler(with_mean=False)),
                                     ("impute", SimpleImputer()),
                                     ("forest", forest())]), empty_column)
    if name == "keep_empty":
        empty_column = with_nan.copy()
        empty_column[:, 2] = np.nan
        return fit_quietly(Pipeline([("impute", SimpleImputer(strategy="median",
                                                               keep_empty_features=True)),
                                     ("forest", forest())]), empty_column)
    raise KeyError(name)


@functools.cache
def compiled(name: str, kernel: Kernel) -> CompiledForest:
    return CompiledForest.from_pipeline(fitted(name), kernel=kernel)


def available_kernels() -> list[Kernel]:
    return ["numba", "numpy"] if HAVE_NUMBA else ["numpy"]


MODELS = ["imputer", "bare", "bare_trained_on_nan", "half_features_bootstrap",
          "small_max_samples", "auto_few_rows", "scaler", "scaler_then_dropping_imputer",
          "keep_empty"]


def split_values(model: Any) -> dict[int, np.ndarray]:
    """Per input column, the forest's split thresholds mapped back to input units."""
    steps = model.steps if isinstance(model, Pipeline) else [("forest", model)]
    iforest = steps[-1][1]
    kept = np.arange(N_FEATURES)
    for _, step in steps[:-1]:
        if isinstance(step, SimpleImputer) and not step.keep_empty_features:
            kept = kept[~np.isnan(np.asarray(step.statistics_, np.float64))]
    values: dict[int, list[float]] = {}
    for tree, features in zip(iforest.estimators_, iforest.estimators_features_, strict=True):
        nodes = tree.tree_
        split = nodes.children_left != -1
        local = nodes.feature[split]
        columns = features[local] if iforest._max_features != N_FEATURES else local
        for column, threshold in zip(kept[columns], nodes.threshold[split], strict=True):
            values.setdefault(int(column), []).append(float(threshold))
    for _, step in reversed(steps[:-1]):  # undo a scaler (approximately: near the threshold)
        if isinstance(step, StandardScaler):
            for column in values:
                position = int(np.searchsorted(kept, column))
                raw = np.asarray(values[column])
                if step.with_std:
                    raw = raw * step.scale_[position]
                if step.with_mean:
                    raw = raw + step.mean_[position]
                values[column] = list(raw)
    return {column: np.asarray(v) for column, v in values.items()}


def edge_values(thresholds: np.ndarray) -> np.ndarray:
    """Each threshold, its float32 rounding and the neighbouring float32 / float64 values."""
    as32 = thresholds.astype(np.float32)
    return np.concatenate([
        thresholds, as32,
        np.nextafter(as32, np.float32(np.inf)), np.nextafter(as32, np.float32(-np.inf)),
        np.nextafter(thresholds, np.inf), np.nextafter(thresholds, -np.inf),
    ]).astype(np.float64)


def edge_rows(model: Any, n_rows: int = 10_000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = training_data(n_rows=n_rows, seed=seed + 100)
    extremes = np.array([1e30, -1e30, 0.0, -0.0, np.nan])
    pools = {column: np.concatenate([edge_values(values), extremes])
             for column, values in split_values(model).items()}
    for row in range(n_rows):
        for column in rng.choice(N_FEATURES, size=rng.integers(1, 4), replace=False):
            pool = pools.get(int(column), extremes)
            X[row, column] = pool[rng.integers(len(pool))]
    far = rng.random(n_rows) < 0.05  # far outside the training range in every column
    X[far] = rng.choice([-1, 1], size=(int(far.sum()), N_FEATURES)) * 1e6
    return X


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", MODELS)
def test_risk_equals_sklearn_on_edge_values(name: str, kernel: Kernel) -> None:
    model = fitted(name)
    compiled = CompiledForest.from_pipeline(model, kernel=kernel)
    assert compiled.kernel == kernel
    X = edge_rows(model)
    expected = sklearn_risk(model, X)

    batched = compiled.risk(X)
    one_by_one = np.concatenate([compiled.risk(X[i:i + 1]) for i in range(1500)])

    assert batched.dtype == np.float64 and batched.shape == (len(X),)
    assert np.abs(batched - expected).max() <= TOLERANCE
    assert np.abs(one_by_one - expected[:1500]).max() <= TOLERANCE
    # Both paths add the trees in scikit-learn's order: a row's score never depends on
    # the batch it arrived in.
    np.testing.assert_array_equal(one_by_one, batched[:1500])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", ["imputer", "half_features_bootstrap"])
def test_batch_sizes_and_chunks_agree(name: str, kernel: Kernel) -> None:
    model = fitted(name)
    compiled = CompiledForest.from_pipeline(model, kernel=kernel)
    X = edge_rows(model, n_rows=2000, seed=5)
    whole = compiled.risk(X)
    pieces = [compiled.risk(X[start:start + size])
              for start, size in [(0, 2), (2, 3), (5, 64), (69, 1931)]]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert compiled.risk(X[:0]).shape == (0,)


def test_attributes_and_input_checks() -> None:
    compiled = CompiledForest.from_pipeline(fitted("scaler_then_dropping_imputer"))
    assert compiled.n_features == N_FEATURES
    assert compiled.n_trees == 40
    with pytest.raises(ValueError, match="shape"):
        compiled.risk(np.zeros((3, N_FEATURES - 1)))
    with pytest.raises(ValueError, match="shape"):
        compiled.risk(np.zeros(N_FEATURES))


@pytest.mark.parametrize("kernel", KERNELS)
def test_single_sample_forest_scores_one_half_like_sklearn(kernel: Kernel) -> None:
    model = forest(max_samples=1).fit(training_data(n_rows=50))  # every tree is one leaf
    compiled = CompiledForest.from_pipeline(model, kernel=kernel)
    X = training_data(n_rows=5, seed=9)
    np.testing.assert_array_equal(compiled.risk(X), sklearn_risk(model, X))
    np.testing.assert_array_equal(compiled.risk(X[:1]), sklearn_risk(model, X[:1]))
    assert compiled.top_features(X[:1], k=2) == [[0, 1]]  # no split: ties by index


@pytest.mark.parametrize("kernel", KERNELS)
def test_concurrent_single_rows_are_independent(kernel: Kernel) -> None:
    model = fitted("imputer")
    compiled = CompiledForest.from_pipeline(model, kernel=kernel)
    X = edge_rows(model, n_rows=400, seed=11)
    expected = compiled.risk(X)

    def score(rows: range) -> np.ndarray:
        return np.concatenate([compiled.risk(X[i:i + 1]) for i in rows])

    with ThreadPoolExecutor(max_workers=4) as pool:
        parts = list(pool.map(score, [range(i, len(X), 4) for i in range(4)]))
    for i, part in enumerate(parts):
        np.testing.assert_array_equal(part, expected[i::4])


finite = st.floats(min_value=-1e30, max_value=1e30, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(X=arrays(np.float64, st.tuples(st.integers(1, 6), st.just(N_FEATURES)), elements=finite))
def test_random_finite_rows_match_sklearn(X: np.ndarray) -> None:
    for name in ("scaler", "bare"):
        model = fitted(name)
        for kernel in available_kernels():
            risk = compiled(name, kernel).risk(X)
            assert np.abs(risk - sklearn_risk(model, X)).max() <= TOLERANCE


@settings(max_examples=100, deadline=None)
@given(X=arrays(np.float64, st.tuples(st.integers(1, 4), st.just(N_FEATURES)),
                elements=st.one_of(finite, st.just(np.nan))))
def test_random_rows_with_missing_values_match_sklearn(X: np.ndarray) -> None:
    for name in ("imputer", "bare_trained_on_nan"):
        model = fitted(name)
        for kernel in available_kernels():
            risk = compiled(name, kernel).risk(X)
            assert np.abs(risk - sklearn_risk(model, X)).max() <= TOLERANCE


@pytest.mark.skipif(not HAVE_NUMBA, reason="needs numba")
@pytest.mark.parametrize("name", MODELS)
def test_numba_and_numpy_kernels_agree_bit_for_bit(name: str) -> None:
    X = edge_rows(fitted(name), n_rows=3000, seed=7)
    fast, fallback = compiled(name, "numba"), compiled(name, "numpy")
    np.testing.assert_array_equal(fast.risk(X), fallback.risk(X))
    for i in range(0, 300, 7):
        np.testing.assert_array_equal(fast.risk(X[i:i + 1]), fallback.risk(X[i:i + 1]))


@pytest.mark.skipif(not HAVE_NUMBA, reason="needs numba")
def test_numba_walks_are_compiled_once_at_construction() -> None:
    compiled = CompiledForest.from_pipeline(fitted("bare"), kernel="numba")
    walks = [forest_kernels._walk_one_jit, forest_kernels._walk_rows_jit]
    assert [len(walk.signatures) for walk in walks] == [1, 1]
    X = edge_rows(fitted("bare"), n_rows=1200, seed=2)
    for rows in (X[:0], X[:1], X[5:6], X[:2], X[3:70], X):  # chunks are row slices
        compiled.risk(rows)
    # A new signature would mean a JIT compilation (~1 s) inside a live request.
    assert [len(walk.signatures) for walk in walks] == [1, 1]


def test_numba_kernel_without_numba_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forest_module, "HAVE_NUMBA", False)
    with pytest.raises(ValueError, match="numba"):
        CompiledForest.from_pipeline(fitted("imputer"), kernel="numba")


@pytest.mark.parametrize("k", [1, 3, N_FEATURES])
def test_top_features_are_k_distinct_valid_indices(k: int) -> None:
    model = fitted("half_features_bootstrap")
    compiled = CompiledForest.from_pipeline(model)
    X = edge_rows(model, n_rows=50, seed=3)
    top = compiled.top_features(X, k)
    assert len(top) == len(X)
    for row in top:
        assert len(row) == k == len(set(row))
        assert all(isinstance(j, int) and 0 <= j < N_FEATURES for j in row)
    assert compiled.top_features(X, k) == top  # deterministic


@pytest.mark.parametrize("name", ["imputer", "bare", "half_features_bootstrap", "scaler"])
def test_top_feature_is_the_one_made_anomalous(name: str) -> None:
    compiled = CompiledForest.from_pipeline(fitted(name))
    X = training_data(n_rows=2000)
    typical = np.nanmedian(X, axis=0)
    rows = np.tile(typical, (N_FEATURES, 1))
    for j in range(N_FEATURES):
        rows[j, j] = typical[j] + 30 * np.nanstd(X[:, j]) + 30
    assert [top[0] for top in compiled.top_features(rows, k=3)] == list(range(N_FEATURES))


def test_top_features_rejects_k_out_of_range() -> None:
    compiled = CompiledForest.from_pipeline(fitted("imputer"))
    with pytest.raises(ValueError, match="k must be"):
        compiled.top_features(np.zeros((1, N_FEATURES)), k=0)
    with pytest.raises(ValueError, match="k must be"):
        compiled.top_features(np.zeros((1, N_FEATURES)), k=N_FEATURES + 1)


def test_unsupported_step_is_named() -> None:
    model = Pipeline([("impute", SimpleImputer()), ("reduce", PCA(n_components=3)),
                      ("forest", forest())]).fit(training_data())
    with pytest.raises(UnsupportedModel, match="'reduce' \\(PCA\\)"):
        CompiledForest.from_pipeline(model)


@pytest.mark.parametrize("model", [
    Pipeline([("scale", StandardScaler()), ("svm", OneClassSVM())]),
    StandardScaler(),
])
def test_last_step_must_be_an_isolation_forest(model: Any) -> None:
    model.fit(training_data(n_rows=200))
    with pytest.raises(UnsupportedModel, match="not an IsolationForest"):
        CompiledForest.from_pipeline(model)


@pytest.mark.parametrize("imputer", [
    SimpleImputer(add_indicator=True),
    SimpleImputer(missing_values=-1.0),
])
def test_imputers_that_change_the_columns_or_the_marker_are_refused(imputer: Any) -> None:
    model = Pipeline([("impute", imputer), ("forest", forest())]).fit(training_data())
    with pytest.raises(UnsupportedModel, match="'impute'"):
        CompiledForest.from_pipeline(model)


def test_unfitted_forest_is_refused() -> None:
    with pytest.raises(UnsupportedModel, match="not fitted"):
        CompiledForest.from_pipeline(forest())
    assert issubclass(UnsupportedModel, ValueError)
