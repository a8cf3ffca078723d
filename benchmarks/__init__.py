"""Benchmarks for ConvFormer Lab: models, inspection and the app. Run `python -m benchmarks --help`."""
