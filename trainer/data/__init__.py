"""VSR++ data sets."""
