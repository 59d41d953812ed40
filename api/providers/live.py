"""pygeoapi feature provider over a live layer: unexpired items as an OGC API Features collection.

Named in the generated config as ``api.providers.live.LiveProvider`` with ``data`` = the
project folder and ``layer`` = the live layer. Read-only; writes go through POST
/live/{layer}/items. Like /live/{layer}/items, a read first follows the watched file.

pygeoapi makes a provider for every request, so the opened layer (the validated catalog) is kept
per process and made again only when the catalog file changes; the items themselves are read at
each request, from whichever database file is at the layer's path then (pipelines.live).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pygeoapi.provider.base import (
    BaseProvider,
    ProviderConnectionError,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
)

from api.auth import AUDIT_FILE, AuditLog
from api.errors import public
from api.live_routes import follow_file
from api.providers.errors import UnusableStoreError
from geo.errors import CitytwinError
from pipelines.catalog import CATALOG_FILE, load_catalog
from pipelines.live import LiveLayer, LiveStoreError

_FIELDS = {"timestamp": {"type": "string", "format": "date-time"},
           "expires": {"type": "string", "format": "date-time"}}


def _identity(path: Path) -> tuple[int, ...]:
    """Which version of which file is at ``path``; () when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class _Opened:
    stamp: tuple  # the catalog file's version
    layer: LiveLayer
    audit: AuditLog


_OPENED: dict[tuple[str, str], _Opened] = {}
_OPENED_LOCK = threading.Lock()


def _opened_layer(project: str, name: str) -> _Opened:
    """The live layer ``name`` of ``project``, opened once per catalog file version."""
    key = (project, name)
    catalog_file = Path(project) / CATALOG_FILE
    with _OPENED_LOCK:
        found = _OPENED.get(key)
    if found is not None and found.stamp == _identity(catalog_file):
        return found
    before = _identity(catalog_file)  # read first: an edit while loading makes the next request load again
    catalog = load_catalog(Path(project))
    layer = LiveLayer(catalog, name)
    made = _Opened(before, layer, AuditLog(catalog.build_path / AUDIT_FILE))
    with _OPENED_LOCK:
        _OPENED[key] = made
    return made


class LiveProvider(BaseProvider):
    def __init__(self, provider_def: dict):
        super().__init__(provider_def)
        try:
            opened = _opened_layer(str(self.data), provider_def.get("layer", ""))
        except CitytwinError as exc:
            raise ProviderConnectionError(user_msg=public(str(exc))) from None
        self.layer, self._audit = opened.layer, opened.audit
        self._fields = dict(_FIELDS)

    def __repr__(self) -> str:
        return f"<LiveProvider> {self.layer.name}"

    def get_fields(self) -> dict:
        return self._fields

    def _features(self, bbox: tuple | None) -> list[dict]:
        try:
            follow_file(self.layer, self._audit)
            return self.layer.features(bbox, None, time.time())
        except LiveStoreError as exc:
            raise UnusableStoreError(user_msg=public(str(exc))) from None

    def query(self, offset: int = 0, limit: int = 10, resulttype: str = "results", bbox: list | None = None,
              datetime_: str | None = None, properties: list | None = None, sortby: list | None = None,
              select_properties: list | None = None, skip_geometry: bool = False, q: str | None = None,
              filterq=None, **kwargs) -> dict:
        if filterq is not None or q or datetime_:
            raise ProviderInvalidQueryError(user_msg="live collections take bbox, limit, offset and "
                                                     "property=value parameters only")
        feats = self._features(tuple(bbox) if bbox else None)
        for name, value in properties or []:
            feats = [f for f in feats if str(f["properties"].get(name)) == str(value)]
        matched = len(feats)
        page = [] if resulttype == "hits" else feats[offset:offset + limit]
        for f in page:
            if select_properties:
                f["properties"] = {k: v for k, v in f["properties"].items() if k in select_properties}
            if skip_geometry:
                f["geometry"] = None
        return {"type": "FeatureCollection", "features": page, "numberMatched": matched,
                "numberReturned": len(page)}

    def get(self, identifier, **kwargs) -> dict:
        for f in self._features(None):
            if f["id"] == str(identifier):
                return f
        raise ProviderItemNotFoundError(user_msg=f"no unexpired item {str(identifier)[:80]!r} in live layer "
                                                 f"{self.layer.name!r}")
