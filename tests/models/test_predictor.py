"""Predictor: parameter split, 6D decoding, root alignment and projection, with a hand-made body model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from romp_hydra.geometry.rotations import rotmat_to_rot6d
from romp_hydra.models import Predictor, Selection

NUM_VERTS = 5


@dataclass
class FakeBodyOutput:
    vertices: torch.Tensor
    joints54: torch.Tensor
    joints_h36m17: torch.Tensor


class FakeBody(nn.Module):
    """Fixed joints / vertices shifted by betas[:, :3]; hips 45 = (1,2,3), 46 = (3,2,1) before the shift."""

    def __init__(self):
        super().__init__()
        joints = torch.arange(54 * 3, dtype=torch.float32).view(54, 3) / 100
        joints[45] = torch.tensor([1.0, 2.0, 3.0])
        joints[46] = torch.tensor([3.0, 2.0, 1.0])
        self.register_buffer("joints", joints)
        self.calls = []

    def forward(self, global_orient, body_pose, betas, vertices=True):
        self.calls.append(
            (global_orient.detach().clone(), body_pose.detach().clone(), betas.detach().clone())
        )
        shift = betas[:, None, :3]
        count = betas.shape[0]
        return FakeBodyOutput(
            vertices=torch.ones(count, NUM_VERTS, 3) + shift if vertices else None,
            joints54=self.joints.expand(count, -1, -1) + shift,
            joints_h36m17=self.joints[:17].expand(count, -1, -1) + shift,
        )


IDENTITY_6D = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])


def make_params(count: int) -> torch.Tensor:
    params = torch.zeros(count, 145)
    params[:, 3:135] = IDENTITY_6D.repeat(22)
    params[:, 0:3] = torch.tensor([2.0, 0.1, -0.3])  # s, tx, ty
    params[:, 135:145] = torch.arange(10, dtype=torch.float32) / 10
    return params


def test_parameters_are_split_and_decoded():
    params = make_params(2)
    quarter_turn_z = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    params[1, 3:9] = rotmat_to_rot6d(quarter_turn_z)
    body = FakeBody()
    out = Predictor(body)(params)
    global_orient, body_pose, betas = body.calls[0]
    torch.testing.assert_close(global_orient, torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.pi / 2]]))
    torch.testing.assert_close(body_pose, torch.zeros(2, 63))
    torch.testing.assert_close(betas, (torch.arange(10) / 10).expand(2, 10))
    torch.testing.assert_close(out["pose_rotmat"][1, 0], quarter_turn_z)
    torch.testing.assert_close(out["pose_rotmat"][0], torch.eye(3).expand(22, 3, 3))
    torch.testing.assert_close(out["cam"], torch.tensor([[2.0, 0.1, -0.3]] * 2))
    assert out["body_pose"].shape == (2, 63) and out["global_orient"].shape == (2, 3)


def test_root_alignment_and_weak_perspective_projection():
    out = Predictor(FakeBody(), root_align=True)(make_params(1))
    # Hips (1,2,3) and (3,2,1) (+ the same betas shift) -> root (2,2,2) + shift; aligned hip 45 = (-1, 0, 1).
    torch.testing.assert_close(out["joints54"][0, 45], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(out["verts"][0, 0], torch.tensor([-1.0, -1.0, -1.0]))
    torch.testing.assert_close(out["joints_h36m17"], out["joints54"][:, :17])
    # pj2d = s * (x, y) + (tx, ty) = 2 * (-1, 0) + (0.1, -0.3)
    torch.testing.assert_close(out["pj2d"][0, 45], torch.tensor([-1.9, -0.3]))
    assert out["pj2d"].shape == (1, 54, 2)


def test_joints_only_leaves_the_meshes_out_and_keeps_the_joints():
    full = Predictor(FakeBody(), root_align=True)(make_params(2))
    joints_only = Predictor(FakeBody(), root_align=True)(make_params(2), vertices=False)
    assert "verts" not in joints_only and set(joints_only) == set(full) - {"verts"}
    for key in ("joints54", "joints_h36m17", "pj2d"):
        torch.testing.assert_close(joints_only[key], full[key])


def test_without_root_alignment_the_body_output_is_kept():
    out = Predictor(FakeBody(), root_align=False)(make_params(1))
    torch.testing.assert_close(out["joints54"][0, 45], torch.tensor([1.0, 2.1, 3.2]))  # + betas (0, .1, .2)


def test_selection_is_carried_into_the_outputs():
    selection = Selection(
        batch_idx=torch.tensor([1, 0]),
        person_idx=torch.tensor([3, -1]),
        center_yx=torch.tensor([[4, 5], [6, 7]]),
        score=torch.tensor([0.9, 0.4]),
    )
    out = Predictor(FakeBody())(make_params(2), selection)
    assert out["batch_idx"].tolist() == [1, 0] and out["person_idx"].tolist() == [3, -1]
    assert out["center_yx"].tolist() == [[4, 5], [6, 7]] and out["score"].tolist() == pytest.approx(
        [0.9, 0.4]
    )
    with pytest.raises(ValueError, match="selection has 2 people but params has 1"):
        Predictor(FakeBody())(make_params(1), selection)


def test_no_people_gives_empty_outputs_of_the_right_shapes():
    out = Predictor(FakeBody())(torch.zeros(0, 145), Selection.empty())
    expected = {
        "cam": (0, 3),
        "global_orient": (0, 3),
        "body_pose": (0, 63),
        "betas": (0, 10),
        "pose_rotmat": (0, 22, 3, 3),
        "verts": (0, NUM_VERTS, 3),
        "joints54": (0, 54, 3),
        "joints_h36m17": (0, 17, 3),
        "pj2d": (0, 54, 2),
        "batch_idx": (0,),
        "center_yx": (0, 2),
    }
    assert {key: tuple(out[key].shape) for key in expected} == expected


def test_gradients_flow_from_projections_to_the_parameters():
    params = make_params(2).requires_grad_(True)
    Predictor(FakeBody())(params)["pj2d"].sum().backward()
    assert params.grad[:, 0].abs().sum() > 0  # camera scale
    assert params.grad[:, 135:138].abs().sum() == 0  # a uniform shift is removed by root alignment


def test_wrong_parameter_width_is_rejected():
    with pytest.raises(ValueError, match="N x 145"):
        Predictor(FakeBody())(torch.zeros(2, 142))
