"""The SMPL body model as ROMP uses it: smplx's linear blend skinning plus ROMP's 54 + 17 joints.

`BodyModel` wraps ``smplx.SMPLLayer`` (the LBS is smplx's) and adds what ROMP's
``smpl_family/smpl.py`` adds on top:

* joints 0..23: SMPL's kinematic joints; 24..44: 21 mesh vertices (nose, eyes, ears, toes, heels, finger
  tips; smplx's ``VertexJointSelector`` with the SMPL-H vertex ids); 45..53: ``J_regressor_extra`` (LSP
  hips, neck, head top, pelvis, thorax, spine, jaw, head) -- together ``joints54`` (`joint_sets.SMPL_ALL_54`);
* ``joints_h36m17``: ``J_regressor_h36m`` with its rows reordered by ``H36M_TO_J17`` (LSP-14 first, then
  pelvis, spine, jaw), the joints the 3DPW / H36M protocols compare;
* root alignment (ROMP's ``smpl_mesh_root_align``, default True): vertices and joints minus the mean of
  joints 45 and 46 (the LSP-style hips). This is ROMP HEAD's rule; ROMP V2.1 subtracted joint 49
  (``Pelvis``) instead. MPJPE / PA-MPJPE re-align and do not care; projections and PVE do.

The body model computes in its buffers' dtype (float32 unless cast) with autocast off: skinning in half
precision visibly distorts meshes, and its cost is small next to the backbone.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import smplx
import torch
from smplx.lbs import batch_rodrigues, lbs
from smplx.utils import Struct
from torch import Tensor, nn

from romp_hydra.body import files
from romp_hydra.body.convert import load_smpl_pickle
from romp_hydra.body.joint_sets import H36M_TO_J17, NUM_JOINTS_54, ROOT_JOINTS
from romp_hydra.body.standin import standin_is_complete, write_standin

__all__ = ["BODY_MODEL_KINDS", "NUM_BETAS", "NUM_VERTICES", "BodyModel", "BodyOutput", "build_body_model"]

log = logging.getLogger(__name__)

BODY_MODEL_KINDS = ("smpl", "standin")
NUM_BETAS = 10  # ROMP keeps the first 10 shape components
NUM_VERTICES = 6890  # SMPL's topology: the extra-joint vertex ids assume it
NUM_SMPL_JOINTS = 24
NUM_EXTRA_REGRESSED = 9
NUM_H36M = 17
_REQUIRED_KEYS = ("v_template", "f", "J_regressor", "kintree_table", "weights", "posedirs", "shapedirs")


class BodyOutput(NamedTuple):
    """What `BodyModel` returns (a NamedTuple, so DataParallel can gather it)."""

    vertices: Tensor | None  # (N, 6890, 3); None when the body model was asked for joints only
    joints54: Tensor  # (N, 54, 3), joint_sets.SMPL_ALL_54 order
    joints_h36m17: Tensor  # (N, 17, 3), joint_sets.H36M_17 order (LSP-14, pelvis, spine, jaw)


def _shape_of(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else ()


def _check_smpl_layout(data: dict[str, Any], path: Path) -> None:
    """Fail early, naming the key, when a pickle is not a SMPL model with 6890 vertices and 24 joints."""
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"{path} is not a SMPL model file: missing keys {missing} (found {sorted(data)})")
    expected = {
        "v_template": (NUM_VERTICES, 3),
        "J_regressor": (NUM_SMPL_JOINTS, NUM_VERTICES),
        "kintree_table": (2, NUM_SMPL_JOINTS),
        "weights": (NUM_VERTICES, NUM_SMPL_JOINTS),
        "posedirs": (NUM_VERTICES, 3, 9 * (NUM_SMPL_JOINTS - 1)),
    }
    for key, shape in expected.items():
        if _shape_of(data[key]) != shape:
            raise ValueError(f"{path}: '{key}' has shape {_shape_of(data[key])}, a SMPL model has {shape}")
    shapedirs = _shape_of(data["shapedirs"])
    if len(shapedirs) != 3 or shapedirs[:2] != (NUM_VERTICES, 3) or shapedirs[2] < NUM_BETAS:
        raise ValueError(f"{path}: 'shapedirs' has shape {shapedirs}, expected ({NUM_VERTICES}, 3, >= {NUM_BETAS})")


def _load_regressor(path: Path, rows: int) -> np.ndarray:
    regressor = np.load(path, allow_pickle=False)
    if regressor.shape != (rows, NUM_VERTICES):
        raise ValueError(f"{path} has shape {regressor.shape}, expected ({rows}, {NUM_VERTICES})")
    return np.asarray(regressor, dtype=np.float32)


def _rotation_matrices(pose: Tensor, name: str, joint_counts: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """(N, K, 3, 3) rotation matrices from axis-angle (N, 3K) or rotation matrices (N, K, 3, 3)."""
    if not isinstance(pose, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(pose).__name__}")
    if pose.dim() == 2 and pose.shape[1] in [3 * k for k in joint_counts]:
        count = pose.shape[1] // 3
        return batch_rodrigues(pose.reshape(-1, 3).to(dtype)).reshape(pose.shape[0], count, 3, 3)
    if pose.dim() == 4 and pose.shape[1] in joint_counts and pose.shape[2:] == (3, 3):
        return pose.to(dtype)
    if pose.dim() == 3 and joint_counts == (1,) and pose.shape[1:] == (3, 3):
        return pose.to(dtype).unsqueeze(1)
    accepted = " or ".join(f"(N, {3 * k}) axis-angle or (N, {k}, 3, 3) rotation matrices" for k in joint_counts)
    raise ValueError(f"{name} has shape {tuple(pose.shape)}; expected {accepted}")


def _make_buffers_non_persistent(module: nn.Module) -> None:
    """Keep the model's constants out of state_dict: checkpoints stay small and never carry SMPL data."""
    for submodule in module.modules():
        for name, buffer in list(submodule.named_buffers(recurse=False)):
            delattr(submodule, name)
            submodule.register_buffer(name, buffer, persistent=False)


