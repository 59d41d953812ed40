"""One GTFS-Realtime feed, from bytes to what is served: decode and check it, match it to the
static feed, and replace the vehicles, alerts or TripUpdate estimates it holds.

A feed that is malformed, stale, older than the data it would replace, or for another static
feed (its share of unknown trip, route or stop ids over ``max_unknown_share``) is refused:
its status says why and the last good data keeps serving until it expires.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import shapely
from google.transit import gtfs_realtime_pb2 as rt

from geo.errors import CatalogError, CitytwinError
from pipelines.catalog import Catalog, RealtimeConfig
from pipelines.gtfs_rt import alerts, vehicles
from pipelines.gtfs_rt.decode import FEED_TYPES, FeedRefused, check_age, decode
from pipelines.gtfs_rt.static import StaticFeed, static_feed
from pipelines.gtfs_rt.store import FeedStatus, RealtimeState
from pipelines.gtfs_rt.trip_updates import realtime_source, stop_rows
from pipelines.live import LiveLayer

ORIGIN = "gtfs-rt"
_FIELD = {"vehicle_positions": "vehicle", "trip_updates": "trip_update", "alerts": "alert"}


@dataclass(frozen=True)
class LoadReport:
    feed: str
    kind: str
    status: FeedStatus
    unchanged: bool = False

    def summary(self) -> str:
        s = self.status
        if self.unchanged:
            return f"realtime '{self.feed}' {self.kind}: unchanged (header timestamp {s.header_timestamp})"
        line = (f"realtime '{self.feed}' {self.kind} from {s.source}: loaded {s.loaded} of {s.entities} entities "
                f"(header timestamp {s.header_timestamp})")
        if s.unmatched:
            line += f"; {s.unmatched} left out for ids the static feed lacks (first: {s.unmatched_example})"
        return line


def feed_config(catalog: Catalog, feed: str) -> RealtimeConfig:
    if feed not in catalog.realtime:
        known = ", ".join(sorted(catalog.realtime)) or "none"
        raise CatalogError(f"{catalog.root / 'citytwin.yaml'}: no realtime feed {feed!r} (known: {known}); add it "
                           f"under 'realtime:' with the live layers that show it")
    return catalog.realtime[feed]


def load_feed(catalog: Catalog, feed: str, kind: str, data: bytes, source: str,
              now: float | None = None) -> LoadReport:
    """Check ``data`` (a FeedMessage of type ``kind``) and publish it; FeedRefused, recorded in the
    feed's status, when it must not replace what is served."""
    if kind not in FEED_TYPES:
        raise CatalogError(f"feed type {kind!r}: use one of {', '.join(FEED_TYPES)}")
    cfg = feed_config(catalog, feed)
    layer = {"vehicle_positions": cfg.vehicles_layer, "alerts": cfg.alerts_layer}.get(kind, "")
    if layer is None:
        raise CatalogError(f"realtime.{feed}: {kind} need {'vehicles' if kind[0] == 'v' else 'alerts'}_layer, "
                           "the live layer that shows them")
    state = RealtimeState(catalog.build_path, feed)
    now = time.time() if now is None else now
    try:
        msg = decode(data, source, cfg.max_entities)
        check_age(msg, source, now, cfg.max_age_s)
        last = state.status(kind)
        ts = msg.header.timestamp
        if last.header_timestamp is not None and ts <= last.header_timestamp and \
                last.expires_at is not None and last.expires_at > now:
            if ts == last.header_timestamp:  # the feed served; good again if a refusal came between
                if last.error is not None:
                    last.error = last.error_at = None
                    state.accepted(kind, last)
                return LoadReport(feed, kind, last, unchanged=True)
            raise FeedRefused(f"{source}: header timestamp {ts} is older than the data served ({last.header_timestamp}); "
                              "kept the newer data")
        static = static_feed(catalog, feed)
        entities = [e for e in msg.entity if e.HasField(_FIELD[kind]) and not e.is_deleted]
        unknown = [(e.id, _unknown(static, kind, e)) for e in entities]
        bad = [(eid, what) for eid, what in unknown if what]
        if entities and len(bad) / len(entities) > cfg.max_unknown_share:
            raise FeedRefused(f"{source}: {len(bad)} of {len(entities)} entities name ids the static feed "
                              f"{feed!r} lacks (first: {bad[0][1]} in entity {bad[0][0]!r}), over max_unknown_share "
                              f"{cfg.max_unknown_share:g}: a feed for another GTFS feed? kept the last good data")
        keep = [e for e, (_, what) in zip(entities, unknown) if not what]
        expires = datetime.fromtimestamp(ts + cfg.max_age_s, timezone.utc)
        status = FeedStatus(source=source, ok_at=now, header_timestamp=ts, expires_at=ts + cfg.max_age_s,
                            entities=len(entities), unmatched=len(bad),
                            unmatched_example=f"{bad[0][1]} in entity {bad[0][0]!r}" if bad else None)
        _publish(catalog, feed, kind, static, keep, ts, expires, state, status, layer)
    except CitytwinError as exc:
        state.refused(kind, source, str(exc))
        raise
    return LoadReport(feed, kind, status)


def _unknown(static: StaticFeed, kind: str, e: rt.FeedEntity) -> str | None:
    if kind == "vehicle_positions":
        return vehicles.unknown_ids(static, e.vehicle)
    if kind == "alerts":
        return alerts.unknown_ids(static, e.alert)
    t = e.trip_update.trip
    if t.trip_id not in static.trips and t.schedule_relationship != rt.TripDescriptor.ADDED:
        return f"trip_id {t.trip_id!r}"
    if t.route_id and t.route_id not in static.routes:
        return f"route_id {t.route_id!r}"
    stop = next((u.stop_id for u in e.trip_update.stop_time_update if u.stop_id and u.stop_id not in static.stops),
                None)
    return f"stop_id {stop!r}" if stop else None


def _publish(catalog: Catalog, feed: str, kind: str, static: StaticFeed, entities: list[rt.FeedEntity], ts: int,
             expires: datetime, state: RealtimeState, status: FeedStatus, layer: str) -> None:
    """Replace what ``kind`` shows with ``entities``, and record the load in ``status``."""
    who = f"{ORIGIN}:{feed}"
    if kind == "trip_updates":
        rows = []
        for e in entities:
            trip = static.trips.get(e.trip_update.trip.trip_id)
            if trip is None:  # an ADDED trip has no schedule to estimate against
                continue
            day = e.trip_update.trip.start_date or static.service_date(trip, ts)
            rows += stop_rows(static, e.trip_update, e.trip_update.trip.trip_id, day)
        status.loaded = len({(r[0], r[1]) for r in rows})
        state.accepted(kind, status, rows)
        return
    if kind == "vehicle_positions":
        delays = realtime_source(catalog.build_path, feed)
        points = shapely.points([(e.vehicle.position.longitude, e.vehicle.position.latitude) for e in entities])
        items = [it for e, point in zip(entities, points)
                 if (it := vehicles.vehicle_item(static, e.id, e.vehicle, point, ts, expires, delays)) is not None]
        loaded = len(items)
    else:
        items = [it for e in entities for it in alerts.alert_items(static, e.id, e.alert, ts, expires)]
        loaded = len({it.properties["alert_id"] for it in items})
    LiveLayer(catalog, layer).replace_origin(ORIGIN, items, who)
    status.loaded = loaded
    state.accepted(kind, status)
