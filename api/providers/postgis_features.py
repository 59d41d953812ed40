"""pygeoapi's PostgreSQL feature provider, with our CQL2 and its statements under a time limit.

A filter arrives parsed by api.cql2 (api.cql_compat installs the parser) and becomes a
SQLAlchemy clause of bound parameters (api.cql2.to_sql), in place of pygeofilter's reading.
The generated config gives this provider's connections a ``statement_timeout``
(api.pygeoapi_config), so PostgreSQL itself stops a query that would hold a connection for
minutes (a costly CQL2 filter over a large table). pygeoapi lets the resulting error through
as a 500; here it becomes a 503 that says what happened and what to do.
"""
from __future__ import annotations

import datetime as dt

from psycopg2.errors import QueryCanceled
from pygeoapi.provider.base import ProviderInvalidQueryError
from pygeoapi.provider.sql import PostgreSQLProvider
from sqlalchemy.exc import DataError, OperationalError

from api.cql2.parse import Filter, FilterError
from api.cql2.to_sql import Column, to_clause
from api.cql2.values import kind_of
from api.providers.errors import TooSlowError
from pipelines.store.postgis import HIDDEN_COLUMNS

STORAGE_SRID = 4326  # the store's geometry column (pipelines.store.postgis)


class TimedPostgreSQLProvider(PostgreSQLProvider):
    def __init__(self, provider_def: dict):
        super().__init__(provider_def)
        if not self.properties:  # pygeoapi then leaves the store's hidden columns out of items too
            self.properties = list(self.get_fields())

    def query(self, *args, **kwargs) -> dict:
        try:
            return super().query(*args, **kwargs)
        except OperationalError as exc:
            if isinstance(exc.orig, QueryCanceled):
                raise TooSlowError(user_msg=f"the query on {self.table!r} took longer than the database's "
                                            "statement_timeout and was stopped; add a bbox or simplify "
                                            "the filter") from None
            raise
        except DataError as exc:  # a value the column cannot take (e.g. a number out of range)
            raise ProviderInvalidQueryError(user_msg=f"the filter does not fit {self.table!r}: "
                                                     f"{str(exc.orig).splitlines()[0]}") from None

    def get_fields(self) -> dict:
        """pygeoapi's fields but the store's hidden columns, with dates and date-times labelled as
        such (its own labels miss ``timestamp with time zone``, the store's type for date-times)."""
        fields = super().get_fields()
        for hidden in HIDDEN_COLUMNS:
            fields.pop(hidden, None)
        for column in self.table_model.__table__.columns:
            try:
                python_type = column.type.python_type
            except NotImplementedError:
                continue
            if column.name in fields and python_type in (dt.datetime, dt.date):
                fields[column.name] = {"type": "string",
                                       "format": "date-time" if python_type is dt.datetime else "date"}
        return fields

    def _get_cql_filters(self, filterq):
        if not isinstance(filterq, Filter):
            return super()._get_cql_filters(filterq)
        fields = self.get_fields()
        columns = {name: Column(getattr(self.table_model, name), kind_of(schema), schema.get("format") == "date")
                   for name, schema in fields.items()}
        try:
            return to_clause(filterq, columns, getattr(self.table_model, self.geom), STORAGE_SRID)
        except FilterError as exc:
            raise ProviderInvalidQueryError(user_msg=str(exc)) from None
