#!/usr/bin/env python
"""Per-frame video inference time and memory: SELSA (cached, mmtracking's policy, full
recompute, growing reference counts) against single-frame Faster R-CNN with the same backbone, measured in the same run.

    python benchmarks/bench_inference.py                      # R-50-DC5, 600x1000, 30 frames, CPU
    python benchmarks/bench_inference.py --quick              # smaller images and video
    python benchmarks/bench_inference.py --device cuda --amp  # GPU, float16 autocast
    python benchmarks/bench_inference.py --tiny               # tests' tiny model (seconds)
    python benchmarks/bench_inference.py --troi-only          # Temporal RoI Align search alone

``--help`` describes it in full; the benchmark is ``selsa_d2.benchmarking.inference``.
"""

from selsa_d2.benchmarking.inference import main

if __name__ == "__main__":
    main()
