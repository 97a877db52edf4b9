"""Temporal RoI Align: the module against independent re-implementations of mmtracking's
``most_similar_roi_align`` and ``temporal_attentional_feature_aggregation``
(mmtrack/models/roi_heads/roi_extractors/temporal_roi_align.py, mmtrack 0.14), training through
it, and the cached video inference of a TRoI model.
"""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.utils.events import EventStorage
from tiny_model import (
    build_tiny_model,
    results_close,
    synthetic_video,
    tiny_selsa_cfg,
    torch_threads,
    training_inputs,
    video_inputs,
)
from torchvision.ops import roi_align

from selsa_d2.data.sampling import TestReferenceSampler
from selsa_d2.modeling import SelsaTRoIROIHeads, TemporalRoIAlign

TROI_OVERRIDES = dict(MODEL__ROI_HEADS__NAME="SelsaTRoIROIHeads", MODEL__ROI_BOX_HEAD__NUM_FC=3)


# ------------------------------------------------------------------ mmtracking's two functions, re-implemented
def mmtrack_most_similar_roi_align(roi_feats, ref_feats, k=2):
    """roi_feats [N, C, h, w], ref_feats [T, C, H, W] -> [T, N, C, h, w]: one similarity matrix over
    all frames, top-k per (query, frame) on a [Q, T, HW] view, loop over frames with fancy indexing."""
    n, c, h, w = roi_feats.shape
    t, _, hh, ww = ref_feats.shape
    q = roi_feats / roi_feats.norm(p=2, dim=1, keepdim=True)
    r = ref_feats / ref_feats.norm(p=2, dim=1, keepdim=True)
    sim = (
        q.permute(0, 2, 3, 1)
        .reshape(-1, c)
        .mm(r.permute(1, 0, 2, 3).reshape(c, -1))
        .view(-1, t, hh * ww)
    )
    values, indices = sim.topk(k=k, dim=2, largest=True)
    values = values.softmax(dim=2)
    flat = ref_feats.permute(2, 3, 0, 1).reshape(hh * ww, t, c)
    per_frame = [
        (flat[indices[:, i], i, :] * values[:, i].unsqueeze(-1)).sum(dim=1) for i in range(t)
    ]
    return torch.stack(per_frame).view(t, n, h, w, c).permute(0, 1, 4, 2, 3)


