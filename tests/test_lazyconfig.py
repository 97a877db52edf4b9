"""LazyConfig twins of the YAML configs (configs/lazy/): the same model (state-dict keys and
shapes, hyperparameters, detections on a clip and training losses with the same weights), the
same data (key frames and references for a fixed seed), optimizer and schedule; a backbone
swapped by one field; tools/lazyconfig_train_net.py end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage
from omegaconf import DictConfig, ListConfig, OmegaConf
from tiny_model import (
    randomize_frozen_bn,
    results_close,
    synthetic_video,
    torch_threads,
    training_inputs,
    video_inputs,
)

from selsa_d2 import synthetic
from selsa_d2.config import add_selsa_config
from selsa_d2.data import build_video_test_loader, build_video_train_loader
from selsa_d2.data.datasets import register_vid_dataset, unregister_vid_dataset
from selsa_d2.solver import build_selsa_optimizer

REPO = Path(__file__).resolve().parents[1]
# (LazyConfig, its YAML twin)
PAIRS = {
    "tiny_dc5": ("configs/lazy/synthetic/selsa_tiny.py", "configs/synthetic/selsa_tiny.yaml"),
    "tiny_fpn": (
        "configs/lazy/synthetic/selsa_fpn_tiny.py",
        "configs/synthetic/selsa_fpn_tiny.yaml",
    ),
    "R50_DC5": (
        "configs/lazy/selsa_R_50_DC5_7e_imagenetvid.py",
        "configs/selsa_R_50_DC5_7e_imagenetvid.yaml",
    ),
    "R50_FPN": (
        "configs/lazy/selsa_R_50_FPN_7e_imagenetvid.py",
        "configs/selsa_R_50_FPN_7e_imagenetvid.yaml",
    ),
}


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with torch_threads(1):
        yield


def _yaml(path, *opts):
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.merge_from_file(str(REPO / path))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    return cfg


def _lazy(path):
    cfg = LazyConfig.load(str(REPO / path))
    cfg.train.device = "cpu"
    return cfg


def _models(name):
    lazy_path, yaml_path = PAIRS[name]
    torch.manual_seed(0)
    from_yaml = build_model(_yaml(yaml_path))
    torch.manual_seed(1)
    from_lazy = instantiate(_lazy(lazy_path).model)
    return from_lazy, from_yaml


_SIMPLE = (bool, int, float, str, tuple, list, dict, type(None))


def _plain(value):
    """Tuples as lists (a LazyConfig's sequences arrive as lists, or stay ListConfigs)."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _hyperparameters(model: torch.nn.Module) -> dict:
    """Every module's plain attributes and those of its plain helper objects (matchers, box
    transforms, the reference sampler): what decides training and inference besides weights."""
    out = {}
    for name, module in model.named_modules():
        for key, value in vars(module).items():
            if key.startswith("_") or isinstance(value, torch.nn.Module | torch.Tensor):
                continue
            if key == "video_engine" or (  # per-video state; lists of submodules
                isinstance(value, list) and any(isinstance(v, torch.nn.Module) for v in value)
            ):
                continue
            if isinstance(value, _SIMPLE + (DictConfig, ListConfig)):
                out[f"{name}.{key}"] = _plain(value)
            elif hasattr(value, "__dict__"):
                out[f"{name}.{key}"] = (
                    type(value).__name__,
                    {k: repr(_plain(v)) for k, v in vars(value).items() if not k.startswith("_")},
                )
    return out


@pytest.mark.parametrize("name", list(PAIRS))
def test_lazy_model_is_the_yaml_model(name):
    lazy, yaml = _models(name)
    lazy_state, yaml_state = lazy.state_dict(), yaml.state_dict()
    assert list(lazy_state) == list(yaml_state)
    assert {k: v.shape for k, v in lazy_state.items()} == {
        k: v.shape for k, v in yaml_state.items()
    }
    assert _hyperparameters(lazy) == _hyperparameters(yaml)
    assert torch.equal(lazy.pixel_mean, yaml.pixel_mean)
    assert torch.equal(lazy.pixel_std, yaml.pixel_std)
    frozen = lambda m: [n for n, p in m.named_parameters() if not p.requires_grad]  # noqa: E731
    assert frozen(lazy) == frozen(yaml)
    assert type(lazy.backbone) is type(yaml.backbone)
    assert lazy.video_engine.ref_sampler.__dict__ == yaml.video_engine.ref_sampler.__dict__
    if name.startswith("tiny"):  # ZERO_INIT_AGGREGATOR_OUTPUT: both start with zero output fcs
        for model in (lazy, yaml):
            assert all(
                float(agg.fc.weight.abs().sum()) == 0
                for agg in model.roi_heads.box_head.aggregators
            )


@pytest.mark.parametrize("name", list(PAIRS))
def test_same_weights_same_detections_and_losses(name):
    lazy, yaml = _models(name)
    torch.manual_seed(2)
    for p in yaml.roi_heads.box_head.aggregators.parameters():  # non-zero aggregation
        torch.nn.init.normal_(p, std=0.02)
    randomize_frozen_bn(yaml, seed=3)
    lazy.load_state_dict(yaml.state_dict())
    # the random R-50's RPN keeps few proposals on small frames
    frames = synthetic_video(6, *((80, 112) if name.startswith("tiny") else (160, 224)), seed=1)
    fmt = yaml.input_format
    outputs = []
    for model in (lazy, yaml):
        model.eval()
        sampler = model.video_engine.ref_sampler
        with torch.no_grad():
            outputs.append([o["instances"] for o in model(video_inputs(frames, sampler, fmt=fmt))])
    assert sum(len(x) for x in outputs[1]) > 0
    for t, (a, b) in enumerate(zip(*outputs)):
        assert results_close(a, b, atol=0) is None, f"frame {t}: {results_close(a, b)}"
    losses = []
    for model in (lazy, yaml):
        model.train()
        torch.manual_seed(4)  # the samplers' draws
        with EventStorage(0):
            losses.append({k: float(v) for k, v in model(training_inputs(num_classes=4)).items()})
    assert losses[0] == losses[1]


def test_optimizer_and_schedule_are_the_yaml_ones():
    lazy_cfg = _lazy(PAIRS["R50_DC5"][0])
    yaml_cfg = _yaml(PAIRS["R50_DC5"][1])
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    lazy_cfg.optimizer.params.model = model
    lazy_opt = instantiate(lazy_cfg.optimizer)
    yaml_opt = build_selsa_optimizer(yaml_cfg, model)
    assert lazy_opt.defaults == {k: yaml_opt.defaults[k] for k in lazy_opt.defaults}
    strip = lambda groups: [{k: v for k, v in g.items() if k != "params"} for g in groups]  # noqa: E731
    assert strip(lazy_opt.param_groups) == strip(yaml_opt.param_groups)
    for opt in (lazy_opt, yaml_opt):  # both clip the global norm to 35
        for p in model.parameters():
            p.grad = torch.full_like(p, 100.0)
        opt.step()
    lazy_sched = instantiate(lazy_cfg.lr_multiplier)
    yaml_sched = build_lr_scheduler(yaml_cfg, yaml_opt)._multiplier
    max_iter = yaml_cfg.SOLVER.MAX_ITER
    assert lazy_cfg.train.max_iter == max_iter
    for it in (0, 1, 250, 499, 500, 27869, 27870, 69675, 97544):
        assert lazy_sched(it / max_iter) == pytest.approx(yaml_sched(it / max_iter), abs=1e-12)


# ---------------------------------------------------------------- data
@pytest.fixture(scope="module")
def synthetic_names(tmp_path_factory):
    root = tmp_path_factory.mktemp("lazy_data") / "synthetic_vid"
    synthetic.generate(root, num_train_videos=3, num_val_videos=2, frames=8, seed=5)
    names = {"train": "_lazy_synthetic_train", "val": "_lazy_synthetic_val"}
    for split, name in names.items():
        register_vid_dataset(
            name, raw_root=str(root), split=split, classes_file=str(root / "classes.txt")
        )
    yield names, root.parent
    for name in names.values():
        unregister_vid_dataset(name)


def _summary(batch):
    return [
        (
            d["file_name"],
            tuple(d["image"].shape),
            float(d["image"].float().mean()),
            [(r["frame_id"], float(r["image"].float().mean())) for r in d.get("ref_frames", ())],
        )
        for d in batch
    ]


@pytest.mark.parametrize("name", list(PAIRS))
def test_mappers_and_loader_settings_are_the_yaml_ones(name):
    """Without the ImageNet data: the mappers (augmentations, image format, references) and the
    loaders' datasets, batch size and workers."""
    from selsa_d2.data import VideoDatasetMapper

    lazy_path, yaml_path = PAIRS[name]
    lazy_cfg, yaml_cfg = _lazy(lazy_path), _yaml(yaml_path)

    def describe(mapper):
        out = {k: repr(_plain(v)) for k, v in vars(mapper).items() if k != "augmentations"}
        out["augmentations"] = [
            (type(a).__name__, {k: _plain(v) for k, v in vars(a).items()})
            for a in mapper.augmentations.augs
        ]
        return out

    for is_train, node in ((True, lazy_cfg.dataloader.train), (False, lazy_cfg.dataloader.test)):
        assert describe(instantiate(node.mapper)) == describe(
            VideoDatasetMapper(yaml_cfg, is_train=is_train)
        )
    train = lazy_cfg.dataloader.train
    assert list(train.dataset.names) == list(yaml_cfg.DATASETS.TRAIN)
    assert train.dataset.filter_empty == yaml_cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    assert train.total_batch_size == yaml_cfg.SOLVER.IMS_PER_BATCH
    assert (
        train.num_workers == lazy_cfg.dataloader.test.num_workers == yaml_cfg.DATALOADER.NUM_WORKERS
    )
    assert [lazy_cfg.dataloader.test.dataset_name] == list(yaml_cfg.DATASETS.TEST)
    assert lazy_cfg.dataloader.evaluator.motion_iou_range == yaml_cfg.TEST.VID.MOTION_IOU_RANGE
    assert lazy_cfg.dataloader.evaluator.box_convention == yaml_cfg.TEST.VID.BOX_CONVENTION
    assert lazy_cfg.train.checkpointer.period == yaml_cfg.SOLVER.CHECKPOINT_PERIOD
    assert lazy_cfg.train.seed == yaml_cfg.SEED


@pytest.mark.parametrize("name", ["tiny_dc5", "tiny_fpn"])
def test_dataloaders_yield_the_same_samples(synthetic_names, name):
    synthetic_names, _ = synthetic_names
    lazy_path, yaml_path = PAIRS[name]
    yaml_cfg = _yaml(
        yaml_path,
        "DATASETS.TRAIN",
        (synthetic_names["train"],),
        "DATALOADER.NUM_WORKERS",
        0,
    )
    lazy_cfg = _lazy(lazy_path)
    lazy_cfg.dataloader.train.dataset.names = (synthetic_names["train"],)
    lazy_cfg.dataloader.train.num_workers = lazy_cfg.dataloader.test.num_workers = 0
    lazy_cfg.dataloader.test.dataset_name = synthetic_names["val"]

    batches = []
    for build in (
        lambda: build_video_train_loader(yaml_cfg),
        lambda: instantiate(lazy_cfg.dataloader.train),
    ):
        seed_all_rng(7)  # what default_setup does with SEED / train.seed
        loader = iter(build())
        batches.append([_summary(next(loader)) for _ in range(3)])
    assert batches[0] == batches[1]
    # 4 key frames a batch, 2 references each (1 at a video's first and last frame)
    assert [len(b) for b in batches[0]] == [4, 4, 4]
    assert {len(d[3]) for b in batches[0] for d in b} <= {1, 2}

    tests = [
        [_summary(b) for b in build_video_test_loader(yaml_cfg, synthetic_names["val"])],
        [_summary(b) for b in instantiate(lazy_cfg.dataloader.test)],
    ]
    assert tests[0] == tests[1] and len(tests[0]) == 2 * 8


# ---------------------------------------------------------------- a backbone in one field
def test_simple_feature_pyramid_backbone_is_one_field():
    """ViTDet's SimpleFeaturePyramid (p2-p6 from one map, like FPN's outputs) replaces the FPN:
    one field, nothing else changes. Its net here is a ResNet truncated at res4 (ViTDet's ViT
    needs timm; docs/fpn_and_lazyconfig.md shows that config)."""
    from detectron2.config import LazyCall as L
    from detectron2.modeling import SimpleFeaturePyramid
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool

    from selsa_d2.modeling.backbone import build_resnet

    cfg = _lazy(PAIRS["tiny_fpn"][0])
    cfg.model.backbone = L(SimpleFeaturePyramid)(
        net=L(build_resnet)(depth=18, out_features=["res4"], res2_out_channels=64),
        in_feature="res4",
        out_channels=32,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        top_block=L(LastLevelMaxPool)(),
        norm="LN",
    )
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    assert isinstance(model.backbone, SimpleFeaturePyramid)
    assert list(model.backbone.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    assert model.proposal_generator.rpn_head.conv.in_channels == 32
    assert model.roi_heads.box_head.fc1.in_features == 32 * 7 * 7
    frames = synthetic_video(5, 80, 112, seed=2)
    model.eval()
    with torch.no_grad():
        out = model(video_inputs(frames, model.video_engine.ref_sampler, fmt="BGR"))
    assert len(out) == 5 and out[0]["instances"].image_size == (80, 112)
    model.train()
    with EventStorage(0):
        losses = model(training_inputs(num_classes=4))
    sum(losses.values()).backward()
    assert model.backbone.simfp_2[0].weight.grad is not None


# ---------------------------------------------------------------- the entry point
def test_lazyconfig_train_net_trains_and_evaluates(synthetic_names, tmp_path):
    _, data_root = synthetic_names  # registered as synthetic_vid_* in the subprocess
    env = dict(
        os.environ, DETECTRON2_DATASETS=str(data_root), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"
    )
    overrides = [
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
        "dataloader.train.total_batch_size=2",
        "train.max_iter=3",
        "lr_multiplier.scheduler.milestones=[1,2]",
        "train.log_period=1",
        f"train.output_dir={tmp_path}",
        "model.backbone.out_channels=32",
        "model.roi_heads.box_head.fc_dims=[64,64]",
        "model.roi_heads.box_predictor.input_shape.channels=64",
        "model.test_ref_sampler.num_refs=3",
    ]
    script = [sys.executable, "tools/lazyconfig_train_net.py", "--config-file"]
    config = PAIRS["tiny_fpn"][0]
    proc = subprocess.run(
        script + [config] + overrides,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert (tmp_path / "model_final.pth").exists()
    # these train_net.py --eval-only style results come from the evaluation after training
    with open(tmp_path / "inference" / "results.json") as f:
        results = json.load(f)
    assert {"mAP", "mAP_degraded", "mAP_clean"} <= set(results["vid"])
    assert results["timing"]["frames"] == 2 * 8

    # evaluating into the training folder keeps the training's config.yaml (config_eval.yaml)
    training_config = (tmp_path / "config.yaml").read_bytes()
    proc = subprocess.run(
        script
        + [config, "--eval-only"]
        + overrides
        + [f"train.init_checkpoint={tmp_path / 'model_final.pth'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    with open(tmp_path / "inference" / "results.json") as f:
        assert json.load(f)["vid"] == results["vid"]
    assert (tmp_path / "config.yaml").read_bytes() == training_config
    assert (tmp_path / "config_eval.yaml").is_file()

    # training again from scratch would replace the finished model: one line, model kept
    final = (tmp_path / "model_final.pth").read_bytes()
    proc = subprocess.run(
        script + [config] + overrides, cwd=REPO, env=env, capture_output=True, text=True
    )
    last_line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "is a finished model" in last_line and "train.overwrite_finished_model=True" in last_line
    assert (tmp_path / "model_final.pth").read_bytes() == final
