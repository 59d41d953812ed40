"""pygeoapi's log lines that are noise here, filtered out where pygeoapi writes them.

- Locale probes: pygeoapi takes every flat dict of its config and of process descriptions
  for a possible translation table and logs each key that is not a locale ('type', 'bbox',
  'crs', ...): a hundred warnings per page, about keys never meant as locales.
- Client mistakes in process inputs: the job manager logs every failed job with its
  traceback; for a 4xx (a layer name that does not exist, a threshold that is not a number)
  the one line with the message is what an operator needs.
"""
from __future__ import annotations

import logging

from pygeoapi.process.base import ProcessorExecuteError


class _NotLocaleProbe(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.funcName != "str2locale"


class _ClientErrorWithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ProcessorExecuteError) and int(exc.http_status_code) < 500:
            record.exc_info, record.exc_text = None, None
        return True


_FILTERS = {"pygeoapi.l10n": _NotLocaleProbe, "pygeoapi.process.manager.base": _ClientErrorWithoutTraceback}


def quiet_pygeoapi() -> None:
    """Install the filters (once per process)."""
    for name, kind in _FILTERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
