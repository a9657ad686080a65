"""`GET /v1/model`: which model this process serves, its thresholds and training record."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from aiohttp import web

from http_edge.handlers import json_response, requires
from model.scorer import ModelHolder


class ModelUnavailable(Exception):
    code = "model_unavailable"


class ModelOut(msgspec.Struct, frozen=True, kw_only=True):
    model_version: str
    created_at: str
    features: list[str]
    flag_threshold: float
    decline_threshold: float | None
    target_alert_rate: float
    data_sha256: str
    data_rows: int
    training_metrics: dict[str, float]
    library_versions: dict[str, str]


@dataclass(frozen=True)
class ModelApi:
    models: ModelHolder

    @requires("rules:read")
    async def current(self, request: web.Request) -> web.Response:
        scorer = self.models.current
        if scorer is None:
            raise ModelUnavailable("no model is loaded; screening runs on rules alone")
        manifest, thresholds = scorer.manifest, scorer.thresholds
        return json_response(ModelOut(
            model_version=manifest.model_version, created_at=manifest.created_at,
            features=list(manifest.features), flag_threshold=thresholds.flag,
            decline_threshold=thresholds.decline,
            target_alert_rate=thresholds.target_alert_rate, data_sha256=manifest.data_sha256,
            data_rows=manifest.data_rows, training_metrics=dict(manifest.metrics),
            library_versions=dict(manifest.library_versions)))
