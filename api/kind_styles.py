"""MapLibre layers that draw one published vector layer by its catalog kind.

Pure data: no catalog, no store. The viewer adds these for every published layer that the
validated styles in styles/ do not already draw, so a layer of any name is visible.
Layer ids are ``<layer>-<part>`` (fill, extrusion, line, circle, label); the first one
of the list is the layer's main one (popups, counts).
"""
from __future__ import annotations

from typing import Literal

Geometry = Literal["point", "line", "polygon"]

# Colours told apart on a light background; a layer takes the next one in catalog order.
PALETTE = ("#d1495b", "#00798c", "#edae49", "#6a4c93", "#2e933c", "#e07a1f", "#3d5a80", "#b5179e")
# Fields tried, in order, for a label; else the first field whose name says it is a name.
LABEL_FIELDS = ("name", "name_en", "title", "label", "name_ko", "stop_name", "route_short_name")
GROUP_KEY = "citytwin:group"
POPUP_KEY = "citytwin:popup"
_TYPES: dict[Geometry, list[str]] = {
    "point": ["Point", "MultiPoint"],
    "line": ["LineString", "MultiLineString"],
    "polygon": ["Polygon", "MultiPolygon"],
}


def geometry_family(geometry_type: str) -> Geometry | None:
    """'point', 'line' or 'polygon' for a store geometry type ('MultiPolygon Z', ...); None when mixed."""
    name = geometry_type.lower()
    for family, word in (("point", "point"), ("line", "line"), ("polygon", "polygon")):
        if word in name and "collection" not in name:
            return family  # type: ignore[return-value]
    return None


def label_field(fields: list[str]) -> str | None:
    """The field to label features with, or None when the layer has no name-like field."""
    for name in LABEL_FIELDS:
        if name in fields:
            return name
    return next((f for f in fields if "name" in f.lower() or f.endswith("명")), None)


def kind_layers(layer: str, kind: str, geometry: Geometry | None, colour: str, title: str,
                label: str | None = None, visible: bool = True) -> list[dict]:
    """The MapLibre style layers drawing ``layer`` (its source and source-layer are both ``layer``)."""
    families: list[Geometry] = [geometry] if geometry else ["polygon", "line", "point"]
    layers: list[dict] = []
    for family in families:
        parts = _parts(kind, family, colour, label)
        for part, spec in parts:
            entry = {"id": f"{layer}-{part}", **spec, "source": layer, "source-layer": layer,
                     "metadata": {GROUP_KEY: title}}
            if geometry is None:  # mixed layer: each family draws only its own features
                entry["filter"] = ["match", ["geometry-type"], _TYPES[family], True, False]
                entry["id"] = f"{layer}-{family}-{part}"
            layers.append(entry)
    layers[0]["metadata"][POPUP_KEY] = True
    if not visible:
        for entry in layers:
            entry["layout"] = {**entry.get("layout", {}), "visibility": "none"}
    return layers


def _parts(kind: str, family: Geometry, colour: str, label: str | None) -> list[tuple[str, dict]]:
    if kind == "buildings" and family == "polygon":
        return [("extrusion", {"type": "fill-extrusion", "paint": {
            "fill-extrusion-color": colour,
            # at least one storey, so a footprint without a height still shows
            "fill-extrusion-height": ["max", ["to-number", ["get", "height"], 0], 3],
            "fill-extrusion-opacity": 0.85}})]
    if kind == "boundaries" and family != "point":
        return [("line", _line(colour, 1.5, dash=True)), *_label(label, placement="point")]
    if kind == "transit" and family == "line":
        # GTFS route colours where the feed gives them
        return [("line", {"type": "line", "layout": {"line-cap": "round", "line-join": "round"},
                          "paint": {"line-color": ["to-color", ["get", "route_color"], colour], "line-width": 3}})]
    if kind == "transit" and family == "point":
        return [("circle", _circle("#ffffff", 4, stroke=colour))]
    if kind == "vehicles":  # GTFS-Realtime vehicles: their route's colour, its name beside them
        return [("circle", {"type": "circle", "paint": {
            "circle-color": ["to-color", ["get", "route_color"], colour], "circle-radius": 6,
            "circle-stroke-color": "#ffffff", "circle-stroke-width": 2}}),
            *_label(label, placement="below")]
    if kind == "alerts" and family == "line":  # GTFS-Realtime alerts on the routes they affect
        return [("line", {"type": "line", "paint": {"line-color": _ALERT_COLOUR, "line-width": 5,
                                                    "line-opacity": 0.6, "line-dasharray": [2, 1]}})]
    if kind == "alerts" and family == "point":  # ... and on the stops
        return [("circle", _circle(_ALERT_COLOUR, 8, stroke="#ffffff"))]
    if kind == "availability" and family == "point":  # a live layer of parking or chargers
        return [("circle", _circle(_AVAILABILITY_COLOUR, 7, stroke="#ffffff")),
                *_label(label, placement="below")]
    if family == "polygon":  # hazard zones, generic areas
        opacity = 0.45 if kind == "hazard_zones" else 0.3
        return [("fill", {"type": "fill", "paint": {"fill-color": colour, "fill-opacity": opacity}}),
                ("line", _line(colour, 1))]
    if family == "line":
        return [("line", _line(colour, 2))]
    return [("circle", _circle(colour, 5, stroke="#ffffff")), *_label(label, placement="below")]


# Green while at least a tenth is free, amber below that, red when full, grey when closed or unknown.
_ALERT_COLOUR = "#e4572e"  # service alerts stand out from every route colour
_AVAILABILITY_COLOUR = [
    "match", ["get", "status"],
    "available", ["step", ["/", ["to-number", ["get", "free"], 0], ["max", ["to-number", ["get", "capacity"], 1], 1]],
                  "#e07a1f", 0.1, "#2e933c"],
    "full", "#d1495b",
    "#8a8a8a",
]


def _line(colour: str, width: float, dash: bool = False) -> dict:
    paint: dict = {"line-color": colour, "line-width": width}
    if dash:
        paint["line-dasharray"] = [3, 2]
    return {"type": "line", "paint": paint}


def _circle(colour: str, radius: float, stroke: str) -> dict:
    return {"type": "circle", "paint": {"circle-color": colour, "circle-radius": radius,
                                        "circle-stroke-color": stroke, "circle-stroke-width": 1.5}}


def _label(field: str | None, placement: Literal["point", "below"]) -> list[tuple[str, dict]]:
    if field is None:
        return []
    layout: dict = {"text-field": ["to-string", ["get", field]], "text-size": 12, "text-optional": True}
    if placement == "below":
        layout |= {"text-anchor": "top", "text-offset": [0, 0.7]}
    return [("label", {"type": "symbol", "layout": layout, "paint": {
        "text-color": "#222222", "text-halo-color": "#ffffff", "text-halo-width": 1.5}})]
