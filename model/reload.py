"""Which model a process serves: the configured artifact or the embedded default, hot-swapped.

`ModelReloader` loads the artifact at start-up and then watches it: when the manifest file
changes (a new `sentinel train --out` to the same path), the new artifact is verified and
compiled in a worker thread and swapped into the `ModelHolder` in one assignment, so no
request is dropped and every batch is scored by exactly one model. An artifact that fails
verification is refused loudly and the current model keeps serving.

With no path configured the embedded default is used: trained once from the synthetic
generator (seeded, a few seconds) and cached, so a fresh machine needs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import sklearn

from model.artifact import ArtifactError
from model.generate import generate
from model.scorer import ModelHolder, ModelMismatch, Scorer
from model.train import TrainOptions, train

log = logging.getLogger(__name__)

DEFAULT_DATA = {"accounts": 400, "days": 45, "seed": 7}


def default_model_path(cache_dir: str | Path) -> Path:
    tag = "-".join(f"{k}{v}" for k, v in DEFAULT_DATA.items())
    return Path(cache_dir) / f"default-{tag}-sklearn{sklearn.__version__}.joblib"


def train_default_model(path: Path, *, key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("training the embedded default model from synthetic data (%s)", DEFAULT_DATA)
    rows = generate(DEFAULT_DATA["accounts"], DEFAULT_DATA["days"], DEFAULT_DATA["seed"])
    train(rows, options=TrainOptions(), out=path, key=key,
          data_sha256=f"synthetic:{DEFAULT_DATA}")


def load_default_model(cache_dir: str | Path, *, key: bytes, flag_threshold: float = 0.0,
                       decline_threshold: float = 0.0) -> tuple[Scorer, Path]:
    """The embedded default and its path: the cached artifact, (re)trained first when it is
    missing or no longer loads (another key, scikit-learn or feature set)."""
    path = default_model_path(cache_dir)
    try:
        return Scorer.load(path, key=key, flag_threshold=flag_threshold,
                           decline_threshold=decline_threshold), path
    except (ArtifactError, ModelMismatch) as exc:
        log.warning("no usable cached default model (%s); training it", exc)
    train_default_model(path, key=key)
    return Scorer.load(path, key=key, flag_threshold=flag_threshold,
                       decline_threshold=decline_threshold), path


class ModelReloader:
    def __init__(self, holder: ModelHolder, *, path: str, cache_dir: str, key: bytes,
                 poll_s: float, flag_threshold: float = 0.0,
                 decline_threshold: float = 0.0) -> None:
        self._holder = holder
        self._path = path
        self._cache_dir = cache_dir
        self._key = key
        self._poll_s = poll_s
        self._thresholds = (flag_threshold, decline_threshold)
        self._seen: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self.swaps = 0
        self.resolved_path: Path | None = None

    def _stamp(self) -> tuple[int, int] | None:
        assert self.resolved_path is not None
        try:
            stat = os.stat(f"{self.resolved_path}.manifest.json")
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> Scorer:
        flag, decline = self._thresholds
        if self.resolved_path is None and not self._path:
            scorer, self.resolved_path = load_default_model(
                self._cache_dir, key=self._key, flag_threshold=flag, decline_threshold=decline)
            self._seen = self._stamp()
            return scorer
        self.resolved_path = self.resolved_path or Path(self._path)
        stamp = self._stamp()  # before reading: a save racing the load is seen next poll
        scorer = Scorer.load(self.resolved_path, key=self._key, flag_threshold=flag,
                             decline_threshold=decline)
        self._seen = stamp
        return scorer

    async def start(self) -> None:
        """Load the model (failing start-up if it cannot be trusted), then watch it."""
        self._holder.current = await asyncio.to_thread(self._load)
        log.info("serving model %s from %s", self._holder.current.version, self.resolved_path)
        self._task = asyncio.create_task(self._watch(), name="model-reloader")

    async def reload_if_changed(self) -> bool:
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        try:
            scorer = await asyncio.to_thread(self._load)
        except (ArtifactError, ValueError, OSError) as exc:
            # Not again for this manifest; a newer one (a finished re-save) is tried again.
            self._seen = stamp
            log.error("new model at %s refused, keeping %s: %s", self.resolved_path,
                      getattr(self._holder.current, "version", None), exc)
            return False
        old, self._holder.current = self._holder.current, scorer
        self.swaps += 1
        log.info("model swapped: %s -> %s", getattr(old, "version", None), scorer.version)
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self.reload_if_changed()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
