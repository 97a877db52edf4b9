#!/usr/bin/env python
"""Do SELSA's detections under AMP (float16 autocast on CUDA, bfloat16 on the CPU) match float32?

    python benchmarks/check_amp.py --device cuda          # R-50-DC5, 600x1000, 8 frames, 14 refs
    python benchmarks/check_amp.py --tiny                 # the tests' tiny model on the CPU

``--help`` describes it in full; the benchmark is ``selsa_d2.benchmarking.amp_check``.
"""

import sys

from selsa_d2.benchmarking.amp_check import main

if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
