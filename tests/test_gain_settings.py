"""The demo's regime: key-frame-only evaluation, the shared start (a single-frame checkpoint
continued as SELSA) and zero-initialised residual branches."""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.events import EventStorage
from tiny_model import (
    build_tiny_model,
    frame_input,
    results_close,
    synthetic_video,
    tiny_selsa_cfg,
    torch_threads,
    training_inputs,
    video_inputs,
)

from selsa_d2.data.sampling import (
    TestReferenceSampler as RefSampler,
)  # alias: pytest would collect "Test*"

SINGLE_FRAME = dict(
    MODEL__META_ARCHITECTURE="GeneralizedRCNN",
    MODEL__ROI_HEADS__NAME="StandardROIHeads",
    MODEL__ROI_BOX_HEAD__NAME="FastRCNNConvFCHead",
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def frames():
    return synthetic_video(8, 80, 112, seed=0)


def _video(model, frames, sampler, do_postprocess=False):
    """Detections of every frame (raw Instances at the input size unless ``do_postprocess``)."""
    model.video_engine.ref_sampler = sampler
    model.video_engine.reset()
    outs = model.inference(video_inputs(frames, sampler, video_id=1), do_postprocess=do_postprocess)
    return [o["instances"] for o in outs] if do_postprocess else outs


# ------------------------------------------------------------------------------ key frame only
def test_key_frame_only_uses_the_key_frames_own_proposals_as_its_only_references(frames):
    cfg = tiny_selsa_cfg(
        INPUT__VIDEO__TEST_NUM_REFS=4,
        MODEL__SELSA__INFERENCE__KEY_FRAME_AS_REF=False,
        MODEL__SELSA__INFERENCE__KEY_FRAME_ONLY=True,
    )
    sampler = RefSampler.from_config(cfg)
    assert (
        sampler.num_refs == 0 and sampler.frames_to_supply(0, 8) == []
    )  # the loader supplies nothing either
    model = build_tiny_model(cfg, seed=3)
    assert model.video_engine.key_frame_as_ref  # implied, whatever KEY_FRAME_AS_REF says
    got = _video(model, frames, sampler)
    assert model.video_engine.last_reference_ids == []
    for t in (0, 5):
        # the plain ROI-heads forward with the key frame's own proposals as the references
        inp = [frame_input(frames[t], 0, t, len(frames))]
        with torch.no_grad():
            images = model.preprocess_image(inp)
            feats = model.backbone(images.tensor)
            props, _ = model.proposal_generator(images, feats, None)
            two = {k: torch.cat([v, v]) for k, v in feats.items()}
            want, _ = model.roi_heads(images, two, props, ref_proposals=props)
        assert len(want[0]) > 0
        assert results_close(got[t], want[0], atol=1e-4) is None, results_close(got[t], want[0])


def test_key_frame_only_differs_from_evaluation_with_references(frames):
    with_refs = build_tiny_model(seed=3, INPUT__VIDEO__TEST_NUM_REFS=4)
    key_only = build_tiny_model(
        seed=3, INPUT__VIDEO__TEST_NUM_REFS=4, MODEL__SELSA__INFERENCE__KEY_FRAME_ONLY=True
    )
    a = _video(with_refs, frames, RefSampler("offline", "adaptive_stride", 4))
    b = _video(key_only, frames, RefSampler("offline", "adaptive_stride", 0))
    assert any(results_close(x, y) is not None for x, y in zip(a, b))


# ------------------------------------------------------------------------------ shared start
def test_single_frame_checkpoint_loads_into_selsa_with_only_aggregators_new(frames, tmp_path):
    single = build_tiny_model(seed=5, **SINGLE_FRAME)
    DetectionCheckpointer(single, save_dir=str(tmp_path)).save("single_frame")
    selsa = build_tiny_model(seed=11, MODEL__SELSA__ZERO_INIT_AGGREGATOR_OUTPUT=True)
    single_keys, selsa_keys = set(single.state_dict()), set(selsa.state_dict())
    assert single_keys <= selsa_keys  # nothing of the single-frame detector is left out
    new = selsa_keys - single_keys
    assert new and all(k.startswith("roi_heads.box_head.aggregators.") for k in new)
    assert {k.split(".")[4] for k in new} == {"fc_embed", "ref_fc_embed", "ref_fc", "fc"}
    DetectionCheckpointer(selsa).load(str(tmp_path / "single_frame.pth"))
    for k, v in single.state_dict().items():
        assert torch.equal(selsa.state_dict()[k], v), k
    # zero output fc: SELSA starts as exactly the single-frame detector, references or not
    sampler = RefSampler("offline", "adaptive_stride", 4)
    got = _video(selsa, frames, sampler, do_postprocess=True)
    assert selsa.video_engine.last_reference_ids  # it did attend to references
    with torch.no_grad():
        want = [
            single([frame_input(f, 0, i, len(frames))])[0]["instances"]
            for i, f in enumerate(frames)
        ]
    assert sum(len(w) for w in want) > 0
    for t, (x, y) in enumerate(zip(got, want)):
        assert results_close(x, y, atol=1e-4) is None, f"frame {t}: {results_close(x, y)}"


def test_zero_init_aggregator_output_still_learns():
    model = build_tiny_model(
        seed=0, eval_mode=False, MODEL__SELSA__ZERO_INIT_AGGREGATOR_OUTPUT=True
    )
    aggs = model.roi_heads.box_head.aggregators
    assert all(
        torch.count_nonzero(a.fc.weight) == 0 and torch.count_nonzero(a.fc.bias) == 0 for a in aggs
    )
    with EventStorage():
        losses = model(training_inputs(num_keys=2, num_refs=2))
    sum(losses.values()).backward()
    assert any(a.fc.weight.grad.abs().sum() > 0 for a in aggs)


# ------------------------------------------------------------------------------ zero-init residual
def test_zero_init_residual_zeroes_the_last_norm_of_every_block():
    model = build_tiny_model(
        seed=0, MODEL__RESNETS__NORM="BN", MODEL__SELSA__ZERO_INIT_RESIDUAL=True
    )
    blocks = [b for stage in model.backbone.bottom_up.stages for b in stage.children()]
    assert len(blocks) == 6  # R-18 up to res4: 2 basic blocks per stage
    for b in blocks:
        assert torch.count_nonzero(b.conv2.norm.weight) == 0
        assert torch.count_nonzero(b.conv1.norm.weight) == b.conv1.norm.weight.numel()
    plain = build_tiny_model(seed=0, MODEL__RESNETS__NORM="BN")
    assert all(
        torch.all(b.conv2.norm.weight == 1)
        for s in plain.backbone.bottom_up.stages
        for b in s.children()
    )


def test_zero_init_residual_rejects_frozen_norms():
    with pytest.raises(ValueError, match="trainable norms"):
        build_tiny_model(
            seed=0, MODEL__RESNETS__NORM="FrozenBN", MODEL__SELSA__ZERO_INIT_RESIDUAL=True
        )
