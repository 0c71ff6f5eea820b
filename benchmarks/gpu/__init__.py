"""Benchmarks for GPU nodes: ``python -m benchmarks.gpu.run_gpu_bench --help``."""
