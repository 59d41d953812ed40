"""CQL2 (OGC 21-065) filters: parsed by the ``cql2`` package into cql2-json, then evaluated
over rows (api.providers.cql_filter) or turned into bound SQL (api.cql2.to_sql)."""
