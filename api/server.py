"""``citytwin serve``: run the app with uvicorn."""
from __future__ import annotations

from pathlib import Path

import click
import uvicorn

from api.app import create_app
from api.pygeoapi_config import base_url
from pipelines.catalog import load_catalog


def run(project: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``project`` until interrupted. Raises CitytwinError when nothing is built."""
    app = create_app(project, host=host, port=port)
    url = base_url(load_catalog(project), host, port)
    click.echo(f"serving {url} (viewer at /viewer/)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
