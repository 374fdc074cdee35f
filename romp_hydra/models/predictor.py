"""Sampled parameter vectors -> SMPL meshes, 3D joints and their weak-perspective 2D projections."""

from __future__ import annotations

from typing import NotRequired, TypedDict

import torch
from torch import Tensor, nn

from romp_hydra.geometry.camera import weak_perspective_project
from romp_hydra.geometry.rotations import rot6d_to_rotmat, rotmat_to_axis_angle
from romp_hydra.models.parser import Selection
from romp_hydra.models.romp import BETAS_SLICE, CAM_SLICE, PARAMS_DIM, POSE_JOINTS, ROT6D_DIM

# Root for alignment: mean of joints 45 (R_Hip) and 46 (L_Hip), the LSP-style hips of the 54-joint set
# (ROMP HEAD; V2.1 used joint 49, Pelvis).
ROOT_JOINTS = (45, 46)
POSE_6D_SLICE = slice(CAM_SLICE.stop, CAM_SLICE.stop + POSE_JOINTS * ROT6D_DIM)  # 3:135


class PersonOutputs(TypedDict):
    """Per-person predictions (N people). Plain dict at run time; see docs/architecture.md."""

    batch_idx: Tensor  # (N,) long, image of each person
    person_idx: Tensor  # (N,) long, matched GT slot; -1 in parsing mode
    center_yx: Tensor  # (N, 2) long, map cell
    score: Tensor  # (N,) raw centre-map value
    cam: Tensor  # (N, 3) (s, tx, ty)
    global_orient: Tensor  # (N, 3) axis-angle
    body_pose: Tensor  # (N, 63) axis-angle, SMPL joints 1..21
    betas: Tensor  # (N, 10)
    pose_rotmat: Tensor  # (N, 22, 3, 3)
    verts: NotRequired[Tensor]  # (N, V, 3); absent when decoded with vertices=False
    joints54: Tensor  # (N, 54, 3)
    joints_h36m17: Tensor  # (N, 17, 3)
    pj2d: Tensor  # (N, 54, 2) normalised [-1, 1] coordinates of the padded input


class Predictor(nn.Module):
    """Turns N x 145 parameter vectors into people (ROMP's `SMPLWrapper` + `vertices_kp3d_projection`).

    Steps: split cam / 22 x 6D / betas -> 6D to rotation matrices (ROMP interleaving) -> axis-angle ->
    body model -> optional root alignment on the hip mean (joints 45, 46) -> ``pj2d = s * X_xy + (tx, ty)``.

    Args:
        body_model: module called as ``body_model(global_orient=(N,3), body_pose=(N,63), betas=(N,10))`` and
            returning an object with ``vertices``, ``joints54`` and ``joints_h36m17``
            (`romp_hydra.body.smpl.BodyModel`).
        root_align: subtract the hip mean from vertices and joints before projecting (ROMP's
            `smpl_mesh_root_align`, default True; ROMP's HRNet 3DPW eval configs and simple-romp's released
            model use False).
    """

    def __init__(self, body_model: nn.Module, root_align: bool = True):
        super().__init__()
        self.body_model = body_model
        self.root_align = root_align

    def forward(self, params: Tensor, selection: Selection | None = None, vertices: bool = True) -> PersonOutputs:
        """Decode N people.

        Args:
            params: N x 145 vectors from `parser.sample_params`.
            selection: where they came from, copied into the outputs
                (None: batch 0, slot -1, cell (0, 0), score 0 for everyone).
            vertices: False leaves the meshes out (``verts``): the same joints at a third of the body
                model's cost, for training steps that draw no picture.
        """
        if params.dim() != 2 or params.shape[1] != PARAMS_DIM:
            raise ValueError(
                f"Predictor expects N x {PARAMS_DIM} parameter vectors, got {tuple(params.shape)}"
            )
        count = params.shape[0]
        if selection is None:
            selection = _placeholder_selection(count, params.device)
        elif len(selection) != count:
            raise ValueError(f"Predictor: selection has {len(selection)} people but params has {count} rows")

        params = params.float()
        # The body model may not accept an empty batch: run it on one neutral person and keep zero rows.
        body_input = params if count > 0 else params.new_zeros(1, PARAMS_DIM)
        rotmats = rot6d_to_rotmat(body_input[:, POSE_6D_SLICE].reshape(-1, POSE_JOINTS, ROT6D_DIM))
        axis_angle = rotmat_to_axis_angle(rotmats).flatten(1)  # M x 66
        betas = body_input[:, BETAS_SLICE]
        body = self.body_model(global_orient=axis_angle[:, :3], body_pose=axis_angle[:, 3:], betas=betas,
                               vertices=vertices)
        verts, joints54, joints_h36m17 = body.vertices, body.joints54, body.joints_h36m17
        if self.root_align:
            root = joints54[:, list(ROOT_JOINTS)].mean(dim=1, keepdim=True)
            joints54, joints_h36m17 = joints54 - root, joints_h36m17 - root
            verts = verts - root if vertices else None
        cam = body_input[:, CAM_SLICE]
        pj2d = weak_perspective_project(joints54, cam)

        outputs = {
            "cam": cam,
            "global_orient": axis_angle[:, :3],
            "body_pose": axis_angle[:, 3:],
            "betas": betas,
            "pose_rotmat": rotmats,
            **({"verts": verts} if vertices else {}),
            "joints54": joints54,
            "joints_h36m17": joints_h36m17,
            "pj2d": pj2d,
        }
        if count == 0:
            outputs = {key: value[:0] for key, value in outputs.items()}
        return PersonOutputs(
            batch_idx=selection.batch_idx,
            person_idx=selection.person_idx,
            center_yx=selection.center_yx,
            score=selection.score,
            **outputs,
        )


def _placeholder_selection(count: int, device: torch.device) -> Selection:
    zeros = torch.zeros(count, dtype=torch.long, device=device)
    return Selection(
        batch_idx=zeros,
        person_idx=torch.full_like(zeros, -1),
        center_yx=torch.zeros(count, 2, dtype=torch.long, device=device),
        score=torch.zeros(count, device=device),
    )
