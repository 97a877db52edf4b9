"""Map a key-frame dataset dict to the key frame plus its reference frames, ready for the model.

One augmentation is decided on the key frame (e.g. the ResizeShortestEdge size and whether to
flip) and the resulting transform is applied unchanged to every reference frame, so that all
frames of a sample stay geometrically consistent, as SELSA / mmtracking training requires.
"""

import copy
import logging

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from detectron2.utils.logger import log_first_n

from .frame_index import get_frame_index
from .image_io import read_frame
from .sampling import TRAIN_METHODS, TestReferenceSampler, sample_train_refs
from .transforms import build_video_augmentation

__all__ = ["VideoDatasetMapper"]

logger = logging.getLogger(__name__)


class VideoDatasetMapper:
    """A callable: key-frame dataset dict -> model input dict with ``"ref_frames"``.

    Output (Detectron2's per-image format plus video fields)::

        {"image": uint8 Tensor[3, H, W] (image_format), "height", "width" (original size),
         "file_name", "image_id", "video_id", "frame_id", "video_length", ...,
         "instances": Instances(gt_boxes, gt_classes)      # training (or keep_test_annotations)
         "ref_frames": [dict of the same form, each with its own "frame_id"]}

    Training: ``ref_frames`` holds exactly ``num_refs`` frames drawn by
    :func:`~selsa_d2.data.sampling.sample_train_refs` (a one-frame video repeats the key frame);
    each reference also carries its transformed ``instances`` (unused by the model, but they make
    the shared augmentation checkable). Test: ``ref_frames`` holds only the frames that
    :meth:`TestReferenceSampler.frames_to_supply` names (future references the video inference
    engine has not seen yet), possibly none; annotations are dropped as Detectron2 does.

    Reference frames are looked up in the dataset's frame index
    (:func:`~selsa_d2.data.frame_index.get_frame_index` of ``dataset_dict["dataset_name"]``).
    All frames of a sample must have the same original size.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: list[T.Augmentation | T.Transform],
        image_format: str,
        train_num_refs: int = 2,
        train_frame_range: int = 9,
        train_sampler: str = "bilateral_uniform",
        test_ref_sampler: TestReferenceSampler | None = None,
        keep_test_annotations: bool = False,
    ):
        """
        Args:
            is_train: training (random references, annotations kept) or inference.
            augmentations: applied to the key frame; the transform they produce is reused for
                the reference frames. Only geometric transforms that do not depend on image
                content are meaningful here (resize, flip).
            image_format: see :func:`detectron2.data.detection_utils.read_image`.
            train_num_refs, train_frame_range, train_sampler: see :func:`sample_train_refs`.
            test_ref_sampler: decides the references supplied at test time; default
                ``TestReferenceSampler()`` (offline adaptive stride, 14 references).
            keep_test_annotations: at test time, also return the key frame's ``instances``.
        """
        if train_sampler not in TRAIN_METHODS:
            raise ValueError(
                f"Unknown training reference sampler {train_sampler!r}; expected one of {TRAIN_METHODS}"
            )
        if train_num_refs < 0 or train_frame_range < 1:
            raise ValueError(
                f"Need train_num_refs >= 0 and train_frame_range >= 1, got {train_num_refs} and {train_frame_range}"
            )
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.train_num_refs = train_num_refs
        self.train_frame_range = train_frame_range
        self.train_sampler = train_sampler
        self.test_ref_sampler = (
            test_ref_sampler if test_ref_sampler is not None else TestReferenceSampler()
        )
        self.keep_test_annotations = keep_test_annotations
        mode = "training" if is_train else "inference"
        refs = (
            f"{train_sampler}(num_refs={train_num_refs}, frame_range={train_frame_range})"
            if is_train
            else repr(self.test_ref_sampler)
        )
        logger.info(
            f"[VideoDatasetMapper] Augmentations used in {mode}: {augmentations}; references: {refs}"
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        if cfg.INPUT.CROP.ENABLED and is_train:
            # A random crop is decided from the key frame's boxes; it is not meaningful to share
            # it with the references, and SELSA does not use it.
            raise ValueError(
                "INPUT.CROP is not supported by VideoDatasetMapper; set INPUT.CROP.ENABLED False"
            )
        if cfg.MODEL.MASK_ON or cfg.MODEL.KEYPOINT_ON or cfg.MODEL.LOAD_PROPOSALS:
            raise ValueError(
                "VideoDatasetMapper supports boxes only (MODEL.MASK_ON/KEYPOINT_ON/LOAD_PROPOSALS off)"
            )
        v = cfg.INPUT.VIDEO
        return {
            "is_train": is_train,
            "augmentations": build_video_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "train_num_refs": v.TRAIN_NUM_REFS,
            "train_frame_range": v.TRAIN_FRAME_RANGE,
            "train_sampler": v.TRAIN_SAMPLER,
            "test_ref_sampler": TestReferenceSampler.from_config(cfg),
        }

    # ------------------------------------------------------------------ helpers
    def _read(self, frame: dict) -> np.ndarray:
        """HWC uint8 image of ``frame`` in ``self.image_format``; clear errors naming the file."""
        file_name = frame["file_name"]
        try:
            image = read_frame(file_name, format=self.image_format)  # 16-bit frames scaled
        except FileNotFoundError as e:
            raise FileNotFoundError(f"Frame file not found: {file_name} ({_where(frame)})") from e
        except Exception as e:  # PIL.UnidentifiedImageError, truncated files, ...
            raise ValueError(f"Cannot read frame file {file_name} ({_where(frame)}): {e}") from e
        try:
            utils.check_image_size(frame, image)
        except utils.SizeMismatchError as e:
            raise ValueError(f"Frame file {file_name} ({_where(frame)}): {e}") from e
        return image

    def _ref_ids(self, d: dict) -> list[int]:
        frame_id = int(d.get("frame_id", 0))
        length = int(d.get("video_length", 1))
        if self.is_train:
            return sample_train_refs(
                frame_id, length, self.train_num_refs, self.train_frame_range, self.train_sampler
            )
        return self.test_ref_sampler.frames_to_supply(frame_id, length)

    def _ref_frame(self, d: dict, ref_id: int) -> dict:
        if ref_id == d.get("frame_id", 0):
            return d
        name = d.get("dataset_name")
        if name is None:
            raise ValueError(
                f"Dataset dict of {d['file_name']} has no 'dataset_name', so its reference frames "
                "cannot be looked up; register the dataset with selsa_d2.data.register_vid_dataset"
            )
        return get_frame_index(name).frame(d["video_id"], ref_id)

    def _to_output(
        self, frame: dict, image: np.ndarray, transforms: T.TransformList, keep_annos: bool
    ) -> dict:
        out = copy.deepcopy(frame)
        out.pop("ref_frames", None)
        image = transforms.apply_image(image)
        image_shape = image.shape[:2]  # h, w
        out["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        annos = out.pop("annotations", None)
        if keep_annos and annos is not None:
            annos = [
                utils.transform_instance_annotations(obj, transforms, image_shape)
                for obj in annos
                if obj.get("iscrowd", 0) == 0 and _valid_box(obj, frame)
            ]
            instances = utils.annotations_to_instances(annos, image_shape)
            out["instances"] = utils.filter_empty_instances(instances)
        return out

    # ------------------------------------------------------------------ main
    def __call__(self, dataset_dict: dict) -> dict:
        """
        Args:
            dataset_dict: a key-frame dict in the selsa-d2 dataset format (not modified).

        Returns:
            the key frame's model input dict with ``"ref_frames"`` (see the class docstring).
        """
        d = dataset_dict
        key_image = self._read(d)
        aug_input = T.AugInput(key_image)
        transforms = self.augmentations(aug_input)  # decided once, on the key frame
        keep_annos = self.is_train or self.keep_test_annotations
        # apply_image on the original image again (instead of taking aug_input.image) keeps the
        # key and references on exactly the same code path.
        out = self._to_output(d, key_image, transforms, keep_annos)

        images: dict[int, np.ndarray] = {int(d.get("frame_id", 0)): key_image}
        ref_outputs = []
        for ref_id in self._ref_ids(d):
            ref = self._ref_frame(d, ref_id)
            if ref_id not in images:
                images[ref_id] = self._read(ref)
            image = images[ref_id]
            if image.shape[:2] != key_image.shape[:2]:
                raise ValueError(
                    f"Reference frame {ref['file_name']} has size {image.shape[1]}x{image.shape[0]} (WxH) but key "
                    f"frame {d['file_name']} has {key_image.shape[1]}x{key_image.shape[0]}; all frames of a video "
                    "must have the same size"
                )
            ref_outputs.append(self._to_output(ref, image, transforms, self.is_train))
        out["ref_frames"] = ref_outputs
        return out


def _valid_box(obj: dict, frame: dict) -> bool:
    """False (logged once per box) for an empty or inverted box. The readers already skip them;
    this guards hand-made dicts, where Detectron2's box transform would silently turn an inverted
    box into a valid one (it takes the min/max of the corners)."""
    x1, y1, x2, y2 = BoxMode.convert(list(obj["bbox"]), obj["bbox_mode"], BoxMode.XYXY_ABS)
    if x2 > x1 and y2 > y1:
        return True
    log_first_n(
        logging.WARNING,
        f"{frame.get('file_name')} ({_where(frame)}): skipping object with an empty or inverted box "
        f"{list(obj['bbox'])} ({BoxMode(obj['bbox_mode']).name})",
        n=1,
        key="message",
    )
    return False


def _where(frame: dict) -> str:
    return (
        f"video {frame.get('video_name', frame.get('video_id', '?'))}, frame {frame.get('frame_id', '?')}"
        f"{', dataset ' + frame['dataset_name'] if 'dataset_name' in frame else ''}"
    )
