"""mmdet-style global gradient clipping (SOLVER.CLIP_GRADIENTS.CLIP_TYPE full_model)."""

import torch
from detectron2.config import get_cfg

from selsa_d2 import add_selsa_config
from selsa_d2.solver import build_selsa_optimizer


def _cfg(clip_type, value=1.0):
    cfg = get_cfg()
    add_selsa_config(cfg)
    cfg.SOLVER.BASE_LR = 1.0
    cfg.SOLVER.MOMENTUM = 0.0
    cfg.SOLVER.WEIGHT_DECAY = 0.0
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = value
    return cfg


def _step(cfg, grads):
    model = torch.nn.Module()
    model.a = torch.nn.Parameter(torch.zeros(2))
    model.b = torch.nn.Parameter(torch.zeros(1))
    opt = build_selsa_optimizer(cfg, model)
    model.a.grad, model.b.grad = torch.tensor(grads[:2]), torch.tensor(grads[2:])
    opt.step()
    return torch.cat([model.a.detach(), model.b.detach()])


def test_full_model_clips_the_global_norm():
    # gradients (3, 0 | 4): global norm 5, clipped to 1 -> every gradient scaled by 1/5
    new = _step(_cfg("full_model", 1.0), [3.0, 0.0, 4.0])
    torch.testing.assert_close(new, -torch.tensor([0.6, 0.0, 0.8]), rtol=1e-5, atol=1e-6)


def test_full_model_leaves_small_gradients():
    new = _step(_cfg("full_model", 35.0), [3.0, 0.0, 4.0])
    torch.testing.assert_close(new, -torch.tensor([3.0, 0.0, 4.0]))


def test_detectron2_per_parameter_norm_is_different():
    # Detectron2's "norm" clips each parameter separately: a -> (1, 0), b -> (1)
    new = _step(_cfg("norm", 1.0), [3.0, 0.0, 4.0])
    torch.testing.assert_close(new, -torch.tensor([1.0, 0.0, 1.0]), rtol=1e-5, atol=1e-6)
