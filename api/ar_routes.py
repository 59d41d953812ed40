"""AR endpoints: what is around me, where do I draw it, and how do I walk there.

- GET /ar/view?lon=&lat=&alt=&heading=&pitch=&fov=&vfov=&radius=&lang=&limit=&terrain=
  POIs inside the view frustum, nearest first, each with distance, bearing, elevation
  angle, East-North-Up offset (via ECEF), label in the asked language (-> en -> ko), and
  ``occluded`` from a 2.5D line-of-sight test against the LOD1 buildings. Transit stops in the
  frustum come in ``stops``, each with its next departures per route (``departures=N``, ``at=``:
  api.departure_boards).
- GET /ar/anchors?bbox=&types=&lang=&limit=&terrain=  WGS84 anchor points (POIs, building
  entrances, transit stops, places with live availability: capacity, free, status, updated)
  with the height of the roof or ground beneath each.
- GET /ar/route?from=&to=&lang=  a walking polyline on the street layer with turn
  instructions in ko/en/ja/zh.
- The OpenAPI paths of these three (merged into /openapi by api.openapi_doc).

Heights are WGS84 ellipsoidal metres (EPSG:4979). With ``terrain=none`` the ground is at 0
and buildings stand on their base_height (0 when absent): exactly where tiles/threed puts
the 3D Tiles. With ``terrain=dem`` (the default when a DEM raster exists) the ground comes
from the DEM, and buildings without a base_height stand on the DEM at their centre.
Bad parameters answer 400 ``{"code", "description"}``; while the index is still being built after
the server started, the three answer 503 with Retry-After (api.ar_index).
"""
from __future__ import annotations

import math
import re
import time

import numpy as np
import orjson
import shapely
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from api.ar_index import GROUND_MODES, ArIndex, IndexHolder, IndexNotReady, ground_function
from api.ar_places import availability_anchors, availability_layers
from api.ar_stops import stops_in_view
from api.departure_boards import DepartureBoards, board_parameters, board_query
from api.errors import error
from api.params import BadParameter, integer, number
from geo.ecef import ecef_to_enu, enu_rotation, to_ecef
from geo.i18n import LanguageError, instruction, normalise_lang, pick, template_lang, turn_kind
from geo.visibility import Frustum, look, occlusion
from geo.walking import NoRoute
from pipelines.build import THREE_D_ONLY, TILES3D_DIR
from pipelines.catalog import Catalog
from pipelines.store import Store

DEFAULT_RADIUS_M = 500.0
MAX_RADIUS_M = 3000.0
DEFAULT_FOV = 60.0
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
EYE_HEIGHT_M = 1.6
MAX_ANCHORS = 5000
DEFAULT_ANCHORS = 1000
MAX_BBOX_DEG = 0.1
MAX_SNAP_M = 1000.0
WALK_SPEED_MS = 1.3
ANCHOR_TYPES = ("poi", "entrance", "transit_stop", "availability")
HEIGHT_REFERENCE = "ellipsoid"
TILESET_RECHECK_S = 2.0


# -- parameters ---------------------------------------------------------------------------
def language(params) -> str:
    try:
        return normalise_lang(params.get("lang"))
    except LanguageError as exc:
        raise BadParameter(str(exc)) from None


def ground_mode(params, index: ArIndex) -> str:
    mode = (params.get("terrain") or index.default_ground).strip().lower()
    if mode not in GROUND_MODES:
        raise BadParameter(f"parameter 'terrain' must be one of {', '.join(GROUND_MODES)}, got {mode[:20]!r}")
    if mode not in index.grounds:
        raise BadParameter("terrain=dem needs a DEM raster layer (kind raster, named e.g. 'dem') built "
                           "with 'citytwin build'; this project has none, use terrain=none")
    return mode


