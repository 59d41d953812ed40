"""pygeoapi feature provider over a live layer: unexpired items as an OGC API Features collection.

Named in the generated config as ``api.providers.live.LiveProvider`` with ``data`` = the
project folder and ``layer`` = the live layer. Read-only; writes go through POST
/live/{layer}/items. Like /live/{layer}/items, a read first follows the watched file.
"""
from __future__ import annotations

import time
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
from geo.errors import CitytwinError
from pipelines.catalog import load_catalog
from pipelines.live import LiveLayer

_FIELDS = {"timestamp": {"type": "string", "format": "date-time"},
           "expires": {"type": "string", "format": "date-time"}}


class LiveProvider(BaseProvider):
    def __init__(self, provider_def: dict):
        super().__init__(provider_def)
        try:
            catalog = load_catalog(Path(self.data))
            self.layer = LiveLayer(catalog, provider_def.get("layer", ""))
        except CitytwinError as exc:
            raise ProviderConnectionError(user_msg=public(str(exc))) from None
        self._audit = AuditLog(catalog.build_path / AUDIT_FILE)
        self._fields = dict(_FIELDS)

    def __repr__(self) -> str:
        return f"<LiveProvider> {self.layer.name}"

    def get_fields(self) -> dict:
        return self._fields

    def query(self, offset: int = 0, limit: int = 10, resulttype: str = "results", bbox: list | None = None,
              datetime_: str | None = None, properties: list | None = None, sortby: list | None = None,
              select_properties: list | None = None, skip_geometry: bool = False, q: str | None = None,
              filterq=None, **kwargs) -> dict:
        if filterq is not None or q or datetime_:
            raise ProviderInvalidQueryError(user_msg="live collections take bbox, limit, offset and "
                                                     "property=value parameters only")
        follow_file(self.layer, self._audit)
        feats = self.layer.features(tuple(bbox) if bbox else None, None, time.time())
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
        follow_file(self.layer, self._audit)
        for f in self.layer.features(None, None, time.time()):
            if f["id"] == str(identifier):
                return f
        raise ProviderItemNotFoundError(user_msg=f"no unexpired item {str(identifier)[:80]!r} in live layer "
                                                 f"{self.layer.name!r}")
