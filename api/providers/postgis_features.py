"""pygeoapi's PostgreSQL feature provider, with its statements under a time limit.

The generated config gives this provider's connections a ``statement_timeout``
(api.pygeoapi_config), so PostgreSQL itself stops a query that would hold a connection for
minutes (a costly CQL2 filter over a large table). pygeoapi lets the resulting error through
as a 500; here it becomes a 503 that says what happened and what to do.
"""
from __future__ import annotations

from psycopg2.errors import QueryCanceled
from pygeoapi.provider.sql import PostgreSQLProvider
from sqlalchemy.exc import OperationalError

from api.providers.errors import TooSlowError


class TimedPostgreSQLProvider(PostgreSQLProvider):
    def query(self, *args, **kwargs) -> dict:
        try:
            return super().query(*args, **kwargs)
        except OperationalError as exc:
            if isinstance(exc.orig, QueryCanceled):
                raise TooSlowError(user_msg=f"the query on {self.table!r} took longer than the database's "
                                            "statement_timeout and was stopped; add a bbox or simplify "
                                            "the filter") from None
            raise
