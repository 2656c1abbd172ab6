"""VSR++ model registry."""
