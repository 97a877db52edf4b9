#!/usr/bin/env python
"""SELSA video object detection demo on a user video or a folder of frames.

Follows Detectron2's ``demo/demo.py`` conventions::

    python demo/demo.py --config-file configs/selsa_R_50_DC5_7e_imagenetvid.yaml \
        --video-input clip.mp4 --output out/ --opts MODEL.WEIGHTS model_final.pth

Writes an annotated video and a JSON list with one entry per frame (see ``demo/README.md``);
``--help`` lists the options. The demo is ``selsa_d2.video_demo``.
"""

import sys

from selsa_d2.video_demo import main

if __name__ == "__main__":
    sys.exit(main())
