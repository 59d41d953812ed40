"""Batch pipelines for GIS staff: read, check, reproject, publish into the store, build."""
import pandas as _pd

# pyarrow is installed for pyogrio's DATE writer (pipelines.store.gpkg); pandas would then back
# its strings with pyarrow, which refuses text the stores check and report themselves (a lone
# surrogate, say). Strings stay Python-backed, as before.
_pd.set_option("mode.string_storage", "python")
