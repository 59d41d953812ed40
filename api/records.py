"""OGC API Records: one record per published layer and per style, made from the catalog, the
generated pygeoapi configuration and the build folder.

A record says what a layer is (title, description, keywords from its catalog entry and its
kind), where (its extent, as the record's geometry), in which CRS, when it was built (the
newest of its build files) and how to get it: links to its features, vector tiles, TileJSON,
3D Tiles, COG tiles and the styles that draw it (vector tiles are linked when pygeoapi
serves them, i.e. when the collection has a tile provider). Records are made once at start, as pygeoapi's
configuration is, so they describe exactly what this process serves.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import rasterio
from rasterio.warp import transform_bounds

from api.threed_routes import ThreeDRoutes
from api.tile_sources import pmtiles_path
from geo.errors import CatalogError
from pipelines.catalog import CATALOG_FILE, Catalog, LayerConfig
from pipelines.last_ingest import RECORD_DIR
from pipelines.live import live_path
from pipelines.rasters import cog_path

log = logging.getLogger("citytwin.records")
CATALOG_ID = "catalog"
RECORD_CORE = "http://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
ECEF = "http://www.opengis.net/def/crs/EPSG/0/4978"  # 3D Tiles content is placed in earth-centred metres
TILESETS_VECTOR_REL = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
DATASET, STYLE = "dataset", "style"

# Words a reader would search for, by catalog kind (the kind itself is always a keyword).
KIND_KEYWORDS: dict[str, tuple[str, ...]] = {
    "buildings": ("buildings", "footprints", "heights"),
    "pois": ("points of interest", "landmarks"),
    "boundaries": ("administrative boundaries",),
    "transit": ("transit", "public transport", "GTFS"),
    "hazard_zones": ("hazard", "risk"),
    "raster": ("raster", "grid"),
    "live": ("live", "real time"),
    "city_model": ("city model", "CityGML", "LOD2"),
    "landmark_models": ("landmarks", "3D models", "glTF"),
}


@dataclass(frozen=True)
class Sources:
    """What the records are made from."""

    catalog: Catalog
    resources: dict  # the generated pygeoapi resources: the collections served as features
    threed: ThreeDRoutes
    base_url: str
    store_file: Path | None  # the embedded store, whose time stands in for a layer never ingested here
    styles_dir: Path


def check_catalog_id(catalog: Catalog) -> None:
    """The records collection's id is taken; a layer of that name could not be reached."""
    if CATALOG_ID in catalog.layers:
        raise CatalogError(f"layer name {CATALOG_ID!r} in {catalog.root / CATALOG_FILE} is reserved for the "
                           "OGC API Records catalog of the layers; rename the layer")


def link(rel: str, media_type: str, title: str, href: str) -> dict:
    return {"rel": rel, "type": media_type, "title": title, "href": href}


def bbox_geometry(bbox: list[float] | None) -> dict | None:
    if bbox is None:
        return None
    w, s, e, n = bbox
    if w == e and s == n:
        return {"type": "Point", "coordinates": [w, s]}
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def union_bbox(boxes: list[list[float]]) -> list[float] | None:
    boxes = [b for b in boxes if len(b) == 4 and all(math.isfinite(v) for v in b)]
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _newest(paths: list[Path]) -> str | None:
    times = [p.stat().st_mtime for p in paths if p.is_file()]
    return _iso(max(times)) if times else None


def _unique(words: list[str]) -> list[str]:
    seen: set[str] = set()
    return [w for w in words if not (w.casefold() in seen or seen.add(w.casefold()))]


def _cog_facts(path: Path) -> tuple[list[float] | None, str | None]:
    """The COG's extent in lon/lat and its CRS as an OGC URI; (None, None) when it cannot be read
    (one damaged file must not keep the server from starting; its /cog routes say what is wrong)."""
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                return None, None
            bbox = [round(v, 7) for v in transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)]
            epsg = ds.crs.to_epsg()
    except rasterio.errors.RasterioError as exc:
        log.warning("raster layer %r: its COG cannot be read (%s); its record has no extent", path.stem, exc)
        return None, None
    return bbox, f"http://www.opengis.net/def/crs/EPSG/0/{epsg}" if epsg else ds.crs.to_wkt()


