"""Train and test data loaders for video detection, built on Detectron2's loaders.

* Training: Detectron2's ``build_detection_train_loader`` over the key frames of
  ``DATASETS.TRAIN`` with :class:`VideoDatasetMapper`. Without ``DATASETS.TRAIN_SAMPLING_WEIGHTS``
  the datasets are simply concatenated (every key frame equally likely, as mmtracking does for
  ImageNet VID + DET). With weights, each key frame gets the repeat factor
  ``w_d / sum(w) * N / n_d`` (``n_d`` key frames in dataset ``d``, ``N`` in all) and Detectron2's
  ``RepeatFactorTrainingSampler`` draws them: an "epoch" keeps about ``N`` samples, of which
  dataset ``d`` contributes ``w_d / sum(w)`` in expectation (fractional factors use Detectron2's
  stochastic rounding). That sampler shards by ``comm`` rank/world size and uses ``cfg.SEED``
  (a shared random seed when negative), exactly like Detectron2's own samplers.
* Test: one frame per item, batch size 1, frames of a video in order, one video after another;
  :class:`VideoInferenceSampler` gives each process whole videos, so the stateful per-video
  inference engine works with multi-process evaluation.

The datasets they read must be registered: the config's own COCO-VID datasets
(``DATASETS.COCO_VID``) are, when the config is set up (:func:`selsa_d2.engine.setup_selsa_cfg`, or
:func:`~selsa_d2.data.datasets.register_datasets_from_config`).
"""

import itertools
import logging
from collections.abc import Sequence

import torch
from detectron2.config import configurable
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data.build import get_detection_dataset_dicts
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.utils import comm
from torch.utils.data import Sampler

from .video_mapper import VideoDatasetMapper

__all__ = [
    "build_video_train_loader",
    "build_video_test_loader",
    "get_video_train_dataset_and_sampler",
    "dataset_repeat_factors",
    "VideoInferenceSampler",
]

logger = logging.getLogger(__name__)


def dataset_repeat_factors(sizes: Sequence[int], weights: Sequence[float]) -> torch.Tensor:
    """Per-sample repeat factors so that dataset ``d`` (``sizes[d]`` samples, concatenated in
    order) is drawn with probability ``weights[d] / sum(weights)``; the factors sum to
    ``sum(sizes)``, keeping the epoch length of plain concatenation.

    Returns:
        float32 Tensor[sum(sizes)].
    """
    if len(sizes) != len(weights):
        raise ValueError(f"{len(weights)} sampling weights given for {len(sizes)} datasets")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"Sampling weights must be >= 0 with a positive sum, got {list(weights)}")
    total, wsum = sum(sizes), float(sum(weights))
    factors = [torch.full((n,), w / wsum * total / n) for n, w in zip(sizes, weights) if n > 0]
    return torch.cat(factors).float()


def get_video_train_dataset_and_sampler(cfg):
    """The training key frames of ``cfg.DATASETS.TRAIN`` (concatenated in order) and the sampler
    that implements ``cfg.DATASETS.TRAIN_SAMPLING_WEIGHTS`` (None: Detectron2's default from
    ``DATALOADER.SAMPLER_TRAIN``).

    Returns:
        (list[dict], Sampler or None)
    """
    names = list(cfg.DATASETS.TRAIN)
    weights = list(cfg.DATASETS.TRAIN_SAMPLING_WEIGHTS)
    filter_empty = cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    if not weights:
        return get_detection_dataset_dicts(names, filter_empty=filter_empty), None
    if len(weights) != len(names):
        raise ValueError(
            f"DATASETS.TRAIN_SAMPLING_WEIGHTS has {len(weights)} entries but DATASETS.TRAIN has {len(names)} "
            f"({names}); give one weight per training dataset or leave it empty"
        )
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATASETS.TRAIN_SAMPLING_WEIGHTS cannot be combined with DATALOADER.SAMPLER_TRAIN="
            f"{cfg.DATALOADER.SAMPLER_TRAIN!r}; use 'TrainingSampler' or leave the weights empty"
        )
    # Filtered per dataset, so the factors match the samples that remain.
    per_dataset = [get_detection_dataset_dicts([n], filter_empty=filter_empty) for n in names]
    sizes = [len(x) for x in per_dataset]
    factors = dataset_repeat_factors(sizes, weights)
    wsum = float(sum(weights))
    logger.info(
        "Training datasets sampled with weights: "
        + ", ".join(
            f"{n} ({s} key frames): {w / wsum:.1%}" for n, s, w in zip(names, sizes, weights)
        )
    )
    seed = cfg.SEED if cfg.SEED >= 0 else None
    sampler = RepeatFactorTrainingSampler(factors, seed=seed)
    return list(itertools.chain.from_iterable(per_dataset)), sampler


