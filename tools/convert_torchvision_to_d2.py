#!/usr/bin/env python
"""Convert a torchvision ResNet/ResNeXt checkpoint to Detectron2's ImageNet-pretrained format.

    python tools/convert_torchvision_to_d2.py resnet50-0676ba61.pth R-50-torchvision.pkl

Use the .pkl as MODEL.WEIGHTS with the pytorch-style settings: MODEL.RESNETS.STRIDE_IN_1X1 False,
INPUT.FORMAT RGB, MODEL.PIXEL_MEAN [123.675, 116.28, 103.53], MODEL.PIXEL_STD [58.395, 57.12, 57.375].
"""

import argparse
import sys

from detectron2.utils.logger import setup_logger

from selsa_d2.checkpoint.torchvision import convert_torchvision_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="torchvision ResNet state dict (.pth)")
    parser.add_argument("output", help="Detectron2 .pkl to write")
    args = parser.parse_args(argv)
    setup_logger(name="selsa_d2")
    try:
        summary = convert_torchvision_checkpoint(args.input, args.output)
    except (KeyError, ValueError, OSError) as e:
        # printed, not logged: the message is the CLI's answer, whatever the logging set-up
        print(f"Conversion failed: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    print(f"Wrote {args.output}")
    for group, n in summary.items():
        print(f"  {group:28s} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
