#!/usr/bin/env python
"""Score a saved ``vid_detections.json`` (what ``train_net.py --eval-only`` writes) against a
registered dataset, with or without Seq-NMS, and print the tables ``--eval-only`` prints. No model,
no inference.

    python tools/rescore_detections.py --config-file CONFIG --detections out/inference/vid_detections.json
    python tools/rescore_detections.py --config-file CONFIG --detections ... --seq-nms \
        TEST.VID.SEQ_NMS.RESCORE max

The dataset is ``--dataset`` or the config's ``DATASETS.TEST[0]`` (registered as ``train_net.py``
does: the builtin ones plus the config's ``DATASETS.COCO_VID``). ``--seq-nms`` (or
``TEST.VID.SEQ_NMS.ENABLED True``) applies Seq-NMS to *what was saved*: detections already
through per-frame NMS and the per-frame cap, not the model's pre-NMS candidates that
``--eval-only`` with Seq-NMS enabled uses; results can differ from (usually a little below) those.
A file that does not fit the dataset (unknown image ids, wrong category ids, malformed entries)
stops with an error naming the file and the entry.
"""

import argparse
import sys

from detectron2.config import get_cfg
from detectron2.evaluation import print_csv_format
from detectron2.utils.logger import setup_logger

import selsa_d2  # noqa: F401  (registers datasets)
from selsa_d2 import add_selsa_config
from selsa_d2.data import register_datasets_from_config
from selsa_d2.evaluation.saved_detections import DetectionsFileError, rescore_saved_detections


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--detections", required=True, help="a saved vid_detections.json")
    p.add_argument("--dataset", default=None, help="registered dataset (default: DATASETS.TEST[0])")
    p.add_argument(
        "--seq-nms",
        action="store_true",
        help="Seq-NMS (TEST.VID.SEQ_NMS.*) on the saved post-NMS, capped detections first",
    )
    p.add_argument(
        "--output-dir",
        default=None,
        help="also write vid_metrics.json and the (re-scored) vid_detections.json here",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.seq_nms:
        cfg.TEST.VID.SEQ_NMS.ENABLED = True
    # saved detections exist for the whole video, whatever mode produced them
    cfg.INPUT.VIDEO.TEST_MODE = "offline"
    cfg.freeze()
    setup_logger(name="selsa_d2")
    setup_logger(name="detectron2")
    register_datasets_from_config(cfg)
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None)
    if dataset is None:
        raise SystemExit("rescore_detections.py: error: no --dataset and DATASETS.TEST is empty")
    try:
        results = rescore_saved_detections(cfg, dataset, args.detections, args.output_dir)
    except (DetectionsFileError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"rescore_detections.py: error: {e}") from None
    print_csv_format(results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
