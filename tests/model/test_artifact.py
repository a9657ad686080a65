"""The model artifact: a round trip, and every way a tampered or foreign artifact is refused."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import msgspec
import numpy as np
import pytest
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

import model.artifact as artifact
from model.artifact import (
    ArtifactError,
    ArtifactIncompatible,
    Manifest,
    Thresholds,
    load,
    manifest_path,
    read_manifest,
    save,
    sign,
)

KEY = b"artifact-test-key-0123456789"
FEATURES = ["a", "b", "c", "d"]
NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(3).normal(size=(300, len(FEATURES)))


@pytest.fixture(scope="module")
def pipeline(data: np.ndarray) -> Pipeline:
    forest = IsolationForest(n_estimators=10, max_samples=64, random_state=0)
    return Pipeline([("impute", SimpleImputer()), ("forest", forest)]).fit(data)


@pytest.fixture
def saved(pipeline: Pipeline, tmp_path: Path) -> Path:
    path = tmp_path / "model.joblib"
    store(pipeline, path)
    return path


def store(model: object, path: Path, **overrides: Any) -> Manifest:
    options: dict[str, Any] = {
        "key": KEY, "features": FEATURES, "data_sha256": "ab" * 32, "data_rows": 300,
        "params": {"n_estimators": 10, "feature_spec": {"fallback": [0.5, 1.25]}},
        "thresholds": Thresholds(flag=0.61, decline=None, target_alert_rate=0.025),
        "metrics": {"alert_rate": 0.025, "rows": 300.0}, "now": NOW}
    return save(model, path, **{**options, **overrides})


def resign(path: Path, **changes: Any) -> None:
    """Rewrite the manifest with `changes`, signed with the right key (as an insider could)."""
    manifest = msgspec.structs.replace(read_manifest(path), **changes)
    manifest = msgspec.structs.replace(manifest, signature=sign(manifest, KEY))
    manifest_path(path).write_bytes(msgspec.json.encode(manifest))


def refused(code: str, call: Callable[[], object]) -> ArtifactError:
    with pytest.raises(ArtifactError) as info:
        call()
    assert info.value.code == code, info.value
    assert KEY.decode() not in str(info.value)
    return info.value


@pytest.fixture
def unpickles(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every joblib.load the artifact module makes."""
    calls: list[object] = []
    real = joblib.load

    def spy(source: object) -> object:
        calls.append(source)
        return real(source)

    monkeypatch.setattr(artifact.joblib, "load", spy)
    return calls


