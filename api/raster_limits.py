"""What one /cog request may ask titiler to compute: every parameter that scales memory or CPU
has a cap here, checked before titiler parses or reads anything, so an over-cap request is a
400 naming the parameter instead of a 500 or a server killed for memory.

Output sizes that depend on the data (a bbox at native resolution, one side given and the
other following the aspect ratio) are settled by ``raster_reader.LimitedReader``, which
applies the same side limits once the dataset is open.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable

from starlette.requests import Request

from api.bodies import json_depth
from api.params import BadParameter, number

# Images (tiles, previews, bbox and feature crops, statistics reads), in pixels per side.
MAX_TILE_SIZE = 1024         # tilesize; 512 is a "@2x" tile
MAX_IMAGE_SIDE = 2048        # width, height, max_size of /preview, /bbox, GET /statistics, /colorMaps
MAX_PIXELS = 2048 * 1024     # pixels of one image (per band): 2048 x 1024, or 1448² when square
MAX_FEATURE_SIDE = 1024      # /feature and POST /statistics (their coverage grid is cover_scale² larger)
MAX_BUFFER = 64              # tile buffer and padding, pixels on each side
MAX_BANDS = 4                # bands read or written: bidx values, expression blocks, rescale ranges
MAX_EXPRESSION_CHARS = 256
MAX_EXPRESSION_DEPTH = 16    # nested parentheses
MAX_HISTOGRAM_BINS = 1000
MAX_CATEGORIES = 256
MAX_PERCENTILES = 20
MAX_COLORMAP_CHARS = 16_384  # a custom JSON colormap: 256 entries fit in ~6 kB
MAX_COLORMAP_ENTRIES = 256
MAX_COLOR_FORMULA_CHARS = 128
MAX_ALGORITHM_PARAMS_CHARS = 1024
MAX_JSON_DEPTH = 4           # colormap and algorithm_params nest 3 deep at most
MAX_COVER_SCALE = 10         # coverage grid of POST /statistics: (side * cover_scale)² cells
MAX_ZOOM = 30
MAX_FEATURES = 100           # features in one POST body
MAX_BODY_BYTES = 1_000_000   # POST /feature and /statistics
MAX_QUERY_CHARS = 32_768
MAX_CONCURRENT = 2           # raster requests computed at once per server process; others wait their turn

# CRS parameters name a CRS by code; a PROJ string or WKT could name grid files on the server.
_CRS = re.compile(r"(?i)(epsg:\d{1,6}|ogc:crs84|https?://www\.opengis\.net/def/crs/(epsg/0/\d{1,6}|ogc/1\.3/crs84))")
_GEOGRAPHIC = {"epsg:4326", "ogc:crs84", "http://www.opengis.net/def/crs/epsg/0/4326",
               "http://www.opengis.net/def/crs/ogc/1.3/crs84"}


class RasterLimitError(BadParameter):
    """A raster request over a limit or out of range; the message names the parameter and the fix."""


def _number(name: str, raw: str, lo: float | None = None, hi: float | None = None) -> float:
    return number({name: raw}, name, None, lo, hi)


def _at_most(name: str, values: list[str], limit: int) -> None:
    if len(values) > limit:
        raise RasterLimitError(f"parameter '{name}' is given {len(values)} times; at most {limit} values are allowed")


def _json_param(name: str, raw: str, max_chars: int) -> object:
    if len(raw) > max_chars:
        raise RasterLimitError(f"parameter '{name}' is {len(raw):,} characters long; at most {max_chars:,} are allowed")
    if json_depth(raw.encode()) > MAX_JSON_DEPTH:
        raise RasterLimitError(f"parameter '{name}' nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except ValueError:
        raise RasterLimitError(f"parameter '{name}' is not valid JSON") from None


def check_expression(expression: str) -> None:
    """Band math stays short and shallow: numexpr work grows with its length."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise RasterLimitError(f"parameter 'expression' is {len(expression):,} characters long; "
                               f"at most {MAX_EXPRESSION_CHARS} are allowed")
    blocks = [b for b in expression.split(";") if b]
    if len(blocks) > MAX_BANDS:
        raise RasterLimitError(f"parameter 'expression' has {len(blocks)} ';'-separated bands; "
                               f"at most {MAX_BANDS} are allowed")
    depth = deepest = 0
    for ch in expression:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_EXPRESSION_DEPTH:
        raise RasterLimitError(f"parameter 'expression' nests parentheses {deepest} deep; "
                               f"at most {MAX_EXPRESSION_DEPTH} are allowed")


def _check_histogram_bins(raw: str) -> None:
    parts = raw.split(",")
    if len(parts) == 1:
        _number("histogram_bins", raw, 1, MAX_HISTOGRAM_BINS)
        return
    _at_most("histogram_bins", parts, MAX_HISTOGRAM_BINS + 1)
    edges = [_number("histogram_bins", p) for p in parts]
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise RasterLimitError("parameter 'histogram_bins' as bin edges must increase, e.g. 0,10,20,50")


def _check_colormap(raw: str) -> None:
    value = _json_param("colormap", raw, MAX_COLORMAP_CHARS)
    if not isinstance(value, (dict, list)):
        raise RasterLimitError("parameter 'colormap' must be a JSON object {value: color} or a list of "
                               "[[min, max], color] intervals")
    if len(value) > MAX_COLORMAP_ENTRIES:
        raise RasterLimitError(f"parameter 'colormap' has {len(value)} entries; at most {MAX_COLORMAP_ENTRIES} "
                               "are allowed")


