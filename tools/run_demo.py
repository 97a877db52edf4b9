#!/usr/bin/env python
"""The main job (`make demo`): single-frame Faster R-CNN vs SELSA on a video dataset, same start.

    python tools/run_demo.py                      # the synthetic dataset, output/demo
    python tools/run_demo.py --dataset-root DIR   # your raw ILSVRC VID layout with classes.txt
    python tools/run_demo.py --train-json A --val-json B --image-root DIR   # a COCO-VID pair

``--help`` lists every option and step; the comparison is ``selsa_d2.comparison`` (docs/demo.md).
"""

import sys

from selsa_d2.comparison.run_demo import main

if __name__ == "__main__":
    sys.exit(main())
