#!/usr/bin/env python
"""Seed x dataset-variant study of SELSA's gain (the demo's comparison, repeated).

    python tools/gain_study.py --out output/gain_study --variants demo texture --seeds 0 1 2

``--help`` lists every option; the study is ``selsa_d2.comparison.gain_study`` (docs/demo.md).
"""

import sys

from selsa_d2.comparison.gain_study import main

if __name__ == "__main__":
    sys.exit(main())
