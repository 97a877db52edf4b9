"""What the inference benchmark times: a variant (an engine or the baseline) and the frame
computations shared between variants."""

import numpy as np
import torch

from . import measure


class SharedFrameComputation:
    """The SELSA model as an engine sees it, with :meth:`compute_frame_features` going through a
    shared ``store`` (everything else is the model's).

    ``reuse=False`` (``selsa_cached``): always computes, and records each frame's features and
    the seconds they took. ``reuse=True`` (sweep): takes a stored frame when there is one and adds
    its recorded seconds to :attr:`charged_seconds`.
    """

    def __init__(self, model, store: dict, device: str, reuse: bool):
        self.model, self.store, self.device, self.reuse = model, store, device, reuse
        self.reset_stats()

    def reset_stats(self):
        self.charged_seconds = 0.0
        self.compute_seconds: list[float] = []  # per frame feature computation, own and charged
        self.own_compute_seconds = 0.0
        self.proposal_counts: list[int] = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def compute_frame_features(self, frame):
        key = int(frame["frame_id"])
        if self.reuse and key in self.store:
            feats, seconds = self.store[key]
            self.charged_seconds += seconds
            self.compute_seconds.append(seconds)
            return feats
        with measure.Stopwatch(self.device) as sw:
            feats = self.model.compute_frame_features(frame)
        self.store.setdefault(key, (feats, sw.seconds))
        self.compute_seconds.append(sw.seconds)
        self.own_compute_seconds += sw.seconds
        self.proposal_counts.append(len(feats))
        return feats


class Variant:
    """One measured configuration: how to run frame ``t`` and what it accumulated."""

    def __init__(
        self,
        name: str,
        refs: int,
        run,
        engine=None,
        sampler=None,
        shared=None,
        max_frames: int | None = None,
    ):
        self.name, self.refs, self.run, self.engine, self.sampler = name, refs, run, engine, sampler
        self.shared = shared  # SharedFrameComputation of a cached engine
        self.max_frames = max_frames
        self.pass_ms: list[float] = []
        self.pass_ms_robust: list[float] = []
        self.peak_call_bytes = 0
        self.peak_cache_bytes = 0
        self._seconds = self._frames = 0
        # the last timing pass's engine statistics (a later memory pass leaves them alone)
        self.frames_computed = self.peak_cache_frames = None
        self.proposal_counts: list[int] = []

    def start_pass(self):
        self._seconds, self._frames = 0.0, 0
        self._call_seconds: list[float] = []
        if self.engine is not None:
            self.engine.reset()
            self.engine.reset_stats()
        if self.shared is not None:
            self.shared.reset_stats()

    def end_pass(self, length: int):
        if self.engine is not None:
            self.frames_computed, self.peak_cache_frames = (
                self.engine.frames_computed,
                self.engine.peak_cache_size,
            )
        if self.shared is not None:
            self.proposal_counts = list(self.shared.proposal_counts)
        charged = self.shared.charged_seconds if self.shared is not None else 0.0
        frames = max(1, self._frames)
        total = self._seconds + charged
        if self.max_frames is not None and self._frames < length and self._frames > 1:
            # recomputing variants: frame 0 (references' first computation) + steady key frames
            calls = self._call_seconds
            total = (calls[0] + (length - 1) * float(np.mean(calls[1:]))) * self._frames / length
        self.pass_ms.append(1000.0 * total / frames)
        # Drift-resistant estimate: a cached engine computes many frames at once (the references
        # supplied with frame 0), so a change in machine load during that burst weighs on its
        # total but not on the baseline's. Here every frame computation (or baseline call) costs
        # the median over the pass; the rest (attention, heads, bookkeeping) is taken as measured.
        if self.shared is not None and self.shared.compute_seconds:
            comp = self.shared.compute_seconds
            rest = self._seconds - self.shared.own_compute_seconds
            robust = measure.median(comp) * len(comp) + rest
        elif self.engine is None:
            robust = measure.median(self._call_seconds) * self._frames
        else:
            robust = total
        self.pass_ms_robust.append(1000.0 * robust / frames)

    def applies(self, t: int) -> bool:
        return self.max_frames is None or t < self.max_frames


def timed_call(variant: Variant, inp: dict, args, memory: bool):
    with (
        measure.PeakMemory(args.device, enabled=memory) as pm,
        measure.Stopwatch(args.device) as sw,
    ):
        with torch.no_grad(), measure.autocast(args.device, args.amp):
            variant.run([inp])
    variant._seconds += sw.seconds
    variant._call_seconds.append(sw.seconds)
    variant._frames += 1
    if memory:
        variant.peak_call_bytes = max(variant.peak_call_bytes, pm.delta)
    if variant.engine is not None:
        variant.peak_cache_bytes = max(
            variant.peak_cache_bytes, measure.engine_cache_bytes(variant.engine)
        )
