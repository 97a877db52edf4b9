"""The attention analysis (tools/analyze_attention.py) on a tiny random model and a tiny synthetic dataset."""

import numpy as np
import pytest
from detectron2.checkpoint import DetectionCheckpointer
from tiny_model import build_tiny_model, tiny_selsa_cfg

from selsa_d2.data import register_vid_dataset, unregister_vid_dataset
from selsa_d2.evaluation.attention import KINDS, analyze_attention
from selsa_d2.synthetic import generate


@pytest.mark.parametrize("troi", [False, True], ids=["selsa", "selsa_troi"])
def test_attention_masses_partition_the_references(tmp_path, troi):
    root = generate(
        tmp_path / "synthetic_vid", num_train_videos=1, num_val_videos=2, frames=6, seed=5
    )
    name = "test_analyze_attention_val"
    register_vid_dataset(name, raw_root=str(root), split="val")
    try:
        cfg = tiny_selsa_cfg(
            num_classes=4,
            INPUT__VIDEO__TEST_NUM_REFS=3,
            INPUT__MIN_SIZE_TEST=160,
            INPUT__MAX_SIZE_TEST=256,
            MODEL__RPN__POST_NMS_TOPK_TEST=40,
            **(
                dict(MODEL__ROI_HEADS__NAME="SelsaTRoIROIHeads", MODEL__ROI_BOX_HEAD__NUM_FC=3)
                if troi
                else {}
            ),
        )
        DetectionCheckpointer(build_tiny_model(cfg, seed=0), save_dir=str(tmp_path)).save("random")
        cfg.defrost()
        cfg.MODEL.WEIGHTS = str(tmp_path / "random.pth")
        cfg.DATALOADER.NUM_WORKERS = 0
        result = analyze_attention(cfg, name)
    finally:
        unregister_vid_dataset(name)
    assert set(result) == {"clean key frame", "degraded key frame"}
    k = len(KINDS)
    for values in result.values():
        mass, share = values[:k], values[k:]
        np.testing.assert_allclose(
            mass.sum(), 1.0, atol=1e-5
        )  # every reference row is one of the kinds
        np.testing.assert_allclose(share.sum(), 1.0, atol=1e-5)
        assert (mass >= 0).all() and (share >= 0).all()
        assert share[0] > 0  # the same objects appear in the clean reference frames
