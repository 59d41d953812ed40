"""The project catalog (citytwin.yaml): the one source of truth for layers.

The pipelines read it to build; the api reads the same file to publish (its pygeoapi
configuration is generated from it). A bad catalog raises CatalogError naming the key.
Commands that add or update layers edit the file structurally (comments and layout kept),
validate the result and swap it in whole.
"""
from __future__ import annotations

import fcntl
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from geo.crs import parse_crs
from geo.errors import CatalogError, CitytwinError
from geo.names import check_layer_name
from pipelines.atomic_file import replace_text
from pipelines.zooms import KIND_MINZOOM, MAXZOOM

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


PlaceStatus = Literal["available", "full", "closed", "out_of_service", "unknown"]


class AvailabilityFields(_Strict):
    """Which column (CSV) or key (JSON) of a polled source holds each value of a place."""

    id: str = "id"
    lon: str = "lon"
    lat: str = "lat"
    capacity: str = "capacity"
    free: str = "free"
    status: str | None = Field("status", description="None: derived from free (0 is full)")
    updated: str = Field("updated", description="ISO 8601 with an offset, or POSIX seconds")
    name: str | None = "name"


class SourceKey(_Strict):
    """An API key a polled source wants. The catalog names the environment variable that holds it,
    never the key itself; it is sent in a header or as a query parameter, and never logged."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="environment variable holding the key")
    header: str | None = Field(None, pattern=r"^[A-Za-z0-9-]+$", description="send it in this header, e.g. X-API-Key")
    param: str | None = Field(None, min_length=1, description="or as this query parameter, e.g. serviceKey")

    @model_validator(mode="after")
    def _one_way(self):
        if (self.header is None) == (self.param is None):
            raise ValueError("a key is sent one way: give header or param (not both)")
        return self


class AvailabilityPoll(_Strict):
    """A JSON or CSV document of every place's current state, fetched by citytwin serve."""

    url: str = Field(description="http(s) URL")
    format: Literal["json", "csv"] = "json"
    records: str | None = Field(None, description="json: dotted path to the list of places (e.g. data.lots); "
                                "default: the document is the list")
    fields: AvailabilityFields = Field(default_factory=AvailabilityFields)
    statuses: dict[str, PlaceStatus] = Field(default_factory=dict, description="source status values -> ours, "
                                             "e.g. {OPEN: available}; ours pass unchanged")
    interval_s: float = Field(60.0, ge=5, le=86400)
    timeout_s: float = Field(10.0, gt=0, le=120)
    max_bytes: int = Field(5_000_000, ge=1000, le=100_000_000, description="a larger answer is refused")
    key: SourceKey | None = Field(None, description="the source's API key, from an environment variable")

    @field_validator("url")
    @classmethod
    def _http(cls, v):
        if not v.lower().startswith(("http://", "https://")):
            raise ValueError(f"{v[:80]!r} is not an http(s) URL; a local file of places is the layer's source "
                             "(GeoJSON), or post them to /live/<layer>/items")
        return v


class AvailabilityConfig(_Strict):
    category: Literal["parking", "ev_charging"] = "parking"
    stale_after_s: float = Field(3600.0, ge=60, le=7 * 86400, description="a place is served this long after "
                                 "its updated time, then dropped until it is updated again")
    poll: AvailabilityPoll | None = None


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
    license: str | None = Field(None, description="licence of the layer's data, an SPDX id (e.g. CC-BY-4.0) or "
                                "'other'; defaults to server.license")
    source: list[str] = Field(default_factory=list, description="source file(s), relative to the project")
    crs: str | None = Field(None, description="declared source CRS; overrides the file's own")
    accept_source_crs: bool = Field(False, description="publish with the source's own CRS even though it lacks "
                                    "the datum shift it needs (a Bessel .prj); declaring crs is better")
    encoding: str | None = Field(None, description="text encoding of the source, e.g. cp949")
    fields: list[str] | None = Field(None, description="fields to publish; None publishes all")
    id_field: str | None = Field(None, description="source field holding a stable feature id")
    # without them: the kind's default here; ingest and build write one fitted to the data
    minzoom: int = Field(default_factory=lambda data: KIND_MINZOOM.get(data.get("kind"), KIND_MINZOOM["generic"]),
                         ge=0, le=22, description="first zoom of the vector tiles")
    maxzoom: int = Field(MAXZOOM, ge=0, le=22, description="last zoom of the vector tiles")
    height_field: str | None = None
    floors_field: str | None = None
    storey_height: float | None = Field(None, gt=0, le=20)
    base_field: str | None = Field(None, description="buildings: ground height attribute (m) for 3D Tiles")
    dem: str | None = Field(None, description="buildings: raster layer whose COG gives the ground height")
    lod: int | None = Field(None, ge=1, le=2, description="city_model: only this LOD (default LOD1 far, LOD2 near)")
    implicit: bool | None = Field(None, description="buildings, city_model: 3D Tiles with implicit tiling (subtree "
                                  "files) or an explicit tree; default: implicit from 50,000 buildings")
    meshopt: bool = Field(True, description="buildings, city_model: 3D Tiles meshes compressed with "
                          "EXT_meshopt_compression (false: plain quantized meshes, for clients without a decoder)")
    textures: bool = Field(False, description="city_model: keep the source's textures (CityGML "
                           "ParameterizedTexture, CityJSON appearance), one JPEG atlas per tile")
    models: list[LandmarkModel] | None = Field(None, description="landmark_models: the models to place")
    availability: AvailabilityConfig | None = Field(None, description="live: the items are places with live "
                                                    "capacity, free, status and updated (parking, EV chargers)")
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
        if self.availability is not None and self.kind != "live":
            raise ValueError(f"availability is for layers of kind live (places posted or polled), not {self.kind}")
        return self


