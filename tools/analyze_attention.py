#!/usr/bin/env python
"""Where does a trained SELSA model's first aggregator look?

For every ground-truth object of a validation set (key proposals with IoU > 0.5 to it), the
attention weights of aggregator 0 (mean over heads, test-time references of the config) are
summed over four kinds of reference proposals: same-class objects in clean frames, same-class
objects in degraded frames, objects of other classes, and background. Printed beside each is the
share uniform attention would give, split by whether the key frame is degraded. Frames count as
degraded when the dataset records ``degradations`` (the synthetic set).

    python tools/analyze_attention.py --config-file configs/synthetic/selsa_tiny.yaml \
        --weights output/demo/selsa/model_final.pth
"""

import argparse

from selsa_d2.checkpoint.loading import WeightsError
from selsa_d2.engine import setup_selsa_cfg
from selsa_d2.evaluation.attention import KINDS, analyze_attention
from selsa_d2.run_guard import RunError


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", help="default: DATASETS.TEST[0]")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:  # user errors (config, weights, dataset files) end in one line
        cfg = setup_selsa_cfg(
            args.config_file,
            args.opts + ["MODEL.WEIGHTS", args.weights, "DATALOADER.NUM_WORKERS", 0],
            freeze=False,
        )
        result = analyze_attention(cfg, args.dataset or cfg.DATASETS.TEST[0])
    except (WeightsError, RunError, FileNotFoundError) as e:
        raise SystemExit(f"analyze_attention.py: error: {e}") from None
    print("attention mass of aggregator 0 (uniform attention in brackets)")
    print("| key frame | " + " | ".join(KINDS) + " |")
    print("|---" * (len(KINDS) + 1) + "|")
    for cond, v in result.items():
        cells = [f"{v[i]:.3f} ({v[i + len(KINDS)]:.3f})" for i in range(len(KINDS))]
        print(f"| {cond} | " + " | ".join(cells) + " |")
    return result


if __name__ == "__main__":
    main()