def _check_crs(name: str, raw: str) -> None:
    if not _CRS.fullmatch(raw.strip()):
        raise RasterLimitError(f"parameter '{name}' must name a CRS by code, e.g. EPSG:4326, EPSG:5186 or "
                               f"http://www.opengis.net/def/crs/EPSG/0/3857; got {raw[:60]!r}")


def _check_path(params: dict[str, str], coord_crs: str | None) -> None:
    """Path parameters: tile indices, image sizes, the point and the bbox."""
    if "z" in params:
        _number("z", params["z"], 0, MAX_ZOOM)
        for name in ("x", "y"):
            _number(name, params[name], 0, 2 ** MAX_ZOOM - 1)
    for name in ("width", "height"):
        if name in params:
            _number(name, params[name], 1, MAX_IMAGE_SIDE)
    # Coordinates are lon/lat degrees unless coord_crs names another CRS.
    geographic = coord_crs is None or coord_crs.strip().lower() in _GEOGRAPHIC
    lon, lat = ((-180, 180), (-90, 90)) if geographic else ((None, None), (None, None))
    if "lon" in params:
        _number("lon", params["lon"], *lon)
        _number("lat", params["lat"], *lat)
    if "minx" in params:
        minx, maxx = (_number(k, params[k], *lon) for k in ("minx", "maxx"))
        miny, maxy = (_number(k, params[k], *lat) for k in ("miny", "maxy"))
        if not (minx < maxx and miny < maxy):
            raise RasterLimitError("the bbox must be minx,miny,maxx,maxy with minx < maxx and miny < maxy")


def _check_query(items: Iterable[tuple[str, str]]) -> None:
    values: dict[str, list[str]] = {}
    for key, value in items:
        values.setdefault(key, []).append(value)
    one = {k: v[-1] for k, v in values.items()}  # FastAPI takes the last of a repeated scalar
    for name in ("width", "height"):
        if name in one:
            _number(name, one[name], 1, MAX_IMAGE_SIDE)
    if "max_size" in one:
        _number("max_size", one["max_size"], 1, MAX_IMAGE_SIDE)  # 0 would mean full resolution
    if "tilesize" in one:
        _number("tilesize", one["tilesize"], 1, MAX_TILE_SIZE)
    if "buffer" in one and _number("buffer", one["buffer"], 0, MAX_BUFFER) % 0.5:
        raise RasterLimitError(f"parameter 'buffer' must be a multiple of 0.5, got {one['buffer'][:40]}")
    if "padding" in one:
        _number("padding", one["padding"], 0, MAX_BUFFER)
    for name in ("minzoom", "maxzoom"):
        if name in one:
            _number(name, one[name], 0, MAX_ZOOM)
    if "cover_scale" in one:
        _number("cover_scale", one["cover_scale"], 1, MAX_COVER_SCALE)
    if "histogram_bins" in one:
        _check_histogram_bins(one["histogram_bins"])
    if one.get("categorical", "").lower() in ("true", "1", "yes", "on") and "c" not in values:
        # Without categories every distinct value is listed: millions for a float raster.
        raise RasterLimitError(f"categorical statistics need the categories to count: pass them with c= "
                               f"(e.g. c=1&c=2&c=3), at most {MAX_CATEGORIES}")
    for name, limit in (("bidx", MAX_BANDS), ("rescale", MAX_BANDS), ("c", MAX_CATEGORIES), ("p", MAX_PERCENTILES)):
        if name in values:
            _at_most(name, values[name], limit)
    for raw in values.get("p", []):
        _number("p", raw, 0, 100)
    for raw in values.get("bidx", []):
        _number("bidx", raw, 1, 2 ** 16)
    if "expression" in one:
        check_expression(one["expression"])
    if "colormap" in one:
        _check_colormap(one["colormap"])
    if len(one.get("color_formula", "")) > MAX_COLOR_FORMULA_CHARS:
        raise RasterLimitError(f"parameter 'color_formula' is over {MAX_COLOR_FORMULA_CHARS} characters long")
    if "algorithm_params" in one:
        _json_param("algorithm_params", one["algorithm_params"], MAX_ALGORITHM_PARAMS_CHARS)
    for name in ("coord_crs", "dst_crs", "crs"):
        if name in one:
            _check_crs(name, one[name])


async def check_request(request: Request) -> None:
    """A route dependency of every /cog route: runs before titiler's own parameters."""
    query = request.url.query
    if len(query) > MAX_QUERY_CHARS:
        raise RasterLimitError(f"the query string is {len(query):,} characters long; at most "
                               f"{MAX_QUERY_CHARS:,} are allowed")
    items = request.query_params.multi_items()
    _check_query(items)
    _check_path(dict(request.path_params), dict(items).get("coord_crs"))
    if request.method == "POST":  # FastAPI has parsed this body already: it is JSON, not too deep
        body = json.loads(await request.body() or b"null")
        features = body.get("features") if isinstance(body, dict) else None
        if isinstance(features, list) and len(features) > MAX_FEATURES:
            raise RasterLimitError(f"the FeatureCollection has {len(features):,} features; at most {MAX_FEATURES} "
                                   "are allowed in one request")