def bbox_param(params) -> tuple[float, float, float, float]:
    raw = params.get("bbox")
    if not raw:
        raise BadParameter("parameter 'bbox' is required: minlon,minlat,maxlon,maxlat (WGS84)")
    parts = raw.split(",")
    if len(parts) != 4:
        raise BadParameter(f"parameter 'bbox' must be 4 numbers minlon,minlat,maxlon,maxlat, got {raw[:80]!r}")
    try:
        w, s, e, n = (float(p) for p in parts)
    except ValueError:
        raise BadParameter(f"parameter 'bbox' must be 4 numbers minlon,minlat,maxlon,maxlat, got {raw[:80]!r}") from None
    if not all(map(math.isfinite, (w, s, e, n))):
        raise BadParameter("parameter 'bbox' must hold finite numbers")
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise BadParameter(f"parameter 'bbox' {raw[:80]!r}: need -180 <= minlon < maxlon <= 180 and "
                           "-90 <= minlat < maxlat <= 90")
    if e - w > MAX_BBOX_DEG or n - s > MAX_BBOX_DEG:
        raise BadParameter(f"parameter 'bbox' is too large: at most {MAX_BBOX_DEG} degrees a side; ask in parts")
    return w, s, e, n


# -- shared response parts ----------------------------------------------------------------
def height_note(index: ArIndex, mode: str) -> str:
    if mode == "dem":
        return (f"WGS84 ellipsoidal heights in metres (EPSG:4979); ground from DEM layer '{index.dem_layer}' "
                "(its values taken as ellipsoidal heights), buildings without base_height stand on the DEM at "
                "their centre. The 3D Tiles stand on base_height (0 when absent): use terrain=none to match them.")
    return ("WGS84 ellipsoidal heights in metres (EPSG:4979); ground at 0 and buildings on base_height "
            "(0 when absent) + height, as the 3D Tiles are placed.")


def _r(v: float, nd: int) -> float:
    return round(float(v), nd) + 0.0


def _rounded(values: np.ndarray, nd: int) -> list[float]:
    """Like _r over an array (adding 0.0 turns -0.0 into 0.0)."""
    return (np.round(np.asarray(values, dtype=np.float64), nd) + 0.0).tolist()


def not_ready(exc: IndexNotReady) -> Response:
    return error(503, "ServiceUnavailable", str(exc), headers={"Retry-After": str(exc.retry_after_s)})