class Touch:
    """A pickle that creates `marker` when it is unpickled, as a malicious one would run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return Path.touch, (self.marker,)


def pickled(obj: object) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()


def test_round_trip_scores_the_same(pipeline, data, saved):
    model, manifest = load(saved, key=KEY)
    np.testing.assert_array_equal(model.score_samples(data), pipeline.score_samples(data))
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    assert manifest.artifact_sha256 == digest
    assert manifest.model_version == f"if-20261129-{digest[:12]}"
    assert manifest.created_at == "2026-11-29T12:30:00Z"
    assert manifest.features == FEATURES
    assert manifest.library_versions["scikit-learn"] == sklearn.__version__
    assert manifest.params["feature_spec"] == {"fallback": [0.5, 1.25]}
    assert manifest == read_manifest(saved)


def test_the_manifest_is_pretty_stable_json_that_verifies_by_the_documented_recipe(saved):
    raw = manifest_path(saved).read_bytes()
    assert raw.startswith(b'{\n  "format_version": 1,\n  "model_version": "if-')
    doc = msgspec.json.decode(raw)
    signature = doc.pop("signature")
    canonical = msgspec.json.encode(doc, order="sorted")
    assert hmac.compare_digest(hmac.new(KEY, canonical, "sha256").hexdigest(), signature)


def test_the_same_bytes_get_the_same_version(pipeline, tmp_path):
    first = store(pipeline, tmp_path / "one.joblib")
    second = store(pipeline, tmp_path / "two.joblib", now=datetime(2026, 11, 29, 23, tzinfo=UTC))
    assert first.artifact_sha256 == second.artifact_sha256
    assert first.model_version == second.model_version


def test_a_flipped_byte_is_refused_before_unpickling(saved, unpickles):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0x01
    saved.write_bytes(bytes(data))
    refused("artifact_digest_mismatch", lambda: load(saved, key=KEY))
    assert unpickles == []


def test_a_swapped_malicious_pickle_never_runs(saved, tmp_path, unpickles):
    marker = tmp_path / "pwned"
    saved.write_bytes(pickled(Touch(marker)))
    refused("artifact_digest_mismatch", lambda: load(saved, key=KEY))
    assert not marker.exists()
    assert unpickles == []
    # The payload is real: unpickled directly, it does run.
    control = tmp_path / "control"
    joblib.load(io.BytesIO(pickled(Touch(control))))
    assert control.exists()


def test_a_file_swapped_after_the_digest_check_is_not_what_gets_unpickled(
        pipeline, data, saved, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    genuine = saved.read_bytes()
    real_sha256 = hashlib.sha256

    def sha256_then_swap(data: bytes = b"") -> Any:
        if data == genuine:  # an attacker wins the race right after the check
            saved.write_bytes(pickled(Touch(marker)))
        return real_sha256(data)

    monkeypatch.setattr(artifact.hashlib, "sha256", sha256_then_swap)
    model, _ = load(saved, key=KEY)
    assert not marker.exists()
    assert saved.read_bytes() != genuine  # the swap did happen
    np.testing.assert_array_equal(model.score_samples(data), pipeline.score_samples(data))


def test_an_edited_threshold_breaks_the_signature(saved, unpickles):
    where = manifest_path(saved)
    doc = json.loads(where.read_text())
    doc["thresholds"]["flag"] = 0.01
    where.write_text(json.dumps(doc, indent=2))
    refused("artifact_signature_invalid", lambda: load(saved, key=KEY))
    assert unpickles == []


def test_a_wrong_key_is_refused(saved):
    refused("artifact_signature_invalid", lambda: load(saved, key=b"another-key"))


@pytest.mark.parametrize("signature", [None, "", "00" * 32, "é" * 64])
def test_a_missing_or_malformed_signature_is_refused(saved, signature):
    where = manifest_path(saved)
    doc = json.loads(where.read_text())
    if signature is None:
        del doc["signature"]
    else:
        doc["signature"] = signature
    where.write_text(json.dumps(doc), encoding="utf-8")
    refused("artifact_signature_invalid", lambda: load(saved, key=KEY))


def test_another_scikit_learn_minor_is_incompatible(saved, unpickles):
    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    other = f"{major}.{minor + 1}.0"
    versions = {**read_manifest(saved).library_versions, "scikit-learn": other}
    resign(saved, library_versions=versions)
    error = refused("artifact_incompatible", lambda: load(saved, key=KEY))
    assert other in str(error) and sklearn.__version__ in str(error)
    assert "sentinel train" in str(error)
    assert isinstance(error, ArtifactIncompatible)
    assert (error.what, error.found, error.installed) == ("scikit-learn", other,
                                                          sklearn.__version__)
    assert unpickles == []


def test_another_numpy_major_is_incompatible(saved):
    versions = {**read_manifest(saved).library_versions, "numpy": "1.26.4"}
    resign(saved, library_versions=versions)
    error = refused("artifact_incompatible", lambda: load(saved, key=KEY))
    assert "1.26.4" in str(error) and np.__version__ in str(error)


def test_another_scikit_learn_patch_release_is_accepted(saved):
    major, minor = sklearn.__version__.split(".")[:2]
    versions = {**read_manifest(saved).library_versions, "scikit-learn": f"{major}.{minor}.99"}
    resign(saved, library_versions=versions)
    load(saved, key=KEY)


def test_an_unknown_format_version_is_incompatible(saved):
    resign(saved, format_version=2)
    error = refused("artifact_incompatible", lambda: read_manifest(saved))
    assert "format version 2" in str(error)


def test_missing_files(saved):
    manifest = manifest_path(saved)
    kept = manifest.read_bytes()
    manifest.unlink()
    refused("artifact_missing", lambda: load(saved, key=KEY))
    manifest.write_bytes(kept)
    saved.unlink()
    refused("artifact_missing", lambda: load(saved, key=KEY))


@pytest.mark.parametrize("content", [
    b"", b"not json {", b"[1, 2]", b'{"format_version": "1"}',
    b'{"format_version": 1, "model_version": "x"}',
])
def test_garbage_manifest_is_invalid(saved, content):
    manifest_path(saved).write_bytes(content)
    refused("manifest_invalid", lambda: load(saved, key=KEY))


@pytest.mark.parametrize("change", [
    lambda doc: doc.update(unexpected=1),
    lambda doc: doc.update(artifact_sha256="XYZ"),
    lambda doc: doc.update(data_rows=-1),
    lambda doc: doc["library_versions"].pop("numpy"),
    lambda doc: doc["thresholds"].update(flag="high"),
])
def test_a_manifest_of_the_wrong_schema_is_invalid(saved, change):
    where = manifest_path(saved)
    doc = json.loads(where.read_text())
    change(doc)
    where.write_text(json.dumps(doc))
    refused("manifest_invalid", lambda: read_manifest(saved))


@pytest.mark.parametrize("payload", [
    pickled({"not": "a model"}),
    pickled(Pipeline([("impute", SimpleImputer()), ("forest", IsolationForest())])),  # unfitted
    b"signed but not a pickle",
])
def test_a_signed_digest_correct_non_model_is_refused(saved, payload):
    saved.write_bytes(payload)
    resign(saved, artifact_sha256=hashlib.sha256(payload).hexdigest())
    refused("artifact_not_a_model", lambda: load(saved, key=KEY))


def test_a_model_with_another_feature_count_is_refused(saved):
    resign(saved, features=[*FEATURES, "e"])
    refused("artifact_not_a_model", lambda: load(saved, key=KEY))


def test_a_bare_forest_loads(data, tmp_path):
    path = tmp_path / "forest.joblib"
    store(IsolationForest(n_estimators=5, random_state=0).fit(data), path)
    model, _ = load(path, key=KEY)
    assert isinstance(model, IsolationForest)


def test_saving_twice_leaves_only_the_two_files(pipeline, tmp_path):
    path = tmp_path / "model.joblib"
    store(pipeline, path)
    second = store(pipeline, path, thresholds=Thresholds(flag=0.7, decline=0.9,
                                                         target_alert_rate=0.01))
    assert sorted(os.listdir(tmp_path)) == ["model.joblib", "model.joblib.manifest.json"]
    assert load(path, key=KEY)[1] == second


def test_a_failed_save_leaves_the_old_manifest_and_no_temp_file(pipeline, saved, monkeypatch):
    before = manifest_path(saved).read_bytes()
    real = os.replace

    def fail_on_manifest(src: Any, dst: Any) -> None:
        if str(dst).endswith(".manifest.json"):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(artifact.os, "replace", fail_on_manifest)
    with pytest.raises(OSError, match="No space"):
        store(pipeline, saved, metrics={"alert_rate": 0.5})
    assert manifest_path(saved).read_bytes() == before
    assert sorted(os.listdir(saved.parent)) == ["model.joblib", "model.joblib.manifest.json"]


@pytest.mark.parametrize("overrides", [
    {"metrics": {"alert_rate": float("nan")}},
    {"features": ["a", "b"]},
    {"now": datetime(2026, 11, 29)},
])
def test_save_refuses_what_load_could_not_read(pipeline, tmp_path, overrides):
    with pytest.raises(ValueError):
        store(pipeline, tmp_path / "model.joblib", **overrides)
    assert os.listdir(tmp_path) == []


def test_save_refuses_a_non_model(tmp_path):
    with pytest.raises(ValueError, match="IsolationForest"):
        store({"not": "a model"}, tmp_path / "model.joblib")


def test_an_empty_key_is_refused(pipeline, saved, tmp_path):
    with pytest.raises(ValueError, match="SENTINEL_MODEL_KEY"):
        store(pipeline, tmp_path / "other.joblib", key=b"")
    with pytest.raises(ValueError, match="SENTINEL_MODEL_KEY"):
        load(saved, key=b"")
