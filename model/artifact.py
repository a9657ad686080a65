"""The model artifact on disk: joblib bytes and a signed manifest, verified before unpickling.

Unpickling runs code, so `load` trusts nothing it has not checked. Layout, for an artifact
`PATH`: `PATH` holds the joblib bytes, `PATH.manifest.json` the `Manifest` (UTF-8 JSON,
indented, fields in declaration order, dict keys sorted). Both are replaced atomically, the
artifact first and the manifest last, so a process watching the manifest never reads half a
file.

`load` does, in this order: read and schema-check the manifest; verify its HMAC-SHA256
signature; check that the installed scikit-learn major.minor and numpy major are the ones
that made it; read the artifact bytes once; compare their SHA-256 with the manifest; unpickle
exactly those bytes (no second read of the file, so no check-then-use gap); check that the
object is a fitted IsolationForest (or a Pipeline ending in one) with the manifest's number of
features.

The signature is hex HMAC-SHA256(key, canonical), where canonical is the manifest as JSON
without its `signature` field, compact, keys sorted at every level, as msgspec writes it. By
hand, for a manifest written by `save`:

    doc = msgspec.json.decode(Path("PATH.manifest.json").read_bytes())
    signature = doc.pop("signature")
    canonical = msgspec.json.encode(doc, order="sorted")
    hmac.compare_digest(hmac.new(key, canonical, "sha256").hexdigest(), signature)

Errors, each leaf with a stable `code`:

    ArtifactError
    ├── ArtifactMissing             artifact_missing
    ├── ManifestInvalid             manifest_invalid
    ├── ArtifactSignatureInvalid    artifact_signature_invalid
    ├── ArtifactIncompatible        artifact_incompatible
    ├── ArtifactDigestMismatch      artifact_digest_mismatch
    └── ArtifactNotAModel           artifact_not_a_model
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import pickle
import platform
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import joblib
import msgspec
import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline

FORMAT_VERSION = 1
RETRAIN = "retrain with `sentinel train`"

StrPath = str | os.PathLike[str]


class ArtifactError(Exception):
    """Root of the artifact errors; `path` is the artifact the error is about."""

    code = "artifact_error"

    def __init__(self, message: str, *, path: StrPath) -> None:
        super().__init__(message)
        self.path = str(path)


class ArtifactMissing(ArtifactError):
    code = "artifact_missing"


class ManifestInvalid(ArtifactError):
    code = "manifest_invalid"


class ArtifactSignatureInvalid(ArtifactError):
    code = "artifact_signature_invalid"


class ArtifactIncompatible(ArtifactError):
    """Made by versions this process does not trust to unpickle; `what` names the component."""

    code = "artifact_incompatible"

    def __init__(self, message: str, *, path: StrPath, what: str, found: str,
                 installed: str) -> None:
        super().__init__(message, path=path)
        self.what = what
        self.found = found
        self.installed = installed


class ArtifactDigestMismatch(ArtifactError):
    code = "artifact_digest_mismatch"


class ArtifactNotAModel(ArtifactError):
    code = "artifact_not_a_model"


class Thresholds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    flag: float  # risk score >= flag -> flag
    decline: float | None  # risk score >= decline -> decline (None: the model never declines alone)
    target_alert_rate: float


Sha256Hex = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format_version: int = FORMAT_VERSION
    model_version: Annotated[str, msgspec.Meta(min_length=1)]  # if-YYYYMMDD-<12 hex of digest>
    created_at: str  # RFC 3339, UTC
    features: Annotated[list[str], msgspec.Meta(min_length=1)]  # in matrix column order
    library_versions: dict[str, str]  # scikit-learn, numpy, joblib, python
    data_sha256: str
    data_rows: Annotated[int, msgspec.Meta(ge=0)]
    params: dict[str, object]  # forest parameters and training options, JSON values
    thresholds: Thresholds
    metrics: dict[str, float]  # training metrics
    artifact_sha256: Sha256Hex
    # Defaults to "" so that an unsigned manifest is refused as unsigned, not as malformed.
    signature: str = ""  # hex HMAC-SHA256(key, canonical_bytes(manifest))


class _Envelope(msgspec.Struct):
    """Just enough of any manifest format to learn which format it is."""

    format_version: int


_REQUIRED_LIBRARIES = ("scikit-learn", "numpy")
_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_manifest = msgspec.json.Decoder(Manifest).decode
_encode_file = msgspec.json.Encoder(order="deterministic").encode
_encode_canonical = msgspec.json.Encoder(order="sorted").encode


def manifest_path(path: StrPath) -> Path:
    return Path(f"{os.fspath(path)}.manifest.json")


def canonical_bytes(manifest: Manifest) -> bytes:
    """What the signature covers: the manifest without `signature`, compact, keys sorted."""
    doc = msgspec.to_builtins(manifest)
    del doc["signature"]
    return _encode_canonical(doc)


def sign(manifest: Manifest, key: bytes) -> str:
    _check_key(key)
    return hmac.new(key, canonical_bytes(manifest), hashlib.sha256).hexdigest()


def save(model: object, path: StrPath, *, key: bytes, features: Sequence[str],
         data_sha256: str, data_rows: int, params: Mapping[str, object],
         thresholds: Thresholds, metrics: Mapping[str, float],
         now: datetime | None = None) -> Manifest:
    """Write `model` to `path` and its signed manifest beside it; return the manifest."""
    _check_key(key)
    problem = _model_problem(model, len(features))
    if problem is not None:
        raise ValueError(f"refusing to save {problem}")
    created = _utc(now)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    artifact = buffer.getvalue()
    digest = hashlib.sha256(artifact).hexdigest()
    unsigned = _normalized(Manifest(
        model_version=f"if-{created:%Y%m%d}-{digest[:12]}",
        created_at=created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        features=list(features),
        library_versions={"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                          "joblib": joblib.__version__, "python": platform.python_version()},
        data_sha256=data_sha256, data_rows=data_rows, params=dict(params),
        thresholds=thresholds, metrics=dict(metrics), artifact_sha256=digest))
    manifest = msgspec.structs.replace(unsigned, signature=sign(unsigned, key))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, artifact)
    _write_atomically(manifest_path(target), msgspec.json.format(_encode_file(manifest)) + b"\n")
    return manifest


def read_manifest(path: StrPath) -> Manifest:
    """The manifest of the artifact at `path`, parsed and schema-checked, not yet trusted."""
    where = manifest_path(path)
    try:
        raw = where.read_bytes()
    except OSError as exc:
        raise ArtifactMissing(
            f"model manifest {where} cannot be read ({exc.strerror}): copy the artifact together "
            f"with its .manifest.json, or {RETRAIN}", path=path) from exc
    try:
        found = _decode_envelope(raw).format_version
    except msgspec.MsgspecError as exc:
        raise _invalid(where, path, exc) from exc
    if found != FORMAT_VERSION:
        raise ArtifactIncompatible(
            f"model manifest {where} has format version {found}, this version of SentinelStream "
            f"reads format {FORMAT_VERSION}: {RETRAIN} (or serve it with the release that "
            f"wrote it)", path=path, what="format_version", found=str(found),
            installed=str(FORMAT_VERSION))
    try:
        manifest = _decode_manifest(raw)
    except msgspec.MsgspecError as exc:
        raise _invalid(where, path, exc) from exc
    missing = [name for name in _REQUIRED_LIBRARIES if name not in manifest.library_versions]
    if missing:
        raise _invalid(where, path, f"library_versions lacks {', '.join(missing)}")
    return manifest


def load(path: StrPath, *, key: bytes) -> tuple[object, Manifest]:
    """The verified model at `path` and its manifest; nothing is unpickled before it is checked."""
    _check_key(key)
    manifest = read_manifest(path)
    expected = sign(manifest, key).encode()
    # Compared as bytes: compare_digest refuses a str with non-ASCII characters.
    if not manifest.signature or not hmac.compare_digest(expected,
                                                         manifest.signature.encode()):
        state = "is not signed" if not manifest.signature else "has an invalid signature"
        raise ArtifactSignatureInvalid(
            f"model manifest {manifest_path(path)} {state} for the configured model key: it was "
            f"edited or signed with another key; set SENTINEL_MODEL_KEY to the key it was trained "
            f"with, or {RETRAIN}", path=path)
    _check_versions(manifest, path)
    try:
        artifact = Path(path).read_bytes()
    except OSError as exc:
        raise ArtifactMissing(
            f"model artifact {path} cannot be read ({exc.strerror}): copy it next to its "
            f"manifest, or {RETRAIN}", path=path) from exc
    digest = hashlib.sha256(artifact).hexdigest()
    if digest != manifest.artifact_sha256:
        raise ArtifactDigestMismatch(
            f"model artifact {path} has SHA-256 {digest}, its signed manifest says "
            f"{manifest.artifact_sha256}: the file was changed or is not the one the manifest "
            f"describes; restore both files from the same `sentinel train` run", path=path)
    return _unpickle(artifact, manifest, path), manifest


def _unpickle(artifact: bytes, manifest: Manifest, path: StrPath) -> object:
    try:
        model = joblib.load(io.BytesIO(artifact))
    # The bytes are signed, so this is a broken artifact, not an attack: say so with the cause.
    except (pickle.UnpicklingError, EOFError, ImportError, AttributeError, KeyError,
            IndexError, TypeError, ValueError) as exc:
        raise ArtifactNotAModel(
            f"model artifact {path} ({manifest.model_version}) is signed but cannot be "
            f"unpickled ({type(exc).__name__}: {exc}): {RETRAIN}", path=path) from exc
    problem = _model_problem(model, len(manifest.features))
    if problem is not None:
        raise ArtifactNotAModel(
            f"model artifact {path} ({manifest.model_version}) holds {problem}: {RETRAIN}",
            path=path)
    return model


def _model_problem(model: object, n_features: int) -> str | None:
    """Why `model` is not a fitted forest over `n_features` columns, or None when it is."""
    final = model.steps[-1][1] if isinstance(model, Pipeline) and model.steps else model
    if not isinstance(final, IsolationForest):
        return f"a {type(model).__name__}, not an IsolationForest or a Pipeline ending in one"
    if not callable(getattr(model, "score_samples", None)):
        return f"a {type(model).__name__} without score_samples"
    # A Pipeline delegates n_features_in_ to its first step; unfitted, the attribute is absent.
    fitted = getattr(model, "n_features_in_", None)
    if fitted != n_features or not hasattr(final, "estimators_"):
        return f"a model fitted on {fitted} features, not the {n_features} the manifest lists"
    return None


def _check_versions(manifest: Manifest, path: StrPath) -> None:
    made = manifest.library_versions
    # Pickles are only trusted by the scikit-learn minor that made them (pyproject pins it).
    for what, installed, parts in (("scikit-learn", sklearn.__version__, 2),
                                   ("numpy", np.__version__, 1)):
        found = _release(made[what], parts)
        if found is None or found != _release(installed, parts):
            level = "major.minor" if parts == 2 else "major"
            raise ArtifactIncompatible(
                f"model {manifest.model_version} at {path} was made with {what} {made[what]}, "
                f"this process has {what} {installed} (the {level} version must match): "
                f"{RETRAIN}", path=path, what=what, found=made[what], installed=installed)


def _release(version: str, parts: int) -> tuple[int, ...] | None:
    match = re.match(r"(\d+)(?:\.(\d+))?", version)
    if match is None or (parts == 2 and match[2] is None):
        return None
    return tuple(int(g) for g in match.groups()[:parts])


def _invalid(where: Path, path: StrPath, reason: object) -> ManifestInvalid:
    return ManifestInvalid(
        f"model manifest {where} is not a valid manifest ({reason}): restore it from the "
        f"`sentinel train` run that made the artifact, or {RETRAIN}", path=path)


def _normalized(manifest: Manifest) -> Manifest:
    """`manifest` as `load` will read it back, so the signature covers exactly that."""
    try:
        return _decode_manifest(_encode_file(manifest))
    except (TypeError, msgspec.MsgspecError) as exc:
        raise ValueError(f"the manifest would not be valid JSON of its schema: {exc}") from exc


def _check_key(key: bytes) -> None:
    if len(key) == 0:
        raise ValueError("the model signing key is empty: set SENTINEL_MODEL_KEY")


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    return now.astimezone(UTC)


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` by `data`: a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # 0o666 and the umask: the permissions a plain open() would give.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory is synced.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
