#!/usr/bin/env python
"""Training iteration time and peak memory: SELSA (key frame + ``--refs`` references) against the
single-frame Faster R-CNN baseline with the same backbone, measured in the same run.

    python benchmarks/bench_train.py                 # R-50-DC5, 600x1000, CPU
    python benchmarks/bench_train.py --quick         # 320x544
    python benchmarks/bench_train.py --device cuda --amp
    python benchmarks/bench_train.py --tiny          # the tests' tiny model (seconds)

``--help`` describes it in full; the benchmark is ``selsa_d2.benchmarking.training``.
"""

from selsa_d2.benchmarking.training import main

if __name__ == "__main__":
    main()
