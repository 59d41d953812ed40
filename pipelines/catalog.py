"""The project catalog (citytwin.yaml): the one source of truth for layers.

The pipelines read it to build; the api reads the same file to publish (its pygeoapi
configuration is generated from it). A bad catalog raises CatalogError naming the key.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geo.crs import parse_crs
from geo.errors import CatalogError, CitytwinError
from geo.names import check_layer_name

CATALOG_FILE = "citytwin.yaml"
# raster: a GDAL raster (e.g. flood depth) published as a COG under <build>/cog, not in the store.
# live: short-lived items (incidents, congestion) posted to /live/<name>/items or read from a watched
# GeoJSON file (its source); kept under <build>/live, not in the store (pipelines/live.py).
LayerKind = Literal["buildings", "pois", "boundaries", "transit", "hazard_zones", "generic", "raster", "live",
                    "city_model", "landmark_models"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordsConfig(_Strict):
    """Where the address and coordinates sit in administrative records (citytwin geotag)."""

    address_columns: list[str] = Field(default_factory=list, description="address text column(s), tried in order")
    lon_column: str | None = None
    lat_column: str | None = None
    id_column: str | None = None


class PrivacyConfig(_Strict):
    """What of a layer may be published; personal data is masked, hashed or dropped."""

    publish: list[str] | None = Field(None, description="whitelist of record fields; omit to keep all (still scanned)")
    detect: list[Literal["rrn", "mobile", "email"]] = Field(default_factory=lambda: ["rrn", "mobile", "email"])
    person_name_fields: list[str] = Field(default_factory=list)
    action: Literal["mask", "hash", "drop"] = "mask"


class ReferenceConfig(_Strict):
    """How a layer serves the geocoder's gazetteer; detected from the data when omitted."""

    role: Literal["admin", "address_points", "buildings", "none"] | None = None
    admin_level: Literal["sido", "sigungu", "legal_dong", "admin_dong", "legal_ri"] | None = None
    code_field: str | None = None
    name_ko_field: str | None = None
    name_en_field: str | None = None
    address_fields: list[str] = Field(default_factory=list)


class LandmarkModel(_Strict):
    """A glTF/GLB model placed on the map (kind landmark_models)."""

    id: str = Field(description="lower-case id; names the content file")
    name: str | None = None
    uri: str = Field(description="GLB file, relative to the project")
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    height: float = Field(0.0, description="base height in metres (ellipsoidal, like the building tiles)")
    heading: float = Field(0.0, ge=-360, le=360, description="degrees clockwise from north")
    scale: float = Field(1.0, gt=0, le=1000)


class LayerConfig(_Strict):
    """One published layer."""

    kind: LayerKind = "generic"
    title: str | None = None
    description: str | None = None
    source: list[str] = Field(default_factory=list, description="source file(s), relative to the project")
    crs: str | None = Field(None, description="declared source CRS; overrides the file's own")
    encoding: str | None = Field(None, description="text encoding of the source, e.g. cp949")
    fields: list[str] | None = Field(None, description="fields to publish; None publishes all")
    id_field: str | None = Field(None, description="source field holding a stable feature id")
    minzoom: int = Field(12, ge=0, le=22)
    maxzoom: int = Field(16, ge=0, le=22)
    height_field: str | None = None
    floors_field: str | None = None
    storey_height: float | None = Field(None, gt=0, le=20)
    base_field: str | None = Field(None, description="buildings: ground height attribute (m) for 3D Tiles")
    dem: str | None = Field(None, description="buildings: raster layer whose COG gives the ground height")
    lod: int | None = Field(None, ge=1, le=2, description="city_model: only this LOD (default LOD1 far, LOD2 near)")
    models: list[LandmarkModel] | None = Field(None, description="landmark_models: the models to place")
    records: RecordsConfig | None = None
    privacy: PrivacyConfig | None = None
    reference: ReferenceConfig | None = None

    @field_validator("source", mode="before")
    @classmethod
    def _source_list(cls, v):
        if v is None:
            return []
        return [v] if isinstance(v, str) else v

    @field_validator("crs")
    @classmethod
    def _crs_known(cls, v):
        if v is not None:
            try:
                parse_crs(v)
            except CitytwinError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("encoding")
    @classmethod
    def _encoding_known(cls, v):
        if v is not None:
            import codecs

            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"unknown encoding {v!r}; use e.g. utf-8, cp949 or euc-kr") from None
        return v

    @model_validator(mode="after")
    def _zooms(self):
        if self.minzoom > self.maxzoom:
            raise ValueError(f"minzoom {self.minzoom} is above maxzoom {self.maxzoom}")
        return self


