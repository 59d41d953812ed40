"""pygeoapi processors: ``hazard-exposure`` and ``alert-targets`` over the project's layers.

Thin wrappers: inputs are checked here, the work is pipelines.exposure. The processor is
named in the generated pygeoapi config with the project folder it serves.
"""
from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

from api.errors import public
from geo.errors import CitytwinError, LayerNameError
from geo.names import check_layer_name
from pipelines.catalog import load_catalog
from pipelines.exposure import alert_targets, exposure, load_hazard
from pipelines.project import project_store

_HAZARD = {
    "title": "Hazard layer",
    "description": "A raster layer (e.g. flood_depth, with 'threshold') or a polygon layer of hazard zones",
    "schema": {"type": "string"}, "minOccurs": 1, "maxOccurs": 1,
}
_THRESHOLD = {
    "title": "Depth threshold (m)",
    "description": "For raster hazards: a feature is affected when the deepest cell under it exceeds this",
    "schema": {"type": "number", "default": 0.0}, "minOccurs": 0, "maxOccurs": 1,
}
_LINKS = [{"type": "text/html", "rel": "about", "title": "citytwin", "href": "https://www.ogc.org/standard/ogcapi-processes/"}]


class InputError(ProcessorExecuteError):
    """A request the client can fix: 400 with the reason."""

    ogc_exception_code = "InvalidParameterValue"
    http_status_code = HTTPStatus.BAD_REQUEST


def _name(data: dict, key: str, default: str | None = None, required: bool = True) -> str | None:
    value = data.get(key, default)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InputError(user_msg=f"input '{key}' must be a layer name (string)")
    try:  # a name that could be SQL or a path never reaches the store
        return check_layer_name(value)
    except LayerNameError as exc:
        raise InputError(user_msg=f"input '{key}': {exc}") from None


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # a whole number too large for a float
        return False


class _ProjectProcessor(BaseProcessor):
    METADATA: dict[str, Any] = {}

    def __init__(self, processor_def: dict):
        super().__init__(processor_def, self.METADATA)
        self.project = processor_def["project"]
        self.supports_outputs = False

    def execute(self, data: dict, outputs: dict | None = None):
        catalog = load_catalog(self.project)
        store = project_store(catalog)
        try:
            return "application/json", self.run(catalog, store, data or {})
        except CitytwinError as exc:  # messages written for the command line may name server paths
            raise InputError(user_msg=public(str(exc))) from None
        finally:
            store.close()

    def run(self, catalog, store, data: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _threshold(data: dict) -> float:
        value = data.get("threshold", 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise InputError(user_msg="input 'threshold' must be a finite number (metres)")
        return float(value)


class HazardExposureProcessor(_ProjectProcessor):
    METADATA = {
        "version": "1.0.0",
        "id": "hazard-exposure",
        "title": {"en": "Hazard exposure"},
        "description": {"en": "Features of the target layers that a hazard reaches (max/mean depth for "
                              "raster hazards) and the number per admin area."},
        "jobControlOptions": ["sync-execute", "async-execute"],
        "keywords": ["hazard", "flood", "exposure"],
        "links": _LINKS,
        "inputs": {
            "hazard": _HAZARD,
            "threshold": _THRESHOLD,
            "targets": {"title": "Target layers", "description": "Layers to assess, e.g. buildings, landmarks, dong",
                        "schema": {"type": "array", "items": {"type": "string"}}, "minOccurs": 1, "maxOccurs": 1},
            "areas": {"title": "Admin area layer", "description": "Count affected features per area of this layer",
                      "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
            "include_geometry": {"title": "Include geometry", "schema": {"type": "boolean", "default": False},
                                 "minOccurs": 0, "maxOccurs": 1},
        },
        "outputs": {"exposure": {"title": "Exposure", "schema": {"type": "object",
                                                                 "contentMediaType": "application/json"}}},
        "example": {"inputs": {"hazard": "flood_depth", "threshold": 0.3, "targets": ["buildings"], "areas": "dong"}},
    }

    def run(self, catalog, store, data: dict) -> dict:
        targets = data.get("targets")
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise InputError(user_msg="input 'targets' must be a non-empty list of layer names")
        targets = [_name({"targets": t}, "targets") for t in targets]
        hazard = load_hazard(catalog, store, _name(data, "hazard"), self._threshold(data))
        return exposure(catalog, store, hazard, targets, _name(data, "areas", required=False),
                        with_geometry=bool(data.get("include_geometry", False)))


class AlertTargetsProcessor(_ProjectProcessor):
    METADATA = {
        "version": "1.0.0",
        "id": "alert-targets",
        "title": {"en": "Alert targets"},
        "description": {"en": "Admin areas and buildings to warn: buildings the hazard reaches, or within "
                              "buffer_m of it, grouped by admin area."},
        "jobControlOptions": ["sync-execute", "async-execute"],
        "keywords": ["hazard", "alert", "warning"],
        "links": _LINKS,
        "inputs": {
            "hazard": _HAZARD,
            "threshold": _THRESHOLD,
            "buildings": {"title": "Buildings layer", "schema": {"type": "string", "default": "buildings"},
                          "minOccurs": 0, "maxOccurs": 1},
            "areas": {"title": "Admin area layer", "schema": {"type": "string", "default": "dong"},
                      "minOccurs": 0, "maxOccurs": 1},
            "buffer_m": {"title": "Warning distance (m)", "schema": {"type": "number", "default": 0},
                         "minOccurs": 0, "maxOccurs": 1},
        },
        "outputs": {"alerts": {"title": "Alert targets", "schema": {"type": "object",
                                                                   "contentMediaType": "application/json"}}},
        "example": {"inputs": {"hazard": "flood_depth", "threshold": 0.3, "buffer_m": 50}},
    }

    def run(self, catalog, store, data: dict) -> dict:
        buffer_m = data.get("buffer_m", 0.0)
        if isinstance(buffer_m, bool) or not isinstance(buffer_m, (int, float)) or not 0 <= buffer_m <= 5000:
            raise InputError(user_msg="input 'buffer_m' must be a number of metres from 0 to 5000")
        hazard = load_hazard(catalog, store, _name(data, "hazard"), self._threshold(data))
        return alert_targets(catalog, store, hazard, _name(data, "buildings", "buildings"),
                             _name(data, "areas", "dong"), float(buffer_m))