def mmtrack_temporal_aggregation(x, ref_x, weight, bias, blocks=4):
    """x [N, C, h, w] (key), ref_x [T, N, C, h, w] -> [N, C, h, w] (embed conv, per-block dot
    products with the key's embedding over sqrt(C/G), softmax over frames)."""
    x = torch.cat((x[None], ref_x), dim=0)
    f, n, c, h, w = x.shape
    if blocks <= 0:
        return x.mean(dim=0)
    e = F.conv2d(x.reshape(f * n, c, h, w), weight, bias, padding=1)
    e = e.view(f, n, blocks, c // blocks, h, w)
    a = (e * e[[0]]).sum(dim=3, keepdim=True) / float(c / blocks) ** 0.5
    a = a.expand(-1, -1, -1, c // blocks, -1, -1).reshape(f, n, c, h, w).softmax(dim=0)
    return (x * a).sum(dim=0)


def _troi(c=16, blocks=4, k=2, chunk_size=1 << 25, seed=0):
    torch.manual_seed(seed)
    m = TemporalRoIAlign(
        in_channels=c,
        feature_stride=16,
        num_most_similar_points=k,
        num_temporal_attention_blocks=blocks,
        chunk_size=chunk_size,
    )
    if blocks:  # a larger embedding makes the attention weights far from uniform
        with torch.no_grad():
            m.embed_network.weight.mul_(3.0)
            m.embed_network.bias.normal_()
    return m.eval()


def _reference(m, roi, maps):
    ms = mmtrack_most_similar_roi_align(roi, maps, m.num_most_similar_points)
    w = m.embed_network.weight if m.num_temporal_attention_blocks else None
    b = m.embed_network.bias if m.num_temporal_attention_blocks else None
    return ms, mmtrack_temporal_aggregation(roi, ms, w, b, m.num_temporal_attention_blocks)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ the module against the re-implementation
@pytest.mark.parametrize("chunk_size", [1 << 25, 37, 1])
@pytest.mark.parametrize("blocks", [4, 0])
def test_matches_mmtracking(chunk_size, blocks):
    m = _troi(blocks=blocks, chunk_size=chunk_size)
    roi, maps = _rand(5, 16, 7, 7, seed=1), _rand(3, 16, 6, 9, seed=2)
    with torch.no_grad():
        ms = m.most_similar_features(roi, list(maps))
        out = m(roi, list(maps))
        ref_ms, ref_out = _reference(m, roi, maps)
    assert ms.shape == (3, 5, 16, 7, 7) and out.shape == roi.shape
    torch.testing.assert_close(ms, ref_ms, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, roi, atol=1e-3)  # the references changed something


def test_chunking_changes_nothing_and_bounds_the_similarity_block(monkeypatch):
    m = _troi(chunk_size=64)
    roi, maps = _rand(4, 16, 3, 3, seed=3), list(_rand(2, 16, 4, 5, seed=4))
    with torch.no_grad():
        whole = _troi(chunk_size=1 << 25)(roi, maps)
    sizes = []
    topk = torch.Tensor.topk

    def spy(self, *a, **kw):
        sizes.append(self.numel())
        return topk(self, *a, **kw)

    monkeypatch.setattr(torch.Tensor, "topk", spy)
    with torch.no_grad():
        chunked = m(roi, maps)
    assert max(sizes) <= 64 and len(sizes) == 2 * math.ceil(36 / (64 // 20))
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)  # conv batch sizes differ


def test_ties_between_identical_vectors():
    """A map made of 3 distinct vectors, each at many positions: every top-2 is a tie between
    copies of one vector, whichever copies are kept the result is that vector."""
    m = _troi()
    base = _rand(3, 16, seed=5)
    which = torch.arange(30) % 3
    ref = base[which].t().reshape(1, 16, 5, 6)
    roi = _rand(2, 16, 3, 3, seed=6)
    with torch.no_grad():
        ms = m.most_similar_features(roi, [ref[0]])
        ref_ms, ref_out = _reference(m, roi, ref)
        out = m(roi, [ref[0]])
    best = (F.normalize(roi.permute(0, 2, 3, 1), dim=-1) @ F.normalize(base, dim=1).t()).argmax(
        -1
    )  # [N, h, w]
    torch.testing.assert_close(ms[0], base[best].permute(0, 3, 1, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(ms, ref_ms, rtol=0, atol=1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)


def test_ties_between_different_vectors_pick_a_valid_top_k():
    """Three parallel vectors of different norms (equal cosine) tie for the top 2: which two are
    kept is up to torch.topk (as in mmtracking); the result must be one of the valid choices."""
    m = _troi(c=8)
    v = F.normalize(_rand(8, seed=7), dim=0)
    others = _rand(9, 8, seed=8)
    others = others - (others @ v)[:, None] * v  # orthogonal to v: cosine 0 with a query along v
    vectors = torch.cat(
        [others[:3], v[None], 2 * v[None], others[3:6], 3 * v[None], others[6:]]
    )  # 12 positions
    ref = vectors.t().reshape(8, 3, 4)
    roi = v.view(1, 8, 1, 1).expand(1, 8, 2, 2).clone()
    with torch.no_grad():
        ms = m.most_similar_features(roi, [ref])[0, 0, :, 0, 0]
        mm = mmtrack_most_similar_roi_align(roi, ref[None])[0, 0, :, 0, 0]
    tied = [v, 2 * v, 3 * v]
    valid = [
        0.5 * (a + b) for a, b in itertools.combinations(tied, 2)
    ]  # equal similarities: equal weights
    assert any(torch.allclose(ms, x, atol=1e-6) for x in valid), ms
    assert any(torch.allclose(mm, x, atol=1e-6) for x in valid)


def test_reference_frame_identical_to_the_key():
    """The key frame among its references (as at test time): RoI features read at the map's own
    positions find themselves first (cosine 1); through RoIAlign the module still matches."""
    m = _troi()
    key = torch.relu(_rand(1, 16, 6, 8, seed=9))
    ys, xs = torch.tensor([[0, 2], [5, 3]]), torch.tensor([[1, 7], [4, 0]])
    roi = key[0][:, ys, xs].unsqueeze(0)  # [1, C, 2, 2] exact map vectors
    maps = torch.cat([key, key, _rand(1, 16, 6, 8, seed=10)])
    with torch.no_grad():
        ms = m.most_similar_features(roi, list(maps))
        ref_ms, ref_out = _reference(m, roi, maps)
        out = m(roi, list(maps))
    q = F.normalize(key[0].reshape(16, -1).t(), dim=1)
    sims = q @ q.t()  # [HW, HW]
    for i, j in itertools.product(range(2), range(2)):
        p = int(ys[i, j] * 8 + xs[i, j])
        top2 = sims[p].topk(2)
        assert top2.indices[0] == p and abs(top2.values[0] - 1) < 1e-6
        w = top2.values.softmax(0)
        expect = (
            w[0] * key[0].reshape(16, -1)[:, p] + w[1] * key[0].reshape(16, -1)[:, top2.indices[1]]
        )
        torch.testing.assert_close(ms[0, 0, :, i, j], expect, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ms[1, 0, :, i, j], expect, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ms, ref_ms, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    # real RoIAlign features (mmtracking's own unit test: the key map repeated as both references)
    boxes = torch.tensor([[0.0, 5.0, 10.0, 100.0, 90.0], [0.0, 30.0, 0.0, 60.0, 40.0]])
    pooled = roi_align(key, boxes, (7, 7), spatial_scale=1 / 16, sampling_ratio=2, aligned=True)
    with torch.no_grad():
        out = m(pooled, [key[0], key[0]])
        _, ref_out = _reference(m, pooled, key.repeat(2, 1, 1, 1))
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)


def test_maps_of_different_sizes_and_small_maps():
    m = _troi()
    roi, a, b = (
        _rand(3, 16, 2, 2, seed=11),
        _rand(1, 16, 4, 5, seed=12),
        _rand(1, 16, 3, 7, seed=13),
    )
    with torch.no_grad():
        ms = m.most_similar_features(roi, [a[0], b[0]])
        torch.testing.assert_close(
            ms[0], mmtrack_most_similar_roi_align(roi, a)[0], rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(
            ms[1], mmtrack_most_similar_roi_align(roi, b)[0], rtol=1e-5, atol=1e-6
        )
        # a one-position map: its only vector (documented; mmtracking's topk(2) would raise)
        one = _rand(16, 1, 1, seed=14)
        torch.testing.assert_close(
            m.most_similar_features(roi, [one])[0], one.view(1, 16, 1, 1).expand(3, 16, 2, 2)
        )
        assert torch.equal(m(roi, []), roi)  # no references: unchanged
        assert m(roi[:0], [a[0]]).shape == (0, 16, 2, 2)
    zero = torch.zeros(16, 2, 2)  # all-zero vectors (after ReLU): no NaN
    assert torch.isfinite(m(roi, [zero])).all()


def test_reference_map_crops_batch_padding():
    m = _troi()
    f = torch.zeros(16, 10, 12)
    assert m.reference_map(f, (100, 130)).shape == (16, 7, 9)
    assert m.reference_map(f, (160, 192)).shape == (16, 10, 12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        _troi(c=10, blocks=4)
    with pytest.raises(ValueError, match="num_most_similar_points"):
        _troi(k=0)
    with pytest.raises(ValueError, match="channels"):
        _troi()(_rand(1, 16, 2, 2), [_rand(8, 3, 3)])


# ------------------------------------------------------------------ inside the model
def test_config_builds_the_registered_module():
    cfg = tiny_selsa_cfg(**TROI_OVERRIDES)
    model = build_tiny_model(cfg)
    assert isinstance(model.roi_heads, SelsaTRoIROIHeads)
    t = model.roi_heads.temporal_roi_align
    assert (t.num_most_similar_points, t.num_temporal_attention_blocks, t.in_channels) == (2, 4, 32)
    assert len(model.roi_heads.box_head.fcs) == 3 and len(model.roi_heads.box_head.aggregators) == 3


def test_synthetic_troi_config_builds():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from tiny_model import REPO_ROOT

    from selsa_d2.config import add_selsa_config

    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(f"{REPO_ROOT}/configs/synthetic/selsa_troi_tiny.yaml")
    model = build_model(cfg)
    assert isinstance(model.roi_heads, SelsaTRoIROIHeads) and len(model.roi_heads.box_head.fcs) == 3
    assert model.roi_heads.temporal_roi_align.embed_network.weight.shape == (64, 64, 3, 3)


def test_float32_under_autocast():
    m = _troi()
    roi, maps = _rand(2, 16, 3, 3, seed=16), list(_rand(2, 16, 4, 4, seed=17))
    with torch.no_grad():
        full = m(roi, maps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = m(roi.bfloat16(), [x.bfloat16() for x in maps])
    assert half.dtype == torch.bfloat16
    # computed in float32 from the bfloat16 inputs, cast back at the end: exactly
    assert torch.equal(
        half, m(roi.bfloat16().float(), [x.bfloat16().float() for x in maps]).bfloat16()
    )
    assert full.dtype == torch.float32


def test_training_gradients_reach_the_embed_network():
    with torch_threads():
        model = build_tiny_model(tiny_selsa_cfg(**TROI_OVERRIDES), eval_mode=False)
        with EventStorage():
            losses = model(training_inputs(num_keys=2, num_refs=2))
        sum(losses.values()).backward()
    grad = model.roi_heads.temporal_roi_align.embed_network.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.roi_heads.temporal_roi_align.embed_network.bias.grad.abs().sum() > 0


def test_training_key_images_search_only_their_own_references():
    """Two key images of different sizes in one padded batch: each key's TRoI features are those
    of the key alone against its own references' maps, cropped to their images."""
    model = build_tiny_model(tiny_selsa_cfg(**TROI_OVERRIDES))
    heads = model.roi_heads
    feat = torch.relu(_rand(6, 32, 6, 8, seed=15))  # keys 0, 1; refs 2..5 (2 per key)
    sizes = [(96, 128), (80, 112), (96, 128), (96, 128), (80, 112), (80, 112)]
    from detectron2.structures import Boxes, Instances

    def inst(i, boxes):
        p = Instances(sizes[i])
        p.proposal_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        return p

    props = [inst(0, [[0, 0, 60, 50], [10, 20, 90, 90]]), inst(1, [[5, 5, 50, 70]])]
    refs = [inst(i, [[0, 0, 30, 30]]) for i in range(2, 6)]
    pooled = heads.box_pooler([feat[:2]], [p.proposal_boxes for p in props])
    with torch.no_grad():
        out = heads.key_roi_features(pooled, {"neck": feat}, props, refs, [2, 2])
        alone0 = heads.temporal_roi_align(pooled[:2], [feat[2], feat[3]])
        alone1 = heads.temporal_roi_align(pooled[2:], [feat[4, :, :5, :7], feat[5, :, :5, :7]])
    torch.testing.assert_close(out, torch.cat([alone0, alone1]), rtol=0, atol=0)
    with torch.no_grad():
        padded = heads.temporal_roi_align(pooled[2:], [feat[4], feat[5]])
    assert not torch.allclose(padded, alone1)  # the crop matters


# ------------------------------------------------------------------ cached video inference
def _engine_results(model, frames, sampler, cache):
    model.video_engine.cache_features = cache
    model.video_engine.ref_sampler = sampler
    model.video_engine.reset()
    with torch.no_grad():
        return [
            model.video_engine.process([d], do_postprocess=False)[0]
            for d in video_inputs(frames, sampler)
        ]


@pytest.mark.parametrize(
    "mode,strategy", [("offline", "adaptive_stride"), ("online", "adaptive_stride")]
)
def test_cached_equals_uncached(mode, strategy):
    frames = synthetic_video(7)
    sampler = TestReferenceSampler(mode, strategy, num_refs=3)
    with torch_threads():
        model = build_tiny_model(tiny_selsa_cfg(**TROI_OVERRIDES))
        cached = _engine_results(model, frames, sampler, True)
        assert model.video_engine.frames_computed == 7
        assert all(f.feature_maps is not None for f in model.video_engine._cache.values())
        uncached = _engine_results(model, frames, sampler, False)
    assert sum(len(r) for r in cached) > 0
    for t, (a, b) in enumerate(zip(cached, uncached)):
        assert results_close(a, b, atol=1e-5) is None, (t, results_close(a, b, atol=1e-5))


def test_engine_matches_the_generic_roi_heads_path():
    """Key frame t through the engine == SelsaTRoIROIHeads.forward on [key] with references
    (its reference frames, then itself) computed one image at a time as the engine does."""
    frames = synthetic_video(6)
    sampler = TestReferenceSampler("offline", "adaptive_stride", num_refs=3)
    with torch_threads():
        model = build_tiny_model(tiny_selsa_cfg(**TROI_OVERRIDES))
        engine = _engine_results(model, frames, sampler, True)
        inputs = video_inputs(frames, sampler)
        feats, props = [], []
        with torch.no_grad():
            for d in inputs:
                images = model.preprocess_image([d])
                f = model.backbone(images.tensor)
                p, _ = model.proposal_generator(images, f, None)
                feats.append(f["neck"])
                props.append(p[0])
            for t in (0, 3, 5):
                refs = sampler.refs(t, len(frames)) + [t]
                stacked = torch.cat([feats[t]] + [feats[r] for r in refs])
                pred, _ = model.roi_heads(
                    None, {"neck": stacked}, [props[t]], ref_proposals=[props[r] for r in refs]
                )
                assert results_close(pred[0], engine[t], atol=1e-4) is None, (
                    t,
                    results_close(pred[0], engine[t]),
                )


def test_public_per_frame_api():
    """SelsaRCNN.detect_key_frame with frames (their maps kept automatically) == the engine; a bare
    ReferenceMemory without reference_frames is refused for a TRoI model."""
    frames = synthetic_video(5)
    sampler = TestReferenceSampler("offline", "adaptive_stride", num_refs=2)
    with torch_threads():
        model = build_tiny_model(tiny_selsa_cfg(**TROI_OVERRIDES))
        engine = _engine_results(model, frames, sampler, True)
        inputs = video_inputs(frames, sampler)
        with torch.no_grad():
            feats = [model.compute_frame_features(d) for d in inputs]
            assert all(f.feature_maps is not None for f in feats)
            for t in (0, 4):
                refs = [feats[r] for r in sampler.refs(t, len(frames))] + [feats[t]]
                pred = model.detect_key_frame(feats[t], refs)
                assert results_close(pred, engine[t], atol=1e-5) is None, t
            with pytest.raises(ValueError, match="reference_frames"):
                model.detect_key_frame(feats[0], model.reference_memory(refs))