class ServerConfig(_Strict):
    title: str = "citytwin"
    description: str = "3D city platform: OGC API Features, Tiles and 3D Tiles"
    url: str | None = Field(None, description="public base URL; defaults to http://localhost:PORT")
    language: str = "en-US"


class Catalog(_Strict):
    """citytwin.yaml as validated data."""

    name: str = "citytwin project"
    server: ServerConfig = Field(default_factory=ServerConfig)
    build_dir: str = "build"
    storey_height: float = Field(3.0, gt=0, le=20, description="metres per storey when only floors are known")
    api_keys_file: str | None = Field(None, description="file of 'key_id: key' lines allowed to run processes and "
                                      "post live items, relative to the project; keep it out of version control")
    layers: dict[str, LayerConfig] = Field(default_factory=dict)

    # Set after loading; not part of the file.
    root: Path = Field(default=Path("."), exclude=True)

    @field_validator("layers")
    @classmethod
    def _names(cls, v):
        for name in v:
            try:
                check_layer_name(name)
            except CitytwinError as exc:
                raise ValueError(str(exc)) from None
        return v

    @property
    def build_path(self) -> Path:
        return (self.root / self.build_dir).resolve()

    def source_paths(self, layer: str) -> list[Path]:
        return [(self.root / s).resolve() for s in self.layers[layer].source]

    def layer(self, name: str) -> LayerConfig:
        if name not in self.layers:
            known = ", ".join(sorted(self.layers)) or "none"
            raise CatalogError(f"layer {name!r} is not in {self.root / CATALOG_FILE} (known: {known})")
        return self.layers[name]


def _format_validation(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key: remove it or check its spelling"
        elif err["type"] == "literal_error":
            msg = f"{msg}"
        lines.append(f"{path}: key '{key}': {msg}")
    return "\n".join(lines)


def load_catalog(project: str | os.PathLike = ".") -> Catalog:
    """Load and validate ``project/citytwin.yaml``."""
    root = Path(project).resolve()
    path = root / CATALOG_FILE
    if not path.is_file():
        raise CatalogError(f"{path}: no catalog here. Run 'citytwin init {project}' to write a starter one.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise CatalogError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: the catalog must be a mapping with a 'layers' key")
    try:
        cat = Catalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(_format_validation(path, exc)) from None
    cat.root = root
    return cat


def add_layer_entry(project: str | os.PathLike, name: str, entry: dict) -> None:
    """Append a layer to citytwin.yaml without disturbing its comments.

    Used by ``citytwin ingest`` so an ad-hoc ingest still ends up as one catalog entry.
    """
    check_layer_name(name)
    path = Path(project).resolve() / CATALOG_FILE
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    if name in (data.get("layers") or {}):
        return
    block = yaml.safe_dump({name: entry}, allow_unicode=True, sort_keys=False)
    indented = "".join(f"  {line}\n" for line in block.splitlines())
    if not data.get("layers"):
        text = text.rstrip("\n") + "\n" if "layers:" in text else text.rstrip("\n") + "\nlayers:\n"
        text = text.replace("layers: {}\n", "layers:\n")
    if not text.endswith("\n"):
        text += "\n"
    text += indented
    path.write_text(text, encoding="utf-8")
    load_catalog(project)  # the result must still validate
