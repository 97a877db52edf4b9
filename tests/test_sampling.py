"""Reference-frame sampling: training strategies and the test-time sampler / cache contract."""

import numpy as np
import pytest

from selsa_d2.data.sampling import (
    TestReferenceSampler as RefSampler,
)  # alias: pytest would collect "Test*"
from selsa_d2.data.sampling import sample_train_refs


def _draws(n, **kw):
    rng = np.random.RandomState(0)
    return [sample_train_refs(rng=rng, **kw) for _ in range(n)]


# ---------------------------------------------------------------- training
def test_bilateral_one_ref_each_side_within_range():
    draws = _draws(300, frame_id=20, video_length=50, num_refs=2, frame_range=9)
    for left, right in draws:
        assert 11 <= left <= 19 and 21 <= right <= 29
    # every allowed frame on each side shows up, the key never does
    assert {d[0] for d in draws} == set(range(11, 20))
    assert {d[1] for d in draws} == set(range(21, 30))


def test_bilateral_four_refs_two_per_side_distinct():
    for refs in _draws(200, frame_id=10, video_length=30, num_refs=4, frame_range=3):
        assert len(set(refs)) == 4 and 10 not in refs
        assert sum(r < 10 for r in refs) == 2 and all(7 <= r <= 13 for r in refs)


def test_bilateral_odd_count_puts_extra_ref_right():
    for refs in _draws(50, frame_id=10, video_length=30, num_refs=3, frame_range=5):
        assert sum(r < 10 for r in refs) == 1 and sum(r > 10 for r in refs) == 2


@pytest.mark.parametrize("frame_id,side", [(0, "right"), (29, "left")])
def test_bilateral_key_at_video_end_gets_one_ref_from_the_other_side(frame_id, side):
    # mmtracking's ref_img_sampling: each side gives min(num_refs // 2, frames on that side)
    for refs in _draws(50, frame_id=frame_id, video_length=30, num_refs=2, frame_range=9):
        assert len(refs) == 1
        if side == "right":
            assert 1 <= refs[0] <= 9
        else:
            assert 20 <= refs[0] <= 28


def test_short_videos():
    # one frame (DET image): the key repeated
    assert _draws(1, frame_id=0, video_length=1, num_refs=2, frame_range=9)[0] == [0, 0]
    assert _draws(1, frame_id=0, video_length=1, num_refs=3, frame_range=9, method="uniform")[
        0
    ] == [0, 0, 0]
    # two frames: the only other frame, once
    assert _draws(1, frame_id=0, video_length=2, num_refs=2, frame_range=9)[0] == [1]
    assert _draws(1, frame_id=1, video_length=2, num_refs=2, frame_range=9)[0] == [0]
    # three frames, middle key: one each side
    assert all(
        r == [0, 2] for r in _draws(20, frame_id=1, video_length=3, num_refs=2, frame_range=9)
    )
    # three frames, first key, 4 refs: the right side's 2 frames once each, nothing on the left
    assert all(
        r == [1, 2] for r in _draws(20, frame_id=0, video_length=3, num_refs=4, frame_range=9)
    )
    # fewer frames than refs, uniform: every other frame once, key excluded
    assert all(
        r == [0, 2]
        for r in _draws(20, frame_id=1, video_length=3, num_refs=5, frame_range=9, method="uniform")
    )


def test_uniform_method_window_and_key_exclusion():
    draws = _draws(400, frame_id=5, video_length=100, num_refs=2, frame_range=4, method="uniform")
    seen = set()
    for refs in draws:
        assert refs == sorted(refs) and len(set(refs)) == 2
        seen.update(refs)
    assert seen == {1, 2, 3, 4, 6, 7, 8, 9}
    # unlike bilateral, both refs can lie on one side
    assert any(r[1] < 5 for r in draws) and any(r[0] > 5 for r in draws)


def test_determinism_with_seeded_rng():
    kw = dict(frame_id=12, video_length=40, num_refs=2, frame_range=9)
    a = [sample_train_refs(rng=np.random.RandomState(7), **kw) for _ in range(3)]
    r1, r2 = np.random.RandomState(3), np.random.RandomState(3)
    seq1 = [sample_train_refs(rng=r1, **kw) for _ in range(20)]
    seq2 = [sample_train_refs(rng=r2, **kw) for _ in range(20)]
    assert a[0] == a[1] == a[2]
    assert seq1 == seq2
    assert len({tuple(s) for s in seq1}) > 5  # and it is random, not constant


def test_train_sampler_bad_arguments():
    with pytest.raises(ValueError, match="nope"):
        sample_train_refs(0, 5, method="nope")
    with pytest.raises(ValueError, match="frame_id 5"):
        sample_train_refs(5, 5)


