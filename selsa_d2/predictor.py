"""``VideoPredictor``: Detectron2's ``DefaultPredictor`` for videos (SELSA or single-frame models)."""

import itertools
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Instances

from .checkpoint.loading import load_inference_weights
from .data.sampling import TEST_MODES, TestReferenceSampler
from .data.transforms import build_video_augmentation
from .postprocessing.video import SeqNMSSettings, check_seq_nms_mode, seq_nms_instances

__all__ = ["VideoPredictor", "check_frame"]

logger = logging.getLogger(__name__)

# Video length given to the engine for a stream of unknown length (online references and cache
# eviction do not depend on it).
_UNKNOWN_LENGTH = sys.maxsize


def check_frame(frame, frame_id: int) -> None:
    """Raise ``ValueError`` naming ``frame_id`` unless ``frame`` is a non-empty BGR uint8 [H, W, 3] array."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"Frame {frame_id}: expected a BGR image array [H, W, 3] of uint8, got "
            f"{type(frame).__name__} {getattr(frame, 'shape', '')}"
        )
    if frame.dtype != np.uint8:
        hint = (
            " (float in [0, 1]: (frame * 255).round().astype(np.uint8))"
            if frame.dtype.kind == "f"
            else ""
        )
        raise ValueError(
            f"Frame {frame_id}: expected a BGR image array [H, W, 3] of uint8, got dtype {frame.dtype}; "
            f"convert it explicitly{hint}"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(
            f"Frame {frame_id}: expected a BGR image array [H, W, 3] of uint8, got an empty {frame.shape}"
        )


class VideoPredictor:
    """Build the model of ``cfg``, load ``MODEL.WEIGHTS`` and run it over videos.

    Frames are ``np.ndarray`` [H, W, 3] **uint8** in BGR order (as ``cv2.imread`` and
    ``cv2.VideoCapture`` give them), resized like ``DefaultPredictor``
    (``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``) and converted to ``INPUT.FORMAT``. Any other dtype
    (float in [0, 1] or [0, 255], uint16, ...), channel count or an empty frame is a ``ValueError``
    naming the frame: the value range of such frames is ambiguous, and guessing it gives plausible
    but wrong detections. Convert explicitly, e.g. ``(frame * 255).round().astype(np.uint8)`` for
    float frames in [0, 1]. Results are ``Instances`` at the original frame size, on the CPU.

    ``MODEL.WEIGHTS`` must initialise every parameter of the model (see
    :func:`selsa_d2.checkpoint.loading.load_inference_weights`; ``TEST.ALLOW_MISSING_WEIGHTS``).

    * :meth:`predict_video`: a whole video, ``mode="offline"`` (references over the whole
      video, ``INPUT.VIDEO.TEST_SAMPLER``: the accuracy setting) or ``"online"`` (causal).
      Default: ``INPUT.VIDEO.TEST_MODE``.
    * :meth:`stream`: a live source of unknown length; always causal (online): key frame ``t``
      uses the frames ``t - k * TEST_FRAME_STRIDE``, ``k = 1..TEST_NUM_REFS``, already seen.
      One frame in, its detections out.

    A single-frame model (e.g. ``GeneralizedRCNN``) is run on every frame independently.
    """

    def __init__(self, cfg, mode: str | None = None):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if len(cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        load_inference_weights(
            self.model,
            cfg.MODEL.WEIGHTS,
            allow_missing=cfg.TEST.ALLOW_MISSING_WEIGHTS,
            allow_unused=cfg.TEST.ALLOW_UNUSED_WEIGHTS,
        )
        # the test-time resize of the data pipeline (INPUT.RESIZE_STYLE included)
        self.aug = T.AugmentationList(build_video_augmentation(self.cfg, is_train=False))
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(
                f"VideoPredictor supports INPUT.FORMAT RGB or BGR, got {self.input_format!r}"
            )
        self.mode = self._check_mode(mode or cfg.INPUT.VIDEO.TEST_MODE)
        self._videos = itertools.count()
        # TEST.VID.SEQ_NMS: applied by predict_video (offline) over the model's candidates
        self.seq_nms = SeqNMSSettings.from_config(self.cfg)
        if self.seq_nms is not None and self.engine is None:
            raise ValueError(
                "TEST.VID.SEQ_NMS.ENABLED needs a SelsaRCNN model (it returns the pre-NMS "
                f"candidates Seq-NMS works on); got {type(self.model).__name__}"
            )

    @property
    def engine(self):
        """The model's :class:`VideoInferenceEngine`, or None for a single-frame model."""
        return getattr(self.model, "video_engine", None)

    @staticmethod
    def _check_mode(mode: str) -> str:
        if mode not in TEST_MODES:
            raise ValueError(f"Unknown video test mode {mode!r}; expected one of {TEST_MODES}")
        return mode

    def reference_sampler(self, mode: str) -> TestReferenceSampler:
        v = self.cfg.INPUT.VIDEO
        if self._check_mode(mode) == "online":
            return TestReferenceSampler(
                "online", num_refs=v.TEST_NUM_REFS, stride=v.TEST_FRAME_STRIDE
            )
        return TestReferenceSampler("offline", v.TEST_SAMPLER, v.TEST_NUM_REFS, v.TEST_FRAME_STRIDE)

    def prepare(self, frame: np.ndarray, video_id, frame_id: int, video_length: int) -> dict:
        """One BGR frame -> the model input dict (test mapper format, no ``ref_frames``)."""
        check_frame(frame, frame_id)
        if self.input_format == "RGB":
            frame = np.ascontiguousarray(frame[:, :, ::-1])
        height, width = frame.shape[:2]
        aug_input = T.AugInput(frame)
        self.aug(aug_input)
        image = aug_input.image
        image = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return {
            "image": image,
            "height": height,
            "width": width,
            "video_id": video_id,
            "frame_id": frame_id,
            "video_length": video_length,
        }

    def _run(self, inp: dict, key: str = "instances") -> Instances:
        with torch.no_grad():
            return self.model([inp])[0][key].to("cpu")

    def predict_video(
        self, frames: Sequence[np.ndarray], mode: str | None = None
    ) -> list[Instances]:
        """Detections of every frame of one video (BGR frames in order). With
        ``TEST.VID.SEQ_NMS.ENABLED``: after Seq-NMS over the video (offline mode only)."""
        if self.seq_nms is not None:
            check_seq_nms_mode(mode or self.mode)
        if not isinstance(frames, Sequence):
            frames = list(frames)
        length = len(frames)
        if length == 0:
            return []
        video_id = ("VideoPredictor", next(self._videos))
        if self.engine is None:
            return [self._run(self.prepare(f, video_id, i, length)) for i, f in enumerate(frames)]
        sampler = self.reference_sampler(mode or self.mode)
        self.engine.configure(ref_sampler=sampler)
        prepared: dict[int, dict] = {}  # frames converted so far and still to be used

        def get(i: int) -> dict:
            if i not in prepared:
                prepared[i] = self.prepare(frames[i], video_id, i, length)
            return prepared[i]

        results = []
        for t in range(length):
            inp = dict(get(t))
            inp["ref_frames"] = [get(r) for r in sampler.frames_to_supply(t, length)]
            results.append(self._run(inp, "instances" if self.seq_nms is None else "candidates"))
            prepared.pop(t)
        self.engine.reset()
        if self.seq_nms is not None:
            results = seq_nms_instances(results, self.seq_nms)
        return results

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[Instances]:
        """Causal (online) detection over a stream: yields each frame's detections in turn."""
        if self.seq_nms is not None:
            check_seq_nms_mode("online")  # raises now: Seq-NMS needs the whole video
        return self._stream(frames)

    def _stream(self, frames: Iterable[np.ndarray]) -> Iterator[Instances]:
        video_id = ("VideoPredictor", next(self._videos))
        if self.engine is not None:
            self.engine.configure(ref_sampler=self.reference_sampler("online"))
        for t, frame in enumerate(frames):
            yield self._run(self.prepare(frame, video_id, t, _UNKNOWN_LENGTH))

    def __call__(self, image: np.ndarray) -> dict:
        """One BGR image (a one-frame video), like ``DefaultPredictor``: ``{"instances": ...}``."""
        return {"instances": self.predict_video([image])[0]}
