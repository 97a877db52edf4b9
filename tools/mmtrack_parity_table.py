#!/usr/bin/env python
"""Print how closely selsa-d2's training matches mmtracking 0.14's, from the references in
tests/data/mmtrack_parity (made by make_references.py there with mmtracking itself).

For each dtype with references (float64, float32): one training step on every input set and
K optimizer steps on the plain set, through the recipe config; one table of the largest relative
difference per loss, gradient group and K-step quantity. Optionally writes the numbers as JSON.

    python tools/mmtrack_parity_table.py [--json out.json] [--dtypes float64 float32]
"""

import argparse
import contextlib
import json
import os
from collections import OrderedDict

import torch
from detectron2.config import get_cfg

from selsa_d2 import add_selsa_config
from selsa_d2 import mmtrack_parity as mp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def column(reference, config_file, dtype):
    """{row: relative difference} for one dtype; rows of the input sets merged by their max."""
    merged = OrderedDict()

    def add(prefix, diffs):
        for k, v in diffs.items():
            merged.setdefault(k, OrderedDict())[prefix] = v

    for input_set in reference.input_sets:
        cfg = get_cfg()
        add_selsa_config(cfg)
        cfg.merge_from_file(config_file)
        cfg = mp.parity_config(cfg, reference, input_set)
        ref = reference.load(input_set, dtype)
        torch.manual_seed(0)
        with mp.float64_boxes() if dtype == "float64" else contextlib.nullcontext():
            model, names = mp.build_parity_model(cfg, reference, dtype)
            inputs = mp.training_inputs(reference, input_set, dtype)
            add(input_set, mp.compare_step(mp.training_step(model, names, inputs), ref))
            if "k_lr" in ref:  # K steps, with mmdet's R-CNN eps (see the parity test)
                model, names = mp.build_parity_model(cfg, reference, dtype, rcnn_loss_eps=True)
                add(input_set, mp.compare_steps(mp.optimizer_steps(cfg, model, names, inputs), ref))
        print(f"  {dtype} {input_set} done", flush=True)
    return merged


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=os.path.join(REPO, "tests", "data", "mmtrack_parity"))
    ap.add_argument(
        "--config-file", default=os.path.join(REPO, "configs", "selsa_R_50_DC5_7e_imagenetvid.yaml")
    )
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args()
    reference = mp.ParityReference(args.reference)
    print("reference made with", reference.versions)
    columns = OrderedDict((d, column(reference, args.config_file, d)) for d in args.dtypes)
    rows = list(next(iter(columns.values())))
    print("\n| quantity | " + " | ".join(f"max rel. diff. {d}" for d in args.dtypes) + " |")
    print("|---|" + "---|" * len(args.dtypes))
    for row in rows:
        cells = []
        for d in args.dtypes:
            per_set = columns[d].get(row, {})
            cells.append(f"{max(per_set.values()):.1e}" if per_set else "-")
        print(f"| {row} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(columns, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