def style_layers(styles_dir: Path) -> dict[str, tuple[str, str, list[str]]]:
    """style id -> (name, description, the layers its sources name)."""
    out = {}
    for path in sorted(styles_dir.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        out[path.stem] = (str(doc.get("name") or path.stem), str(meta.get("citytwin:description") or ""),
                          sorted(doc.get("sources") or {}))
    return out


class RecordMaker:
    """Makes the record of each published layer and each style that draws one."""

    def __init__(self, src: Sources) -> None:
        self.src = src
        self.url = src.base_url.rstrip("/")
        self.styles = style_layers(src.styles_dir)

    def records(self) -> list[dict]:
        layers = [r for name, cfg in self.src.catalog.layers.items() if (r := self._layer(name, cfg))]
        published = {r["id"] for r in layers}
        styles = [self._style(sid, name, desc, [n for n in drawn if n in published])
                  for sid, (name, desc, drawn) in self.styles.items() if published.intersection(drawn)]
        return layers + styles

    def _record(self, rid: str, rtype: str, props: dict, geometry: dict | None, links: list[dict]) -> dict:
        self_link = link("self", "application/geo+json", "This record", f"{self.url}/collections/{CATALOG_ID}/items/{rid}")
        up = link("collection", "application/json", "The catalog", f"{self.url}/collections/{CATALOG_ID}")
        updated = props.get("updated")
        return {"id": rid, "type": "Feature", "conformsTo": [RECORD_CORE],
                "time": {"timestamp": updated} if updated else None, "geometry": geometry,
                "properties": {"type": rtype, **props}, "links": [self_link, up, *links]}

    def _layer(self, name: str, cfg: LayerConfig) -> dict | None:
        catalog, url = self.src.catalog, self.url
        resource = self.src.resources.get(name)
        tiles = resource is not None and any(p.get("type") == "tile" for p in resource["providers"])
        three_d = self.src.threed.has_tileset(name)
        cog = cog_path(catalog, name) if cfg.kind == "raster" else None
        if cog is not None and not cog.is_file():
            cog = None
        if resource is None and not three_d and cog is None:
            return None  # not published (yet)
        links, boxes, crs, formats, words = [], [], [], [], [name, cfg.kind, *KIND_KEYWORDS.get(cfg.kind, ())]
        if resource is not None:
            links += [link("describes", "application/json", "The collection", f"{url}/collections/{name}"),
                      link("items", "application/geo+json", "Features", f"{url}/collections/{name}/items")]
            if cfg.kind != "live":  # a live layer's extent is where its items happen to be
                boxes.append(resource["extents"]["spatial"]["bbox"])
            crs += resource["providers"][0].get("crs", [CRS84])
            formats.append({"name": "GeoJSON", "mediaType": "application/geo+json"})
            words.append("features")
        templates = []
        if cfg.kind == "live":
            links.append(link("alternate", "application/geo+json", "Live items (short cache)", f"{url}/live/{name}/items"))
            templates.append({"rel": "item", "type": "application/vnd.mapbox-vector-tile", "title": "Live vector tiles",
                              "uriTemplate": f"{url}/live/{name}/tiles/{{z}}/{{x}}/{{y}}",
                              "variables": {v: {"type": "integer", "minimum": 0} for v in ("z", "x", "y")}})
        if tiles:
            links += [link(TILESETS_VECTOR_REL, "application/json", "Vector tilesets", f"{url}/collections/{name}/tiles"),
                      link("describedby", "application/json", "TileJSON",
                           f"{url}/collections/{name}/tiles/WebMercatorQuad/tilejson.json")]
            formats.append({"name": "MVT", "mediaType": "application/vnd.mapbox-vector-tile"})
            words.append("vector tiles")
        if three_d:
            links.append(self.src.threed.link(name))
            box = self.src.threed.tileset_bbox(name)
            if box is not None:
                boxes.append(box[:2] + box[3:5])
            crs.append(ECEF)
            formats.append({"name": "3D Tiles", "mediaType": "application/3dtiles+json"})
            words.append("3D Tiles")
        if cog is not None:
            box, cog_crs = _cog_facts(cog)
            boxes += [box] if box else []
            crs += [cog_crs] if cog_crs else []
            links += [link("describedby", "application/json", "COG TileJSON",
                           f"{url}/cog/WebMercatorQuad/tilejson.json?name={name}"),
                      link("describedby", "application/json", "COG information", f"{url}/cog/info?name={name}")]
            templates.append({"rel": "item", "type": "image/png", "title": "COG tiles",
                              "uriTemplate": f"{url}/cog/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?name={name}",
                              "variables": {v: {"type": "integer", "minimum": 0} for v in ("z", "x", "y")}})
            formats.append({"name": "COG", "mediaType": COG_MEDIA_TYPE})
            words.append("COG")
        links += [link("stylesheet", "application/json", f"Style: {style[0]}", f"{url}/styles/{sid}")
                  for sid, style in self.styles.items() if name in style[2]]
        props = {
            "title": cfg.title or name.replace("_", " ").capitalize(),
            "description": cfg.description or f"{cfg.kind} layer '{name}'",
            "keywords": _unique(words), "kind": cfg.kind, "formats": formats, "crs": _unique(crs),
            "license": cfg.license or self.src.catalog.server.license,
        }
        updated = None if cfg.kind == "live" else self._updated(name, cog)
        if updated:
            props["updated"] = updated
        record = self._record(name, DATASET, props, bbox_geometry(union_bbox(boxes)), links)
        if templates:
            record["linkTemplates"] = templates
        return record

    def _updated(self, name: str, cog: Path | None) -> str | None:
        """When the layer was last built: the newest of its build files."""
        build = self.src.catalog.build_path
        files = [build / RECORD_DIR / f"{name}.json", pmtiles_path(self.src.catalog, name),
                 self.src.threed.folder(name) / "tileset.json", live_path(self.src.catalog, name)]
        files += [cog] if cog else []
        newest = _newest(files)
        if newest is None and self.src.store_file is not None and name in self.src.resources:
            newest = _newest([self.src.store_file])
        return newest

    def _style(self, sid: str, title: str, description: str, drawn: list[str]) -> dict:
        url = self.url
        links = [link("stylesheet", "application/json", "MapLibre style", f"{url}/styles/{sid}")]
        links += [link("related", "application/geo+json", f"Record of layer {n}",
                       f"{url}/collections/{CATALOG_ID}/items/{n}") for n in drawn]
        props = {"title": title, "description": description or f"MapLibre style drawing {', '.join(drawn)}",
                 "keywords": _unique(["style", "MapLibre", *drawn]), "kind": STYLE,
                 "formats": [{"name": "MapLibre style", "mediaType": "application/json"}],
                 "updated": _newest([self.src.styles_dir / f"{sid}.json"])}
        return self._record(f"style-{sid}", STYLE, props, None, links)