class BodyModel(nn.Module):
    """SMPL (or the stand-in) from ``model_dir``: pose and shape -> vertices, 54 joints and 17 H36M joints.

    Args:
        model_dir: folder with ``SMPL_<GENDER>.pkl``, ``J_regressor_extra.npy`` and ``J_regressor_h36m.npy``
            (`romp_hydra.body.files`). The pickle may be plain numpy or the official chumpy one.
        gender: ``neutral`` (ROMP's predictions) or ``male`` / ``female`` (gendered ground truth).
        root_align: subtract the mean of joints 45/46 from vertices and joints (ROMP HEAD's default).
        kind: ``smpl`` or ``standin``, recorded for run tagging.

    Attributes:
        faces: (13776, 3) long tensor of the mesh triangles (moves with ``.to(device)``).
        is_standin: True when the loaded files are the generated stand-in, whatever ``kind`` says.

    All constants are buffers, so ``.to(device)`` moves them; none is saved in ``state_dict``.

    Raises:
        files.BodyModelFilesMissing: a file is missing (the message says where to get it and where it goes).
        ValueError: a file does not have SMPL's layout.
    """

    def __init__(self, model_dir: str | os.PathLike, gender: str = "neutral", root_align: bool = True,
                 kind: str = "smpl"):
        super().__init__()
        paths = files.check_body_model_files(model_dir, genders=(gender,))
        data = load_smpl_pickle(paths.model)
        _check_smpl_layout(data, paths.model)
        # smplx prints a warning for models with 10 instead of 300 shape components (SMPL v1.0, the
        # stand-in); 10 is all ROMP uses, so keep stdout clean and log it instead.
        smplx_output = io.StringIO()
        with contextlib.redirect_stdout(smplx_output):
            self.smpl = smplx.SMPLLayer(model_path=str(paths.model), data_struct=Struct(**data), gender=gender,
                                        num_betas=NUM_BETAS)
        if smplx_output.getvalue().strip():
            log.debug("smplx: %s", smplx_output.getvalue().strip())
        extra = _load_regressor(paths.j_regressor_extra, NUM_EXTRA_REGRESSED)
        h36m = _load_regressor(paths.j_regressor_h36m, NUM_H36M)[list(H36M_TO_J17)]
        self.register_buffer("j_regressor_extra", torch.from_numpy(extra))
        self.register_buffer("j_regressor_h36m17", torch.from_numpy(np.ascontiguousarray(h36m)))
        self.joints_only = _JointVertexSubset(self.smpl, self.j_regressor_extra, self.j_regressor_h36m17)
        _make_buffers_non_persistent(self)

        self.kind = kind
        self.gender = gender
        self.root_align = root_align
        self.model_path = paths.model
        self.is_standin = "standin_note" in data or files.is_standin_dir(model_dir)

    @property
    def faces(self) -> Tensor:
        return self.smpl.faces_tensor

    @property
    def num_betas(self) -> int:
        return NUM_BETAS

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, gender={self.gender}, root_align={self.root_align}, "
                f"is_standin={self.is_standin}, model={self.model_path}")

    def forward(self, global_orient: Tensor, body_pose: Tensor, betas: Tensor, vertices: bool = True) -> BodyOutput:
        """Pose and shape of N people -> `BodyOutput` (float32 unless the module was cast, on its device).

        Args:
            global_orient: (N, 3) axis-angle or (N, 3, 3) / (N, 1, 3, 3) rotation matrix of the root.
            body_pose: (N, 63) or (N, 69) axis-angle, or (N, 21, 3, 3) / (N, 23, 3, 3) rotation matrices,
                SMPL joints 1..21 (1..23). With 21 joints the hands (22, 23) stay at rest, as in ROMP.
            betas: (N, 10) shape coefficients.
            vertices: False skins only the vertices the joints are regressed from (the same joints, a third of
                the cost; ``vertices`` is None in the output): the training losses need no mesh.
        """
        dtype = self.smpl.shapedirs.dtype  # float32 unless the module was explicitly cast
        global_rot = _rotation_matrices(global_orient, "global_orient", (1,), dtype)
        body_rot = _rotation_matrices(body_pose, "body_pose", (21, 23), dtype)
        if betas.dim() != 2 or betas.shape[1] != NUM_BETAS:
            raise ValueError(f"betas has shape {tuple(betas.shape)}; expected (N, {NUM_BETAS})")
        count = global_rot.shape[0]
        if body_rot.shape[0] != count or betas.shape[0] != count:
            raise ValueError(f"batch sizes differ: global_orient {count}, body_pose {body_rot.shape[0]}, "
                             f"betas {betas.shape[0]}")
        device = self.smpl.v_template.device
        if count == 0:  # smplx cannot run an empty batch
            empty = torch.zeros(0, 3, device=device, dtype=dtype)
            return BodyOutput(empty.new_zeros(0, NUM_VERTICES, 3) if vertices else None,
                              empty.new_zeros(0, NUM_JOINTS_54, 3),
                              empty.new_zeros(0, NUM_H36M, 3))
        if body_rot.shape[1] == 21:
            rest_hands = torch.eye(3, device=body_rot.device, dtype=body_rot.dtype).expand(count, 2, 3, 3)
            body_rot = torch.cat([body_rot, rest_hands], dim=1)

        with torch.autocast(device_type=device.type, enabled=False):
            if vertices:
                smpl_out = self.smpl(betas=betas.to(dtype), global_orient=global_rot, body_pose=body_rot)
                mesh, joints45 = smpl_out.vertices, smpl_out.joints
                regress_from, extra_regressor, h36m_regressor = mesh, self.j_regressor_extra, self.j_regressor_h36m17
            else:
                mesh = None
                regress_from, joints45 = self.joints_only(betas.to(dtype), global_rot, body_rot)
                extra_regressor = self.joints_only.j_regressor_extra
                h36m_regressor = self.joints_only.j_regressor_h36m17
            extra = torch.einsum("jv,nvc->njc", extra_regressor, regress_from)
            joints54 = torch.cat([joints45, extra], dim=1)  # 24 kinematic + 21 vertices + 9
            joints_h36m17 = torch.einsum("jv,nvc->njc", h36m_regressor, regress_from)
        if self.root_align:
            root = joints54[:, list(ROOT_JOINTS)].mean(dim=1, keepdim=True)
            joints54, joints_h36m17 = joints54 - root, joints_h36m17 - root
            mesh = mesh - root if mesh is not None else None
        return BodyOutput(mesh, joints54, joints_h36m17)