class ArRoutes:
    """The AR endpoints over one in-memory index (see api.ar_index)."""

    def __init__(self, catalog: Catalog, store: Store, base_url: str, boards: DepartureBoards | None = None):
        self.catalog = catalog
        self.base_url = base_url.rstrip("/")
        self.holder = IndexHolder(catalog, store)
        self.boards = boards or DepartureBoards(catalog)
        self.places = availability_layers(catalog)
        self._tilesets: tuple[float, int, list[dict]] = (-1.0, -1, [])

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/ar/view", self.view, methods=["GET", "HEAD"]),
            Route("/ar/anchors", self.anchors, methods=["GET", "HEAD"]),
            Route("/ar/route", self.route, methods=["GET", "HEAD"]),
        ]

    def tilesets(self, index: ArIndex) -> list[dict]:
        """3D Tiles links: the buildings layers' first (what occludes), then the layers that are
        only 3D Tiles (placed landmark models, city models). Looked up again every few seconds."""
        checked, owner, cached = self._tilesets
        now = time.monotonic()
        if owner == id(index) and now - checked < TILESET_RECHECK_S:
            return cached
        root = self.catalog.build_path / TILES3D_DIR
        layers = [*index.building_layers,
                  *(name for name, cfg in self.catalog.layers.items() if cfg.kind in THREE_D_ONLY)]
        out = [{"layer": layer, "kind": self.catalog.layers[layer].kind,
                "href": f"{self.base_url}/collections/{layer}/3dtiles/tileset.json"}
               for layer in layers if layer in self.catalog.layers and (root / layer / "tileset.json").is_file()]
        self._tilesets = (now, id(index), out)
        return out

    def _notes(self, index: ArIndex) -> list[str]:
        notes = list(index.notes)
        if self.holder.last_error:
            notes.append(self.holder.last_error)
        if not len(index.pois):
            notes.append("no layer of kind 'pois' in the store: nothing to show")
        if not len(index.building_id):
            notes.append("no buildings layer with heights in the store: nothing occludes")
        return notes

    # -- /ar/view ---------------------------------------------------------------------
    async def view(self, request: Request) -> Response:
        try:
            index = self.holder.get()
        except IndexNotReady as exc:
            return not_ready(exc)
        try:
            if len(index.stops):  # departures may read a timetable or real-time store: off the event loop
                doc = await run_in_threadpool(self.view_doc, index, request.query_params)
            else:
                doc = self.view_doc(index, request.query_params)
        except BadParameter as exc:
            return error(400, "InvalidParameterValue", str(exc))
        return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    def view_doc(self, index: ArIndex, q) -> dict:
        lon = number(q, "lon", None, -180, 180)
        lat = number(q, "lat", None, -90, 90)
        mode = ground_mode(q, index)
        ground = index.grounds[mode]
        notes = self._notes(index)
        if q.get("alt") in (None, ""):
            alt = float(ground_function(index, mode)(np.array([lon]), np.array([lat]))[0]) + EYE_HEIGHT_M
            notes.append(f"alt not given: {EYE_HEIGHT_M} m above the ground model '{mode}'")
        else:
            alt = number(q, "alt", None, -1000, 100_000)
        heading = number(q, "heading", 0.0) % 360.0
        pitch = number(q, "pitch", 0.0, -90, 90)
        fov = number(q, "fov", DEFAULT_FOV, 0, 179, lo_open=True)
        vfov = number(q, "vfov", fov, 0, 179, lo_open=True)
        radius = number(q, "radius", DEFAULT_RADIUS_M, 0, None, lo_open=True)
        limit = integer(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        lang = language(q)
        bq = board_query(q)
        doc: dict = {}
        if radius > MAX_RADIUS_M:
            doc["radius_capped_to"] = MAX_RADIUS_M
            notes.append(f"radius {radius:g} m is above the maximum; capped to {MAX_RADIUS_M:g} m")
            radius = MAX_RADIUS_M
        frustum = Frustum(heading, pitch, fov, vfov, radius)

        pois = index.pois
        x, y = index.frame.xy(np.array([lon]), np.array([lat]))
        dx, dy = float(x[0]), float(y[0])
        cand = pois.tree.query(shapely.box(dx - radius, dy - radius, dx + radius, dy + radius)) \
            if len(pois) else np.zeros(0, dtype=np.int64)
        origin = to_ecef(np.array([[lon, lat, alt]]))[0]
        enu = ecef_to_enu(ground.poi_ecef[cand], origin, enu_rotation(lon, lat))
        inside = frustum.contains(enu)
        cand, enu = cand[inside], enu[inside]
        where = look(enu)
        order = np.lexsort((pois.id[cand].astype(str), where.distance_m))[:limit]
        cand, enu = cand[order], enu[order]
        where = look(enu)
        ends = np.column_stack([pois.xy[cand], ground.poi_h[cand]])
        occ = occlusion(ground.blocks, np.array([dx, dy, alt]), ends)

        # round whole columns at once: per-value round() calls were a tenth of the request time
        col = {
            "lon": _rounded(pois.lon[cand], 7), "lat": _rounded(pois.lat[cand], 7),
            "height": _rounded(ground.poi_h[cand], 3), "distance_m": _rounded(where.distance_m, 2),
            "ground_distance_m": _rounded(where.ground_distance_m, 2), "bearing_deg": _rounded(where.bearing_deg, 3),
            "elevation_deg": _rounded(where.elevation_deg, 3),
        }
        enu_r = (np.round(enu, 3) + 0.0).tolist()
        names, name_langs = pois.labels("name", lang, cand)
        descs, desc_langs = pois.labels("description", lang, cand)
        bare = pois.text.get("name")
        ids, layers, cats = pois.id[cand].tolist(), pois.layer[cand].tolist(), pois.category[cand].tolist()
        roofs, hidden, blockers = ground.poi_roof[cand].tolist(), occ.occluded.tolist(), occ.blocker.tolist()
        items = []
        for k, i in enumerate(cand.tolist()):
            name = names[k]
            if name is None:
                name = bare[i] if bare is not None and isinstance(bare[i], str) else str(ids[k])
            b = blockers[k]
            items.append({
                "id": str(ids[k]), "layer": str(layers[k]), "name": name, "name_lang": name_langs[k],
                "description": descs[k], "description_lang": desc_langs[k], "category": cats[k],
                "lon": col["lon"][k], "lat": col["lat"][k], "height": col["height"][k], "on_roof": roofs[k],
                "distance_m": col["distance_m"][k], "ground_distance_m": col["ground_distance_m"][k],
                "bearing_deg": col["bearing_deg"][k], "elevation_deg": col["elevation_deg"][k],
                "enu": enu_r[k],
                "occluded": hidden[k],
                "occluded_by": ({"layer": str(index.building_layer[b]), "id": str(index.building_id[b])}
                                if b >= 0 else None),
            })
        board = self.boards.request()
        stops = stops_in_view(index, ground, frustum, (lon, lat, alt), limit, board, bq)
        notes += board.notes
        tilesets = self.tilesets(index)
        doc = {
            "type": "ar-view",
            "pose": {"lon": lon, "lat": lat, "alt": _r(alt, 3), "heading": heading, "pitch": pitch,
                     "fov": fov, "vfov": vfov, "radius": radius},
            **doc,
            "lang": lang,
            "height_reference": HEIGHT_REFERENCE,
            "terrain": mode,
            "height_convention": height_note(index, mode),
            "tileset": next((t["href"] for t in tilesets if t["kind"] == "buildings"), None),
            "tilesets": tilesets,
            "occluders": {"kind": "LOD1 blocks", "layers": index.building_layers,
                          "count": int(len(index.building_id))},
            "count": len(items),
            "items": items,
            "stops": stops,
            "notes": notes,
        }
        return doc

    # -- /ar/anchors ------------------------------------------------------------------
    async def anchors(self, request: Request) -> Response:
        try:
            index = self.holder.get()
        except IndexNotReady as exc:
            return not_ready(exc)
        try:
            doc = await run_in_threadpool(self.anchors_doc, index, request.query_params)
        except BadParameter as exc:
            return error(400, "InvalidParameterValue", str(exc))
        return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    def anchors_doc(self, index: ArIndex, q) -> dict:
        w, s, e, n = bbox_param(q)
        mode = ground_mode(q, index)
        lang = language(q)
        limit = integer(q, "limit", DEFAULT_ANCHORS, 1, MAX_ANCHORS)
        raw_types = q.get("types")
        types = [t.strip() for t in raw_types.split(",")] if raw_types else list(ANCHOR_TYPES)
        bad = [t for t in types if t not in ANCHOR_TYPES]
        if bad:
            raise BadParameter(f"parameter 'types': unknown {', '.join(repr(b[:20]) for b in bad)}; "
                               f"use any of {', '.join(ANCHOR_TYPES)}")
        ground = index.grounds[mode]
        notes = self._notes(index)
        items: list[dict] = []

        def within(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
            return np.flatnonzero((lon >= w) & (lon <= e) & (lat >= s) & (lat <= n))

        if "poi" in types:
            p = index.pois
            rows = within(p.lon, p.lat)
            for i, name, name_lang in zip(rows, *p.labels("name", lang, rows)):
                items.append({"type": "poi", "id": str(p.id[i]), "layer": str(p.layer[i]), "name": name,
                              "name_lang": name_lang, "category": p.category[i],
                              "lon": _r(p.lon[i], 7), "lat": _r(p.lat[i], 7), "height": _r(ground.poi_h[i], 3),
                              "surface": "rooftop" if ground.poi_roof[i] else "terrain"})
        if "entrance" in types:
            ent = index.entrances
            if not index.street_layers:
                notes.append("no street layer (named 'streets' or '*_streets'): building entrances are not derived")
            for j in within(ent["lon"].to_numpy(float), ent["lat"].to_numpy(float)):
                b = int(ent["building"].iat[j])
                items.append({"type": "entrance", "id": f"{index.building_id[b]}:entrance",
                              "building": {"layer": str(index.building_layer[b]), "id": str(index.building_id[b])},
                              "lon": _r(ent["lon"].iat[j], 7), "lat": _r(ent["lat"].iat[j], 7),
                              "height": _r(ground.entrance_h[j], 3), "surface": "terrain",
                              "distance_to_street_m": _r(ent["distance_to_street_m"].iat[j], 2)})
        if "transit_stop" in types:
            st = index.stops
            for j in within(st["lon"].to_numpy(float), st["lat"].to_numpy(float)):
                items.append({"type": "transit_stop", "id": str(st["id"].iat[j]), "layer": str(st["layer"].iat[j]),
                              "name": st["name"].iat[j] if isinstance(st["name"].iat[j], str) else None,
                              "lon": _r(st["lon"].iat[j], 7), "lat": _r(st["lat"].iat[j], 7),
                              "height": _r(ground.stop_h[j], 3),
                              "surface": "rooftop" if ground.stop_roof[j] else "terrain"})
        if "availability" in types:  # parking and chargers with their live counts
            items += availability_anchors(self.places, index, mode, (w, s, e, n), limit + 1, notes)
        truncated = len(items) > limit
        if truncated:
            notes.append(f"{len(items)} anchors in the bbox; the first {limit} are returned (raise limit up to "
                         f"{MAX_ANCHORS} or ask a smaller bbox)")
        terrain = ({"model": "dem", "layer": index.dem_layer, "source": "DEM COG sampled with rasterio"}
                   if mode == "dem" else
                   {"model": "none", "layer": None,
                    "source": "no DEM used: terrain height is 0" + ("" if index.dem is None else
                                                                   " (a DEM exists: terrain=dem uses it)")})
        return {"type": "ar-anchors", "bbox": [w, s, e, n], "lang": lang, "height_reference": HEIGHT_REFERENCE,
                "terrain": terrain, "height_convention": height_note(index, mode),
                "count": min(len(items), limit), "truncated": truncated, "items": items[:limit], "notes": notes}

    # -- /ar/route --------------------------------------------------------------------
    async def route(self, request: Request) -> Response:
        try:
            index = self.holder.get()
        except IndexNotReady as exc:
            return not_ready(exc)
        try:
            doc = await run_in_threadpool(self.route_doc, index, request.query_params)
        except BadParameter as exc:
            return error(400, "InvalidParameterValue", str(exc))
        except LookupError as exc:
            return error(404, "NotFound", str(exc.args[0]))
        except NoRoute as exc:
            return error(422, "NoRoute", str(exc))
        return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    def _place(self, index: ArIndex, name: str, raw: str | None, lang: str) -> dict:
        if raw is None or not raw.strip():
            raise BadParameter(f"parameter '{name}' is required: a POI id (e.g. landmarks:gyeongbokgung or "
                               "gyeongbokgung) or lon,lat")
        raw = raw.strip()
        if re.fullmatch(r"[-+0-9.eE]+\s*,\s*[-+0-9.eE]+", raw):
            lon_s, lat_s = (p.strip() for p in raw.split(","))
            lon = number({"lon": lon_s}, "lon", None, -180, 180)
            lat = number({"lat": lat_s}, "lat", None, -90, 90)
            return {"lon": lon, "lat": lat, "id": None, "layer": None, "name": None}
        if len(raw) > 200:
            raise BadParameter(f"parameter '{name}' is too long")
        p = index.pois
        i = p.key.get(raw)
        if i is None:
            raise LookupError(f"parameter '{name}': no POI {raw[:80]!r} in the layers of kind pois "
                              f"({', '.join(sorted(set(p.layer))) or 'none'}); give an id or lon,lat")
        label, _ = pick(lang, lambda c: p.text[f"name_{c}"][i])
        return {"lon": float(p.lon[i]), "lat": float(p.lat[i]), "id": str(p.id[i]), "layer": str(p.layer[i]),
                "name": label}

    def route_doc(self, index: ArIndex, q) -> dict:
        lang = language(q)
        a = self._place(index, "from", q.get("from"), lang)
        b = self._place(index, "to", q.get("to"), lang)
        if index.streets is None:
            raise LookupError("no street layer in the store (a line layer named 'streets' or '*_streets'); "
                              "the sample city has one: citytwin sample-city + build")
        frame = index.frame
        (ax, bx), (ay, by) = frame.xy(np.array([a["lon"], b["lon"]]), np.array([a["lat"], b["lat"]]))
        legs = index.streets.route((float(ax), float(ay)), (float(bx), float(by)))
        for place, (px, py) in ((a, (ax, ay)), (b, (bx, by))):
            snap = index.streets.edges[index.streets.tree.query_nearest(shapely.Point(px, py))[0]]
            place["snap_distance_m"] = _r(snap.distance(shapely.Point(px, py)), 2)
            if place["snap_distance_m"] > MAX_SNAP_M:
                raise BadParameter(f"'{'from' if place is a else 'to'}' is {place['snap_distance_m']:.0f} m from "
                                   f"the nearest street (at most {MAX_SNAP_M:g} m): is it inside the city?")

        def street_name(k: int) -> str | None:
            if k < 0:
                return None
            label, _ = pick(lang, lambda c: index.street_names[k].get(f"name_{c}"))
            return label or index.street_names[k].get("name")

        coords = np.vstack([np.array([[ax, ay]]), *[leg.coords for leg in legs], np.array([[bx, by]])]) \
            if legs else np.array([[ax, ay], [bx, by]])
        lon, lat = frame.lonlat(coords[:, 0], coords[:, 1])
        steps = []
        walked = 0.0
        for k, leg in enumerate(legs):
            street = street_name(leg.street)
            at_lon, at_lat = frame.lonlat(leg.coords[0, 0], leg.coords[0, 1])
            if k == 0:
                kind, turn = "depart", None
                text = instruction("depart", lang, street=street, bearing_deg=leg.start_bearing)
            else:
                turn = turn_kind(leg.start_bearing - legs[k - 1].end_bearing)
                kind = "turn" if turn else "continue"
                text = instruction(kind, lang, street=street, turn=turn)
            steps.append({"type": kind, "turn": turn, "street": street, "text": text,
                          "distance_m": _r(leg.length_m, 1), "at_distance_m": _r(walked, 1),
                          "bearing_deg": _r(round(leg.start_bearing, 1) % 360.0, 1),
                          "lon": _r(float(at_lon), 7), "lat": _r(float(at_lat), 7)})
            walked += leg.length_m
        total = float(np.hypot(*np.diff(coords, axis=0).T).sum())
        steps.append({"type": "arrive", "turn": None, "street": None,
                      "text": instruction("arrive", lang, place=b["name"]), "distance_m": 0.0,
                      "at_distance_m": _r(total, 1), "bearing_deg": None,
                      "lon": _r(b["lon"], 7), "lat": _r(b["lat"], 7)})
        return {
            "type": "ar-route", "lang": lang, "instructions_lang": template_lang(lang),
            "from": a, "to": b, "distance_m": _r(total, 1),
            "duration_s": _r(total / WALK_SPEED_MS, 0), "walking_speed_ms": WALK_SPEED_MS,
            "geometry": {"type": "LineString",
                         "coordinates": [[_r(x, 7), _r(y, 7)] for x, y in zip(np.atleast_1d(lon), np.atleast_1d(lat))]},
            "instructions": steps, "streets": index.street_layers, "notes": self._notes(index),
        }


# -- OpenAPI --------------------------------------------------------------------------------
def _param(name: str, desc: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": schema}


_ERROR = {"description": "Bad parameter: the message names it and says what is allowed",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ArError"}}}}
_NOT_READY = {"description": "The index is still being built after the server started; try again after "
                             "Retry-After seconds",
              "headers": {"Retry-After": {"schema": {"type": "integer"}}},
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ArError"}}}}
_LANG = _param("lang", "Language of labels and instructions (ko, en, ja, zh); missing text falls back to en, "
                       "then ko", {"type": "string", "default": "en",
                                   "pattern": "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$"})
_TERRAIN = _param("terrain", "Ground model: 'none' (ground at 0, as the 3D Tiles are placed) or 'dem' (a DEM "
                             "raster layer; the default when one exists)", {"type": "string", "enum": list(GROUND_MODES)})
_NUM = {"type": "number"}
_FOV = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 179}


def ar_openapi_paths() -> tuple[dict, dict, list[dict]]:
    """Path items, component schemas and tag for the AR endpoints (merged by api.openapi_doc)."""
    schemas = {
        "ArError": {"type": "object", "required": ["type", "code", "description"],
                    "properties": {"type": {"type": "string"}, "code": {"type": "string"},
                                   "description": {"type": "string"}}},
        "ArViewItem": {"type": "object", "properties": {
            "id": {"type": "string"}, "layer": {"type": "string"}, "name": {"type": "string"},
            "name_lang": {"type": "string", "nullable": True}, "description": {"type": "string", "nullable": True},
            "category": {"type": "string", "nullable": True}, "lon": _NUM, "lat": _NUM,
            "height": {"type": "number", "description": "ellipsoidal metres, same reference as alt"},
            "distance_m": _NUM, "ground_distance_m": _NUM,
            "bearing_deg": {"type": "number", "description": "clockwise from true north"},
            "elevation_deg": {"type": "number", "description": "above the local horizontal"},
            "enu": {"type": "array", "items": _NUM, "minItems": 3, "maxItems": 3,
                    "description": "East, North, Up metres from the device (via ECEF)"},
            "occluded": {"type": "boolean"},
            "occluded_by": {"type": "object", "nullable": True,
                            "properties": {"layer": {"type": "string"}, "id": {"type": "string"}}}}},
        "ArView": {"type": "object", "properties": {
            "pose": {"type": "object"}, "radius_capped_to": _NUM, "lang": {"type": "string"},
            "height_reference": {"type": "string", "enum": [HEIGHT_REFERENCE]}, "terrain": {"type": "string"},
            "height_convention": {"type": "string"},
            "tileset": {"type": "string", "nullable": True, "description": "the buildings' 3D Tiles (what occludes)"},
            "tilesets": {"type": "array", "description": "every 3D Tiles layer: buildings, then placed models",
                         "items": {"type": "object", "properties": {
                             "layer": {"type": "string"}, "kind": {"type": "string"}, "href": {"type": "string"}}}},
            "count": {"type": "integer"},
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/ArViewItem"}},
            "stops": {"type": "array", "description": "transit stops in the frustum with their next departures",
                      "items": {"type": "object", "properties": {
                          "feed": {"type": "string"}, "id": {"type": "string"}, "distance_m": _NUM,
                          "departures": {"type": "array", "items": {"type": "object"}}}}},
            "notes": {"type": "array", "items": {"type": "string"}}}},
        "ArAnchors": {"type": "object", "properties": {
            "bbox": {"type": "array", "items": _NUM}, "terrain": {"type": "object"},
            "height_reference": {"type": "string"}, "count": {"type": "integer"}, "truncated": {"type": "boolean"},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"type": "string", "enum": list(ANCHOR_TYPES)}, "id": {"type": "string"},
                "lon": _NUM, "lat": _NUM, "height": _NUM,
                "surface": {"type": "string", "enum": ["rooftop", "terrain"]}}}}}},
        "ArRoute": {"type": "object", "properties": {
            "distance_m": _NUM, "duration_s": _NUM,
            "geometry": {"type": "object", "description": "GeoJSON LineString (WGS84)"},
            "instructions": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"type": "string", "enum": ["depart", "turn", "continue", "arrive"]},
                "turn": {"type": "string", "nullable": True}, "street": {"type": "string", "nullable": True},
                "text": {"type": "string"}, "distance_m": _NUM, "lon": _NUM, "lat": _NUM}}}}},
    }

    def ok(schema: str, desc: str) -> dict:
        return {"description": desc,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}

    paths = {
        "/ar/view": {"get": {
            "summary": "POIs in the view frustum of a device, with ENU offsets and occlusion",
            "tags": ["AR"], "operationId": "arView",
            "parameters": [
                _param("lon", "Device longitude (WGS84)", {"type": "number", "minimum": -180, "maximum": 180}, True),
                _param("lat", "Device latitude (WGS84)", {"type": "number", "minimum": -90, "maximum": 90}, True),
                _param("alt", "Device ellipsoidal height in metres; default 1.6 m above the ground model",
                       {"type": "number", "minimum": -1000, "maximum": 100_000}),
                _param("heading", "Degrees clockwise from true north", {"type": "number", "default": 0}),
                _param("pitch", "Degrees above the horizon", {"type": "number", "default": 0, "minimum": -90,
                                                                "maximum": 90}),
                _param("fov", "Horizontal field of view, degrees", {**_FOV, "default": DEFAULT_FOV}),
                _param("vfov", "Vertical field of view, degrees (default: fov)", _FOV),
                _param("radius", f"Far distance in metres (capped to {MAX_RADIUS_M:g}, see radius_capped_to)",
                       {"type": "number", "default": DEFAULT_RADIUS_M, "minimum": 0, "exclusiveMinimum": True}),
                _param("limit", "Most items (and most stops)", {"type": "integer", "default": DEFAULT_LIMIT,
                                                                "minimum": 1, "maximum": MAX_LIMIT}),
                _LANG, _TERRAIN, *board_parameters()],
            "responses": {"200": ok("ArView", "Visible POIs, nearest first"), "400": _ERROR, "503": _NOT_READY}}},
        "/ar/anchors": {"get": {
            "summary": "Anchor points (POIs, building entrances, transit stops, parking and chargers) with roof or "
                       "ground height",
            "tags": ["AR"], "operationId": "arAnchors",
            "parameters": [
                _param("bbox", f"minlon,minlat,maxlon,maxlat (WGS84, at most {MAX_BBOX_DEG} degrees a side)",
                       {"type": "string"}, True),
                _param("types", "Comma-separated subset of poi, entrance, transit_stop, availability",
                       {"type": "string"}),
                _param("limit", "Most anchors", {"type": "integer", "default": DEFAULT_ANCHORS, "minimum": 1,
                                                 "maximum": MAX_ANCHORS}),
                _LANG, _TERRAIN],
            "responses": {"200": ok("ArAnchors", "Anchors in the bbox"), "400": _ERROR, "503": _NOT_READY}}},
        "/ar/route": {"get": {
            "summary": "Walking route between POIs or points along the streets, with turn instructions",
            "tags": ["AR"], "operationId": "arRoute",
            "parameters": [
                _param("from", "POI id (layer:id or id) or lon,lat", {"type": "string"}, True),
                _param("to", "POI id (layer:id or id) or lon,lat", {"type": "string"}, True),
                _LANG],
            "responses": {"200": ok("ArRoute", "The route"), "400": _ERROR, "503": _NOT_READY,
                          "404": {"description": "Unknown POI id, or no street layer"},
                          "422": {"description": "The two places do not connect on the street network"}}}},
    }
    tags = [{"name": "AR", "description": "Augmented-reality answers: what is around me and where to draw it"}]
    return paths, schemas, tags
