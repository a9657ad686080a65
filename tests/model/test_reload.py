"""The embedded default model: trained once, cached, retrained when it cannot be trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.artifact import ArtifactError, read_manifest
from model.reload import DEFAULT_DATA, ModelReloader, default_model_path
from model.scorer import ModelHolder


@pytest.fixture
def small_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # A smaller synthetic set keeps the test fast; the behaviour is the same.
    monkeypatch.setitem(DEFAULT_DATA, "accounts", 40)
    monkeypatch.setitem(DEFAULT_DATA, "days", 10)


async def start(cache: Path, key: bytes) -> tuple[ModelReloader, ModelHolder]:
    holder = ModelHolder()
    reloader = ModelReloader(holder, path="", cache_dir=str(cache), key=key, poll_s=3600)
    await reloader.start()
    await reloader.stop()
    return reloader, holder


async def test_the_default_is_trained_once_then_loaded_from_the_cache(
        small_default: None, tmp_path: Path):
    first, _ = await start(tmp_path, b"key-1")
    path = default_model_path(tmp_path)
    assert first.resolved_path == path and path.exists()
    made = path.stat().st_mtime_ns
    _, holder = await start(tmp_path, b"key-1")
    assert path.stat().st_mtime_ns == made  # loaded, not trained again
    assert holder.current is not None
    assert holder.current.version == read_manifest(path).model_version


async def test_a_default_signed_with_another_key_is_trained_again(
        small_default: None, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    await start(tmp_path, b"old-key")
    made = default_model_path(tmp_path).stat().st_mtime_ns
    _, holder = await start(tmp_path, b"new-key")
    assert default_model_path(tmp_path).stat().st_mtime_ns != made
    assert holder.current is not None
    assert "no usable cached default model" in caplog.text


async def test_a_configured_artifact_that_is_missing_stops_start_up(tmp_path: Path):
    reloader = ModelReloader(ModelHolder(), path=str(tmp_path / "nope.joblib"),
                             cache_dir=str(tmp_path), key=b"k", poll_s=3600)
    with pytest.raises(ArtifactError, match=r"nope\.joblib") as raised:
        await reloader.start()
    assert raised.value.code == "artifact_missing"
