"""pygeoapi provider plugins named by dotted path in the generated config."""