def build_video_train_loader(cfg, mapper=None):
    """Detectron2's training loader (infinite, batches of ``SOLVER.IMS_PER_BATCH // world_size``
    mapped key frames with ``"ref_frames"``) over ``DATASETS.TRAIN`` with the video mapper."""
    dataset, sampler = get_video_train_dataset_and_sampler(cfg)
    if mapper is None:
        mapper = VideoDatasetMapper(cfg, is_train=True)
    return build_detection_train_loader(cfg, mapper=mapper, dataset=dataset, sampler=sampler)


def _test_loader_from_config(cfg, dataset_name: str, mapper=None):
    return {
        "dataset_name": dataset_name,
        "mapper": VideoDatasetMapper(cfg, is_train=False) if mapper is None else mapper,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
    }


@configurable(from_config=_test_loader_from_config)
def build_video_test_loader(dataset_name: str, *, mapper, num_workers: int = 0):
    """Test loader over every frame of ``dataset_name``: batch size 1, sorted by
    ``(video_id, frame_id)``, each process getting whole videos (:class:`VideoInferenceSampler`).

    Called as ``build_video_test_loader(cfg, dataset_name, mapper=None)`` (``DATALOADER.NUM_WORKERS``
    workers, the config's ``VideoDatasetMapper``) or with explicit arguments (LazyConfig)."""
    dataset = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    dataset = sorted(dataset, key=lambda d: (d["video_id"], d["frame_id"]))
    sampler = VideoInferenceSampler([d["video_id"] for d in dataset])
    return build_detection_test_loader(
        dataset, mapper=mapper, sampler=sampler, batch_size=1, num_workers=num_workers
    )


class VideoInferenceSampler(Sampler):
    """Like Detectron2's ``InferenceSampler`` (every item exactly once over all processes), but
    splits by whole videos: a video is never shared between processes and its frames come in
    dataset order.

    Videos are assigned longest first to the least loaded process (ties: lower rank), which
    balances frame counts and leaves no process empty while there are at least as many videos as
    processes; each process then goes through its videos in dataset order.
    """

    def __init__(
        self, video_ids: Sequence[int], rank: int | None = None, world_size: int | None = None
    ):
        """
        Args:
            video_ids: the video id of every dataset item, in dataset order; the items of one
                video must be contiguous (sort the dataset by ``(video_id, frame_id)``).
            rank, world_size: default to ``detectron2.utils.comm``'s.
        """
        self._rank = comm.get_rank() if rank is None else rank
        self._world_size = comm.get_world_size() if world_size is None else world_size
        self._local_indices = self._get_local_indices(video_ids, self._world_size, self._rank)

    @staticmethod
    def _get_local_indices(video_ids: Sequence[int], world_size: int, rank: int) -> list[int]:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        runs = []  # (start, end) of each video's items
        seen = set()
        for i, vid in enumerate(video_ids):
            if i > 0 and vid == video_ids[i - 1]:
                runs[-1][1] = i + 1
                continue
            if vid in seen:
                raise ValueError(
                    f"Items of video {vid} are not contiguous in the dataset; sort it by (video_id, frame_id)"
                )
            seen.add(vid)
            runs.append([i, i + 1])
        loads = [0] * world_size
        owner = [0] * len(runs)
        for v in sorted(range(len(runs)), key=lambda v: (runs[v][0] - runs[v][1], v)):
            r = min(range(world_size), key=lambda r: (loads[r], r))
            owner[v] = r
            loads[r] += runs[v][1] - runs[v][0]
        return [i for v, (s, e) in enumerate(runs) if owner[v] == rank for i in range(s, e)]

    def __iter__(self):
        yield from self._local_indices

    def __len__(self):
        return len(self._local_indices)
