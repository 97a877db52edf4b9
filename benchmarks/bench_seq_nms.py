#!/usr/bin/env python
"""Seq-NMS speed: the vectorised implementation vs a loop-by-loop transliteration of FGFA's.

    python benchmarks/bench_seq_nms.py                 # 1,000 frames, 300 candidates per frame

``--help`` describes it in full; the benchmark is ``selsa_d2.benchmarking.seq_nms``.
"""

from selsa_d2.benchmarking.seq_nms import main

if __name__ == "__main__":
    main()