class RealtimeConfig(_Strict):
    """GTFS-Realtime feeds for one ingested GTFS feed (pipelines/gtfs_rt); URLs polled by citytwin serve."""

    vehicle_positions: str | None = Field(None, description="VehiclePositions URL (http or https)")
    trip_updates: str | None = Field(None, description="TripUpdates URL: real-time departures")
    alerts: str | None = Field(None, description="Alerts URL")
    vehicles_layer: str | None = Field(None, description="live layer that shows the vehicles")
    alerts_layer: str | None = Field(None, description="live layer that shows the alerts")
    interval_s: float = Field(30.0, ge=1, le=3600, description="how often the feeds are published")
    max_age_s: float = Field(300.0, ge=10, le=86400, description="a feed whose header timestamp is older is "
                             "stale and refused; what was loaded expires this long after its timestamp")
    max_bytes: int = Field(16_000_000, ge=1000, le=200_000_000, description="larger feeds are refused unread")
    max_entities: int = Field(100_000, ge=1, le=1_000_000)
    max_unknown_share: float = Field(0.2, ge=0, le=1, description="a feed whose share of entities naming "
                                     "trips, routes or stops unknown to the static feed is over this is refused")

    @field_validator("vehicle_positions", "trip_updates", "alerts")
    @classmethod
    def _http(cls, v):
        if v is not None and not v.lower().startswith(("http://", "https://")):
            raise ValueError(f"{v[:80]!r} is not an http(s) URL; load a feed file with 'citytwin realtime'")
        return v

    @model_validator(mode="after")
    def _layers_named(self):
        for url, layer in (("vehicle_positions", "vehicles_layer"), ("alerts", "alerts_layer")):
            if getattr(self, url) and not getattr(self, layer):
                raise ValueError(f"{url} needs {layer}: the live layer that shows them")
        return self


class ServerConfig(_Strict):
    title: str = "citytwin"
    description: str = "3D city platform: OGC API Features, Tiles and 3D Tiles"
    url: str | None = Field(None, description="public base URL; defaults to http://localhost:PORT")
    language: str = "en-US"
    license: str = Field("other", description="licence of the published data unless a layer names its own: "
                         "an SPDX id (e.g. CC-BY-4.0, KOGL-1) or 'other'")
    tile_cache_mb: float = Field(256.0, gt=0, le=1_000_000, description="bound of the server's warm tile cache "
                                 "in megabytes (10^6 bytes), per server process")
    tile_db_connections: int | None = Field(None, ge=1, le=100, description="PostgreSQL connections each server "
                                            "process makes PostGIS tiles on; default 3 per CPU core of this machine "
                                            "(4 to 16). Raise it when the database runs on a bigger machine")


class Catalog(_Strict):
    """citytwin.yaml as validated data."""

    name: str = "citytwin project"
    server: ServerConfig = Field(default_factory=ServerConfig)
    build_dir: str = "build"
    storey_height: float = Field(3.0, gt=0, le=20, description="metres per storey when only floors are known")
    api_keys_file: str | None = Field(None, description="file of 'key_id: key' lines allowed to run processes and "
                                      "post live items, relative to the project; keep it out of version control")
    layers: dict[str, LayerConfig] = Field(default_factory=dict)
    realtime: dict[str, RealtimeConfig] = Field(default_factory=dict, description="GTFS-Realtime feeds, by the "
                                                "name the GTFS feed was ingested as (its layers' prefix)")

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

    @model_validator(mode="after")
    def _realtime_layers(self):
        for feed, rt in self.realtime.items():
            check_layer_name(feed)
            for key in ("vehicles_layer", "alerts_layer"):
                name = getattr(rt, key)
                if name is not None and (name not in self.layers or self.layers[name].kind != "live"):
                    raise ValueError(f"realtime.{feed}.{key}: {name!r} must be a layer of kind live in 'layers'")
        return self

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


def _validate(path: Path, text: str) -> Catalog:
    """The catalog as ``text`` reads: what load_catalog returns, and what an edit must leave behind."""
    try:
        data = yaml.safe_load(text) or {}
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
    cat.root = path.parent
    return cat


