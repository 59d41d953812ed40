"""3D Tiles 1.1: meshes, GLB with feature ids and metadata, tileset tree."""
