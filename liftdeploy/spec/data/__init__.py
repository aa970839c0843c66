"""Catalog data files (GPUs, model architectures), each entry with its source."""
