"""How each layer was last ingested: its sources and the settings that place and decode them.

Kept as ``<build>/ingested/<layer>.json`` beside the store. Each ingest compares its own
settings with the record, so a layer is never published differently from its last ingest
without the report saying so (a crs edited in citytwin.yaml, a .prj that changed, ...).
"""
from __future__ import annotations

import json
from pathlib import Path

from geo.names import check_layer_name
from pipelines.atomic_file import replace_text
from pipelines.catalog import LayerConfig, shown

RECORD_DIR = "ingested"


def read_settings(cfg: LayerConfig, paths: list[Path], source_crs: str) -> dict[str, object]:
    """What decides where and how a layer's features are published, besides the files' contents."""
    return {"source": [str(Path(p).resolve()) for p in paths], "kind": cfg.kind, "crs": cfg.crs,
            "accept_source_crs": cfg.accept_source_crs, "encoding": cfg.encoding, "source_crs": source_crs}


def _record_path(build_path: Path, layer: str) -> Path:
    return build_path / RECORD_DIR / f"{check_layer_name(layer)}.json"


def changes_since_last(build_path: Path, layer: str, settings: dict[str, object]) -> list[str]:
    """``key value (last ingest: value)`` for each setting that differs from the recorded one."""
    try:
        last = json.loads(_record_path(build_path, layer).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # never ingested here (or a record from an interrupted run): nothing to compare with
    return [f"{key} {shown(value)} (last ingest: {shown(last.get(key))})"
            for key, value in settings.items() if last.get(key) != value]


def remember(build_path: Path, layer: str, settings: dict[str, object]) -> None:
    path = _record_path(build_path, layer)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(path, json.dumps(settings, ensure_ascii=False, indent=1))
