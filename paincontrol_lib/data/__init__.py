"""Datasets: the embedded SynthPain default and adapters for real data, one record schema."""