class _JointVertexSubset(nn.Module):
    """smplx's LBS restricted to the vertices the joints depend on (the supports of the kinematic, extra and
    H36M regressors and the 21 vertex joints): exactly the joints of the full mesh, from ~2,000 of its 6,890
    vertices. A vertex's skinned position depends only on its own rows of the template, the blend shapes and
    the skinning weights, so dropping the others changes nothing that the joints read."""

    def __init__(self, smpl: smplx.SMPLLayer, j_regressor_extra: Tensor, j_regressor_h36m17: Tensor):
        super().__init__()
        selected = smpl.vertex_joint_selector.extra_joints_idxs
        used = (smpl.J_regressor != 0).any(0) | (j_regressor_extra != 0).any(0) | (j_regressor_h36m17 != 0).any(0)
        used[selected] = True
        ids = used.nonzero().squeeze(1)
        position = torch.full((used.shape[0],), -1, dtype=torch.long)
        position[ids] = torch.arange(len(ids))
        num_pose_basis = smpl.posedirs.shape[0]
        self.register_buffer("v_template", smpl.v_template[ids].clone())
        self.register_buffer("shapedirs", smpl.shapedirs[ids].clone())
        self.register_buffer("posedirs", smpl.posedirs.view(num_pose_basis, -1, 3)[:, ids].reshape(num_pose_basis, -1))
        self.register_buffer("lbs_weights", smpl.lbs_weights[ids].clone())
        self.register_buffer("j_regressor", smpl.J_regressor[:, ids].clone())
        self.register_buffer("j_regressor_extra", j_regressor_extra[:, ids].clone())
        self.register_buffer("j_regressor_h36m17", j_regressor_h36m17[:, ids].clone())
        self.register_buffer("vertex_joints", position[selected].clone())
        self.register_buffer("parents", smpl.parents.clone())

    def forward(self, betas: Tensor, global_rot: Tensor, body_rot: Tensor) -> tuple[Tensor, Tensor]:
        """(the skinned subset (N, S, 3), smplx's 45 joints: 24 kinematic + 21 vertex joints)."""
        full_pose = torch.cat([global_rot.reshape(-1, 1, 3, 3), body_rot], dim=1)
        subset, joints24 = lbs(betas, full_pose, self.v_template, self.shapedirs, self.posedirs, self.j_regressor,
                               self.parents, self.lbs_weights, pose2rot=False)
        return subset, torch.cat([joints24, subset[:, self.vertex_joints]], dim=1)


