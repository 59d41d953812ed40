"""Alerts as live items placed on what they affect: the stops they name as points, the routes
(or the routes of the trips, agencies and route types they name) as lines. An alert naming
both is two items, ``<id>/stops`` and ``<id>/routes`` (a vector tile holds one geometry family
per feature). Every item carries the whole alert: cause, effect, severity, informed entities,
active periods and each text in every language the feed gives."""
from __future__ import annotations

from datetime import datetime, timezone

import shapely
from google.transit import gtfs_realtime_pb2 as rt

from pipelines.gtfs_rt.static import StaticFeed
from pipelines.live import LiveItem
from pipelines.steps.privacy import PropertyScreen

_A = rt.Alert


def unknown_ids(static: StaticFeed, alert: rt.Alert) -> str | None:
    for e in alert.informed_entity:
        if e.route_id and e.route_id not in static.routes:
            return f"route_id {e.route_id!r}"
        if e.stop_id and e.stop_id not in static.stops:
            return f"stop_id {e.stop_id!r}"
        if e.trip.trip_id and e.trip.trip_id not in static.trips:
            return f"trip_id {e.trip.trip_id!r}"
    return None


def _texts(ts: rt.TranslatedString) -> dict[str, str]:
    """Language -> text; a translation without a language is the feed's default, ''."""
    return {t.language: t.text for t in ts.translation}


def _entity(e: rt.EntitySelector) -> dict:
    out: dict = {k: getattr(e, k) for k in ("agency_id", "route_id", "stop_id") if getattr(e, k)}
    if e.HasField("route_type"):
        out["route_type"] = e.route_type
    if e.HasField("direction_id"):
        out["direction_id"] = e.direction_id
    if e.HasField("trip"):
        out["trip"] = {k: getattr(e.trip, k) for k in ("trip_id", "route_id", "start_date", "start_time")
                       if getattr(e.trip, k)}
    return out


def _routes_of(static: StaticFeed, e: rt.EntitySelector) -> set[str]:
    """Routes an entity selector names without naming a stop."""
    if e.stop_id:
        return set()
    if e.route_id:
        return {e.route_id}
    if e.trip.trip_id in static.trips:
        return {static.trips[e.trip.trip_id].route_id}
    if e.trip.route_id:
        return {e.trip.route_id}
    return {rid for rid, r in static.routes.items()
            if (not e.agency_id or r.agency_id in ("", e.agency_id))
            and (not e.HasField("route_type") or r.route_type == e.route_type)
            and (e.agency_id or e.HasField("route_type"))}


def alert_items(static: StaticFeed, entity_id: str, alert: rt.Alert, header_ts: int,
                expires: datetime) -> list[LiveItem]:
    stops = sorted({e.stop_id for e in alert.informed_entity if e.stop_id in static.stops})
    routes = sorted(set().union(*(_routes_of(static, e) for e in alert.informed_entity)) & set(static.routes))
    lines = [static.routes[r].line for r in routes if static.routes[r].line is not None]
    props = {
        "alert_id": entity_id,
        "cause": _A.Cause.Name(alert.cause), "effect": _A.Effect.Name(alert.effect),
        "severity_level": _A.SeverityLevel.Name(alert.severity_level),
        "header_text": _texts(alert.header_text), "description_text": _texts(alert.description_text),
        "url": _texts(alert.url),
        "active_periods": [{"start": p.start or None, "end": p.end or None} for p in alert.active_period],
        "informed_entities": [_entity(e) for e in alert.informed_entity],
        "stop_ids": stops, "route_ids": routes,
    }
    stamp = datetime.fromtimestamp(header_ts, timezone.utc)
    items = []
    if stops:
        points = shapely.MultiPoint([static.stops[s] for s in stops])
        items.append(LiveItem(f"{entity_id}/stops", points, props, stamp, expires, PropertyScreen()))
    if lines:
        merged = shapely.line_merge(shapely.union_all(lines)) if len(lines) > 1 else lines[0]
        items.append(LiveItem(f"{entity_id}/routes", merged, props, stamp, expires, PropertyScreen()))
    return items
