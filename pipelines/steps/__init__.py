"""Steps applied between reading a source and publishing it."""