def build_body_model(kind: str, model_dir: str | os.PathLike, gender: str = "neutral",
                     root_align: bool = True) -> BodyModel:
    """Build the body model a config asks for (``body_model.kind / model_dir / gender / root_align``).

    ``kind='standin'`` writes the deterministic stand-in into ``model_dir`` first when it is not there
    (it never overwrites a folder that holds a real SMPL model). ``kind='smpl'`` needs the licensed files
    and raises `files.BodyModelFilesMissing` with instructions when they are absent.
    """
    if kind not in BODY_MODEL_KINDS:
        raise ValueError(f"body_model.kind={kind!r} is unknown; choose one of {', '.join(BODY_MODEL_KINDS)} "
                         "(body_model=smpl needs the licensed SMPL files, body_model=standin does not)")
    model_dir = Path(model_dir).expanduser()
    if kind == "standin":
        if standin_is_complete(model_dir):
            log.info("body model: stand-in (NOT SMPL) from %s", model_dir)
        else:
            write_standin(model_dir)
            log.info("body model: wrote the deterministic stand-in (NOT SMPL) to %s", model_dir)
    model = BodyModel(model_dir, gender=gender, root_align=root_align, kind=kind)
    if kind == "smpl" and model.is_standin:
        log.warning("body_model=smpl loaded the generated stand-in (NOT SMPL) from %s; the run is tagged "
                    "as a stand-in run (is_standin=True)", model_dir)
    return model
