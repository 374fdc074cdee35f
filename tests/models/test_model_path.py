"""The model path: precision resolution and the one output dict of training and inference."""
from __future__ import annotations

import pytest
import torch

from romp_hydra.models.model import PeoplePicker, forward_step, resolve_precision


class FixedPredictor(torch.nn.Module):
    """Stands in for the body model: every person's parameters are returned as its 'cam' (shape checks only)."""

    def forward(self, params, selection, vertices=True):
        return {"batch_idx": selection.batch_idx, "person_idx": selection.person_idx,
                "center_yx": selection.center_yx, "score": selection.score, "cam": params[:, :3]}


def test_mixed_precision_resolves_per_device(monkeypatch):
    assert resolve_precision("mixed", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"  # config.validate rejects this on CPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("mixed", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("mixed", torch.device("cuda")) == "fp16"
    with pytest.raises(ValueError, match="fp32, bf16, fp16, mixed"):
        resolve_precision("half", torch.device("cpu"))


def test_one_output_dict_in_training_and_inference_modes(make_tiny_net):
    net = make_tiny_net("hrnet").eval()
    images = torch.rand(2, 3, 64, 64) * 255
    centers = torch.tensor([[[0.0, 0.0]], [[0.5, -0.5]]])
    picker = PeoplePicker(matching="gt_center", center_threshold=0.2, max_detections=8)
    matched = forward_step(net, FixedPredictor(), images, torch.device("cpu"), picker, centers=centers,
                           person_mask=torch.ones(2, 1, dtype=torch.bool))
    assert {"center_map", "params_maps", "batch_idx", "person_idx", "cam"} <= set(matched)
    assert matched["person_idx"].tolist() == [0, 0] and matched["cam"].shape == (2, 3)
    everyone = forward_step(net, FixedPredictor(), images, torch.device("cpu"),
                            PeoplePicker(matching="gt_center", center_threshold=-1e9, max_detections=3))
    per_image = torch.bincount(everyone["batch_idx"], minlength=2)
    assert set(everyone["person_idx"].tolist()) == {-1}  # parsing mode: every peak is a person
    assert per_image.min() >= 1 and per_image.max() <= 3  # each image's map has a maximum; at most top-k
    with pytest.raises(ValueError, match="nearest_center, gt_center"):
        PeoplePicker(matching="nearest_peak", center_threshold=0.2, max_detections=8)
