#!/usr/bin/env python
"""Convert an mmtracking SELSA (or SELSA + Temporal RoI Align) checkpoint to a Detectron2 checkpoint for selsa-d2.

    python tools/convert_mmtrack_to_d2.py selsa_faster_rcnn_r50_dc5_1x_imagenetvid_<hash>.pth \
        selsa_R_50_DC5_mmtrack.pth --config configs/selsa_R_50_DC5_7e_imagenetvid.yaml
    python tools/convert_mmtrack_to_d2.py selsa_troialign_faster_rcnn_r50_dc5_7e_imagenetvid_<hash>.pth \
        selsa_troialign_R_50_DC5_mmtrack.pth --config configs/selsa_troialign_R_50_DC5_7e_imagenetvid.yaml

The output loads with ``MODEL.WEIGHTS selsa_R_50_DC5_mmtrack.pth`` (DetectionCheckpointer, exact
names). ResNet depth / groups are read off the checkpoint; ``--config`` additionally checks the
config's architecture against it (error on a contradiction) and warns about settings that make
inference differ from mmtracking's.
"""

import argparse
import sys

from detectron2.config import get_cfg
from detectron2.utils.logger import setup_logger

from selsa_d2.checkpoint.mmtrack import convert_mmtrack_checkpoint
from selsa_d2.config import add_selsa_config
from selsa_d2.run_guard import merge_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="mmtracking SELSA or SELSA + TRoI checkpoint (.pth)")
    parser.add_argument("output", help="Detectron2 checkpoint to write (.pth)")
    parser.add_argument(
        "--config", default=None, help="selsa-d2 config to check the checkpoint against"
    )
    args = parser.parse_args(argv)
    setup_logger(name="selsa_d2")
    cfg = None
    try:
        if args.config:
            cfg = get_cfg()
            add_selsa_config(cfg)
            merge_config(cfg, args.config, [])
        summary = convert_mmtrack_checkpoint(args.input, args.output, cfg)
    except (KeyError, ValueError, OSError) as e:
        # printed, not logged: the message is the CLI's answer, whatever the logging set-up
        message = str(e) if isinstance(e, OSError) else e.args[0] if e.args else e
        print(f"Conversion failed: {message}", file=sys.stderr)
        return 1
    total = sum(v for k, v in summary.items() if not k.startswith("dropped"))
    print(f"Wrote {args.output}: {total} tensors")
    for group, n in summary.items():
        print(f"  {group:28s} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
