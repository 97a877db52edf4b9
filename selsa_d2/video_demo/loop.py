"""The demo's loop: offline (the whole video, then drawing) or online (frame by frame)."""

import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import tqdm
from detectron2.utils.logger import setup_logger

from ..checkpoint.loading import WeightsError
from ..cpu_allocator import retain_freed_cpu_memory_from_config
from ..data.sampling import TestReferenceSampler
from ..file_io import OutputError
from ..predictor import VideoPredictor
from ..run_guard import RunError
from ..video_io import FrameSource, FrameSourceError, VideoFileFrames
from ..visualization import build_metadata, draw, make_record
from .arguments import DemoInputError, get_parser, setup_cfg
from .outputs import VideoOutputs, check_outputs, open_source, output_paths

logger = logging.getLogger("selsa_d2.demo")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (SIGINT): the outputs done so far are finalised."""


class SigtermAtFrameBoundaries:
    """Within this context SIGTERM is noted, and :meth:`check` raises :class:`Terminated` at the
    next frame boundary, so the ``finally`` blocks finalise the outputs as for Ctrl-C.

    Raising from the signal handler itself could land anywhere, e.g. inside matplotlib's
    ``Visualizer`` setting up a figure, whose clean-up then fails with an unrelated error (exit
    status 1 instead of 143); a frame boundary is a point the demo's own code controls.
    """

    def __init__(self):
        self.received = False
        self._installed = False
        self._previous = None

    def __enter__(self):
        def on_sigterm(signum, frame):
            self.received = True

        try:
            self._previous = signal.signal(signal.SIGTERM, on_sigterm)
            self._installed = True
        except ValueError:  # not the main thread: signals cannot be handled here
            pass
        return self

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
        return False

    def check(self) -> None:
        """Raise :class:`Terminated` if SIGTERM arrived."""
        if self.received:
            raise Terminated()


def _online(predictor, source: FrameSource) -> Iterator[tuple[int, np.ndarray, object]]:
    """(index, frame, instances) one frame at a time; frames pulled by the predictor but not yet
    answered wait in a queue, so this holds whatever look-ahead the predictor uses."""
    pending: deque = deque()

    def frames():
        for frame in source:
            pending.append(frame)
            yield frame

    for index, instances in enumerate(predictor.stream(frames())):
        yield index, pending.popleft(), instances


def _predict_offline(predictor, source: FrameSource, sigterm: SigtermAtFrameBoundaries) -> list:
    """Detections of every frame, predicted over the whole video (references may lie anywhere);
    stops after the frame during which SIGTERM arrived."""
    # predict_video returns only at the end; the model runs once per frame, so a forward hook
    # shows the inference progress.
    with tqdm.tqdm(
        total=len(source), unit="frame", desc="SELSA offline inference", dynamic_ncols=True
    ) as bar:

        def count_frame(module, inputs, outputs):
            bar.update(1)  # returns None: a forward hook's return value would replace the outputs
            sigterm.check()

        hook = predictor.model.register_forward_hook(count_frame)
        try:
            results = predictor.predict_video(source, mode="offline")
        finally:
            hook.remove()
    if len(results) != len(source):
        raise RuntimeError(
            f"predictor returned {len(results)} results for {len(source)} frames of {source.path}"
        )
    return results


def run(args) -> tuple[str, str]:
    """Detect on every frame of the input, draw, write the video and the JSON; returns their
    paths. Bad input raises before any inference; the outputs of the frames done are finalised
    on any exit (also SIGINT / SIGTERM)."""
    cfg = setup_cfg(args)
    retain_freed_cpu_memory_from_config(cfg)
    mode = cfg.INPUT.VIDEO.TEST_MODE
    sampler = TestReferenceSampler.from_config(cfg)
    source = open_source(args, cache_size=sampler.max_cached_frames() + 2)
    video_path, json_path = output_paths(args, source.stem)
    check_outputs(video_path, json_path, source, cfg, args.config_file)
    metadata = build_metadata(cfg)
    predictor = VideoPredictor(cfg, mode=mode)
    if mode == "offline":
        total, desc = len(source), "drawing"
    else:
        total = source.estimated_length() if isinstance(source, VideoFileFrames) else len(source)
        desc = "SELSA online"
    logger.info(
        f"{source.path}: {mode} mode, {total} frames of {source.size[1]}x{source.size[0]} at {source.fps:g} fps"
    )

    outputs = VideoOutputs(video_path, json_path, source.fps, source.size)
    start = time.perf_counter()
    with SigtermAtFrameBoundaries() as sigterm:
        try:
            if mode == "offline":
                results = _predict_offline(predictor, source, sigterm)
                items = (
                    (index, source[index], instances) for index, instances in enumerate(results)
                )
            else:
                items = _online(predictor, source)
            with tqdm.tqdm(total=total, unit="frame", desc=desc, dynamic_ncols=True) as bar:
                for index, frame, instances in items:
                    instances = instances.to("cpu")
                    drawn = draw(frame, instances, metadata)
                    sigterm.check()  # a frame whose drawing SIGTERM interrupted is not written
                    outputs.add(drawn, make_record(index, instances, source, metadata))
                    bar.update(1)
        finally:
            outputs.close()
            source.close()
            if outputs.records:
                logger.info(
                    f"wrote {len(outputs.records)} frames to {video_path} and {json_path} "
                    f"in {time.perf_counter() - start:.1f}s"
                )
            else:
                logger.info(f"no frame done; wrote nothing to {video_path} or {json_path}")
    return video_path, json_path


def main(argv: Sequence[str] | None = None) -> int:
    """``demo/demo.py``: user errors exit with ``demo.py: error: <cause>``; SIGTERM returns 143."""
    args = get_parser().parse_args(argv)
    setup_logger(name="fvcore")
    setup_logger(name="selsa_d2")
    logger.info("Arguments: " + str(args))
    try:
        run(args)
    except (DemoInputError, FrameSourceError, WeightsError, OutputError, RunError) as e:
        raise SystemExit(f"demo.py: error: {e}") from e
    except Terminated:
        print(
            "demo.py: stopped by SIGTERM (the outputs of the frames done are finalised)",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM
    return 0