def _catalog_path(project: str | os.PathLike) -> Path:
    path = Path(project).resolve() / CATALOG_FILE
    if not path.is_file():
        raise CatalogError(f"{path}: no catalog here. Run 'citytwin init {project}' to write a starter one.")
    return path


def load_catalog(project: str | os.PathLike = ".") -> Catalog:
    """Load and validate ``project/citytwin.yaml``."""
    path = _catalog_path(project)
    return _validate(path, path.read_text(encoding="utf-8"))


# --- writing: structural edits that keep the user's comments and layout ------------------

def _round_trip() -> YAML:
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap a user's long line
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


def _styled(value: object) -> object:
    """Plain data as the catalog writes it: nested maps in block style, short lists as [a, b]."""
    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _styled(v)
        return out
    if isinstance(value, (list, tuple)):
        seq = CommentedSeq(_styled(v) for v in value)
        if not any(isinstance(v, (dict, list, tuple)) for v in value):
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, str) and _read_as_yaml_1_1(value) != value:
        # ruamel writes YAML 1.2, where 'yes', 'on' or '0755' are plain text; load_catalog reads
        # YAML 1.1 (PyYAML), where they are not. Quoted, they read back as the same text.
        return DoubleQuotedScalarString(value)
    return value


def _read_as_yaml_1_1(text: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def shown(value: object) -> str:
    """A setting's value as reports print it."""
    return "not set" if value is None else str(list(value) if isinstance(value, list) else value)


class CatalogEdit:
    """citytwin.yaml loaded as a round-trip document, so comments, key order and layout survive."""

    def __init__(self, path: Path):
        self.path = path
        self.original = path.read_text(encoding="utf-8")
        self.catalog = _validate(path, self.original)  # a broken catalog is reported as load_catalog does
        try:
            self.doc = _round_trip().load(self.original)
        except YAMLError as exc:
            raise CatalogError(f"{path}: cannot be edited safely ({str(exc).splitlines()[0]}); fix it by hand") from None
        if self.doc is None:
            self.doc = CommentedMap()

    def _layers(self) -> CommentedMap:
        layers = self.doc.get("layers")
        if not isinstance(layers, CommentedMap):  # 'layers:' left empty
            layers = self.doc["layers"] = CommentedMap()
        layers.fa.set_block_style()  # 'layers: {}' of the starter catalog grows into a block
        return layers

    def has_layer(self, name: str) -> bool:
        return name in self.catalog.layers

    def set_layer(self, name: str, values: dict[str, object]) -> list[str]:
        """Add layer ``name``, or set the given keys of its entry (None removes a key).

        Returns what changed in an existing entry, for the command's report.
        """
        check_layer_name(name)
        layers = self._layers()
        if name not in layers:
            layers[name] = _styled({k: v for k, v in values.items() if v is not None})
            return []
        entry = layers[name]
        if not isinstance(entry, CommentedMap):  # 'name:' with nothing under it
            entry = layers[name] = CommentedMap()
        changes = []
        for key, value in values.items():
            old = entry.get(key)
            if value is None and key in entry:
                del entry[key]
            elif value is not None and old != value:
                entry[key] = _styled(value)
            else:
                continue
            changes.append(f"{key}: {shown(value)} (was {shown(old)})")
        return changes

    def render(self) -> str:
        buf = io.StringIO()
        _round_trip().dump(self.doc, buf)
        return buf.getvalue()

    def check(self) -> Catalog:
        """The catalog as the next load will read it; CatalogError when the edit made it invalid."""
        return _validate(self.path, self.render())


@contextmanager
def edit_catalog(project: str | os.PathLike) -> Iterator[CatalogEdit]:
    """Lock citytwin.yaml against other writers, yield it for changes, then write it back.

    It is written only when the block ends without an error and the edit validates as
    load_catalog reads it: to a temporary file beside it, swapped in with os.replace, so
    a reader or a crash sees the old file or the new one, never a mix.
    """
    path = _catalog_path(project)
    lock = os.open(path.parent, os.O_RDONLY)  # a lock on the folder: no lock file left lying around
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        edit = CatalogEdit(path)
        yield edit
        text = edit.render()
        if text != edit.original:
            edit.check()
            replace_text(path, text)
    finally:
        os.close(lock)  # releases the lock


def add_layer_entry(project: str | os.PathLike, name: str, entry: dict) -> None:
    """Add a layer to citytwin.yaml unless it is there already (comments and other keys kept).

    Used by the commands that create layers (ingest, geotag, hotspots, raster, transit), so a
    layer is always one catalog entry.
    """
    with edit_catalog(project) as edit:
        if not edit.has_layer(name):
            edit.set_layer(name, entry)
            if edit.check().layers[name] != LayerConfig.model_validate(entry):
                raise CatalogError(f"{edit.path}: layer {name!r} would not read back as written; nothing was "
                                   "changed. Add it by hand.")
