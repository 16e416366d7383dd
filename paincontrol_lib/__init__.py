"""PainControl library."""