# ---------------------------------------------------------------- test time
def test_adaptive_stride_ids():
    s = RefSampler("offline", "adaptive_stride", num_refs=14)
    assert s.refs(0, 40) == list(range(0, 40, 3))
    assert s.refs(25, 40) == list(range(0, 40, 3))  # same set for every key frame
    assert s.refs(7, 14) == list(range(14))
    assert RefSampler(num_refs=3).refs(2, 5) == [0, 2, 4]


def test_fixed_window_and_online_ids():
    w = RefSampler("offline", "fixed_window", num_refs=4, stride=2)
    assert w.refs(10, 30) == [6, 8, 12, 14]
    assert w.refs(1, 30) == [0, 0, 3, 5]  # clipped at the start
    assert w.refs(29, 30) == [25, 27, 29, 29]  # and at the end
    o = RefSampler("online", num_refs=3, stride=2)
    assert o.refs(10, 30) == [4, 6, 8]
    assert o.refs(3, 30) == [1]
    assert o.refs(0, 30) == []
    assert all(o.frames_to_supply(f, 30) == [] for f in range(30))  # causal: nothing ahead


def test_sampler_from_config():
    from detectron2.config import get_cfg

    from selsa_d2.config import add_selsa_config

    cfg = add_selsa_config(get_cfg())
    s = RefSampler.from_config(cfg)
    assert (s.mode, s.method, s.num_refs, s.stride) == ("offline", "adaptive_stride", 14, 1)
    with pytest.raises(ValueError):
        RefSampler("offline", "bogus")


def _simulate(sampler, L):
    """Run the video inference engine's cache protocol over a video of L frames.

    Returns the largest cache size seen. Asserts every reference of every key frame is available
    (computed earlier as a key, supplied ahead, or the key itself)."""
    cache, peak = set(), 0
    for f in range(L):
        supplied = sampler.frames_to_supply(f, L)
        assert all(r > f for r in supplied) and supplied == sorted(set(supplied))
        cache |= {f} | set(supplied)
        peak = max(peak, len(cache))
        for r in sampler.refs(f, L):
            assert r in cache, (sampler, L, f, r, sorted(cache))
        cache = {c for c in cache if sampler.needed_after(c, f, L)}
    assert not cache  # nothing left after the last frame
    return peak


# (mode, method, num_refs, stride) of the cache-protocol tests
PROTOCOL_SAMPLERS = [
    ("offline", "adaptive_stride", 14, 1),
    ("offline", "adaptive_stride", 3, 1),
    ("offline", "adaptive_stride", 1, 1),
    ("offline", "fixed_window", 4, 2),
    ("offline", "fixed_window", 3, 1),
    ("offline", "fixed_window", 6, 3),
    ("online", "adaptive_stride", 4, 1),
    ("online", "adaptive_stride", 3, 5),
    ("offline", "adaptive_stride", 0, 1),
]


@pytest.mark.parametrize("mode,method,n,stride", PROTOCOL_SAMPLERS)
@pytest.mark.parametrize("L", [1, 2, 3, 13, 40])
def test_supply_and_cache_contract(mode, method, n, stride, L):
    s = RefSampler(mode, method, num_refs=n, stride=stride)
    assert _simulate(s, L) <= s.max_cached_frames()


@pytest.mark.parametrize("mode,method,n,stride", PROTOCOL_SAMPLERS)
@pytest.mark.parametrize("L", [1, 3, 40])
def test_plan_is_the_cache_protocol(mode, method, n, stride, L):
    """plan() tells the engine, once per key frame, what _simulate does by hand."""
    s = RefSampler(mode, method, num_refs=n, stride=stride)
    held, computed, peak = set(), [], 0
    for f in range(L):
        plan = s.plan(f, L, held=held, supplied=s.frames_to_supply(f, L))
        assert plan.frame_id == f and plan.references == s.refs(f, L) and not plan.missing
        assert not held & set(plan.compute) and plan.compute == sorted(plan.compute)
        computed += plan.compute
        held |= set(plan.compute)
        peak = max(peak, len(held))
        assert set(plan.drop) <= held and all(d <= f for d in plan.drop)
        held -= set(plan.drop)
    assert sorted(computed) == list(range(L))  # every frame computed exactly once
    assert not held and peak <= s.max_cached_frames()
    # a reference neither held nor supplied is reported, not silently skipped
    if L > 1 and n:
        late = s.plan(L - 1, L, held=(), supplied=())
        assert late.missing == sorted(set(s.refs(L - 1, L)) - {L - 1})
