"""BodyModel through smplx on the stand-in: outputs, kinematics, shape, root alignment, files and errors."""
from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from romp_hydra.body.files import BodyModelFilesMissing
from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.body.smpl import BodyModel, BodyOutput, build_body_model
from romp_hydra.body.standin import REST_JOINTS

LEFT_HAND_SIDE = [JOINT54[n] for n in ("L_Wrist", "L_Hand")] + list(range(35, 40))
RIGHT_HAND_SIDE = [JOINT54[n] for n in ("R_Wrist", "R_Hand")] + list(range(40, 45))


def rest(count: int = 1, pose_dim: int = 63) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.zeros(count, 3), torch.zeros(count, pose_dim), torch.zeros(count, 10)


def set_joint(body_pose: torch.Tensor, joint: int, axis_angle) -> None:
    """Write the axis-angle of SMPL joint ``joint`` (1..23) into a body_pose batch."""
    body_pose[:, 3 * (joint - 1): 3 * joint] = torch.tensor(axis_angle, dtype=body_pose.dtype)


def test_output_shapes_dtypes_and_faces(standin_model: BodyModel):
    out = standin_model(*rest(2))
    assert isinstance(out, BodyOutput)
    assert out.vertices.shape == (2, 6890, 3) and out.vertices.dtype == torch.float32
    assert out.joints54.shape == (2, 54, 3) and out.joints_h36m17.shape == (2, 17, 3)
    assert standin_model.faces.shape == (13776, 3) and standin_model.faces.dtype == torch.long
    assert standin_model.is_standin and standin_model.kind == "standin"


def test_empty_batch(standin_model: BodyModel):
    out = standin_model(*rest(0))
    assert out.vertices.shape == (0, 6890, 3) and out.joints54.shape == (0, 54, 3)
    assert out.joints_h36m17.shape == (0, 17, 3)


@pytest.mark.parametrize("root_align", [True, False])
def test_joints_only_gives_the_joints_and_gradients_of_the_full_mesh(standin_dir: Path, root_align: bool):
    model = build_body_model("standin", standin_dir, root_align=root_align)
    generator = torch.Generator().manual_seed(0)
    inputs = [(torch.randn(5, size, generator=generator) * scale).requires_grad_()
              for size, scale in ((3, 1.0), (63, 0.4), (10, 1.0))]
    full, joints_only = model(*inputs), model(*inputs, vertices=False)
    assert joints_only.vertices is None and full.vertices.shape == (5, 6890, 3)
    assert len(model.joints_only.v_template) < 6890 / 2  # the point of it: most vertices are not skinned
    for name in ("joints54", "joints_h36m17"):
        expected, got = getattr(full, name), getattr(joints_only, name)
        torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)
        weights = torch.randn(expected.shape, generator=generator)
        expected_grads = torch.autograd.grad((expected * weights).sum(), inputs, retain_graph=True)
        got_grads = torch.autograd.grad((got * weights).sum(), inputs, retain_graph=True)
        for want, have in zip(expected_grads, got_grads):
            torch.testing.assert_close(have, want, atol=5e-5, rtol=1e-4)
    assert model(*rest(0), vertices=False).vertices is None


def test_rest_pose_reproduces_the_template_joints(standin_model: BodyModel):
    out = standin_model(*rest())
    np.testing.assert_allclose(out.joints54[0, :24].numpy(), REST_JOINTS, atol=1e-5)


def test_bent_left_elbow_moves_only_the_left_hand(standin_model: BodyModel):
    global_orient, body_pose, betas = rest()
    straight = standin_model(global_orient, body_pose, betas).joints54[0]
    set_joint(body_pose, JOINT54["L_Elbow"], [0.0, -math.pi / 2, 0.0])  # forearm swings forward (+z)
    bent = standin_model(global_orient, body_pose, betas).joints54[0]
    moved = (bent - straight).norm(dim=-1)
    assert (moved[LEFT_HAND_SIDE] > 0.2).all()
    assert moved[RIGHT_HAND_SIDE].max() < 1e-6
    assert moved[JOINT54["L_Elbow"]] < 1e-6
    # A 90-degree turn about y moves the wrist by sqrt(2) x the forearm's extent perpendicular to y.
    forearm = REST_JOINTS[20] - REST_JOINTS[18]
    assert moved[JOINT54["L_Wrist"]].item() == pytest.approx(math.sqrt(2) * np.hypot(forearm[0], forearm[2]), abs=1e-5)
    assert bent[JOINT54["L_Wrist"], 2] > straight[JOINT54["L_Wrist"], 2] + 0.2  # now in front


def test_hand_joints_stay_at_rest_with_63_pose_values(standin_model: BodyModel):
    global_orient, pose63, betas = rest(pose_dim=63)
    set_joint(pose63, 18, [0.0, -1.0, 0.0])
    pose69 = torch.cat([pose63, torch.zeros(1, 6)], dim=1)
    out63, out69 = standin_model(global_orient, pose63, betas), standin_model(global_orient, pose69, betas)
    torch.testing.assert_close(out63.vertices, out69.vertices)
    set_joint(pose69, JOINT54["L_Hand"], [0.0, 0.0, 1.0])
    curled = standin_model(global_orient, pose69, betas)
    assert (curled.joints54[0, 35:40] - out69.joints54[0, 35:40]).norm(dim=-1).min() > 0.01


def test_rotation_matrices_equal_axis_angle(standin_model: BodyModel):
    generator = torch.Generator().manual_seed(0)
    global_orient = 0.3 * torch.randn(3, 3, generator=generator)
    body_pose = 0.3 * torch.randn(3, 63, generator=generator)
    betas = torch.randn(3, 10, generator=generator)
    from smplx.lbs import batch_rodrigues

    as_matrices = standin_model(batch_rodrigues(global_orient), batch_rodrigues(body_pose.reshape(-1, 3)).reshape(3, 21, 3, 3), betas)
    as_axis_angle = standin_model(global_orient, body_pose, betas)
    torch.testing.assert_close(as_matrices.joints54, as_axis_angle.joints54)


def test_first_beta_changes_height_monotonically(standin_model: BodyModel):
    global_orient, body_pose, _ = rest(5)
    betas = torch.zeros(5, 10)
    betas[:, 0] = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    vertices = standin_model(global_orient, body_pose, betas).vertices
    height = vertices[..., 1].amax(dim=1) - vertices[..., 1].amin(dim=1)
    assert (height.diff() > 0.02).all()


def test_second_beta_changes_girth(standin_model: BodyModel):
    global_orient, body_pose, _ = rest(3)
    betas = torch.zeros(3, 10)
    betas[:, 1] = torch.tensor([-2.0, 0.0, 2.0])
    vertices = standin_model(global_orient, body_pose, betas).vertices
    waist = (vertices[..., 1] - REST_JOINTS[3, 1]).abs() < 0.02
    width = torch.stack([v[m, 0].amax() - v[m, 0].amin() for v, m in zip(vertices, waist)])
    assert (width.diff() > 0.01).all()


def test_vertex_joints_near_their_anatomical_neighbours(standin_model: BodyModel):
    j = standin_model(*rest()).joints54[0]
    assert j[JOINT54["Nose"], 1] > j[JOINT54["Neck"], 1]
    assert j[JOINT54["L_Eye"], 0] > 0 > j[JOINT54["R_Eye"], 0]
    assert j[JOINT54["L_BigToe"], 2] > j[JOINT54["L_Heel"], 2] and j[JOINT54["R_BigToe"], 2] > j[JOINT54["R_Heel"], 2]
    assert (j[JOINT54["L_Hand_middle"]] - j[JOINT54["L_Hand"]]).norm() < 0.15
    assert j[JOINT54["Head_top"], 1] > j[JOINT54["Nose"], 1]


def test_root_alignment_puts_mid_hip_at_origin(standin_dir: Path, standin_model: BodyModel):
    aligned_model = BodyModel(standin_dir, root_align=True)
    generator = torch.Generator().manual_seed(1)
    args = (0.5 * torch.randn(2, 3, generator=generator), 0.3 * torch.randn(2, 63, generator=generator),
            torch.randn(2, 10, generator=generator))
    aligned, raw = aligned_model(*args), standin_model(*args)
    mid_hip = aligned.joints54[:, [JOINT54["R_Hip"], JOINT54["L_Hip"]]].mean(dim=1)
    torch.testing.assert_close(mid_hip, torch.zeros(2, 3), atol=1e-6, rtol=0)
    shift = raw.joints54[:, [45, 46]].mean(dim=1, keepdim=True)
    torch.testing.assert_close(aligned.vertices, raw.vertices - shift)
    torch.testing.assert_close(aligned.joints_h36m17, raw.joints_h36m17 - shift)


def test_h36m_joints_come_in_lsp_order(standin_model: BodyModel):
    h36m = standin_model(*rest()).joints_h36m17[0]
    j54 = standin_model(*rest()).joints54[0]
    # LSP-14: R ankle, R knee, R hip, L hip, L knee, L ankle, R wrist, R elbow, R shoulder, L shoulder, ...
    assert h36m[0, 0] < 0 and h36m[5, 0] > 0 and h36m[0, 1] < h36m[1, 1] < h36m[2, 1]
    assert h36m[6, 0] < h36m[7, 0] < h36m[8, 0] < 0 < h36m[9, 0] < h36m[10, 0] < h36m[11, 0]
    assert (h36m[6] - j54[JOINT54["R_Wrist"]]).norm() < 0.02


def test_constants_are_buffers_but_not_checkpointed(standin_model: BodyModel):
    buffers = dict(standin_model.named_buffers())
    assert {"j_regressor_extra", "j_regressor_h36m17", "smpl.v_template", "smpl.shapedirs", "smpl.posedirs"} <= set(buffers)
    assert all(b.dtype in (torch.float32, torch.long) for b in buffers.values())
    assert len(standin_model.state_dict()) == 0
    assert not list(standin_model.parameters())


def test_double_precision_after_casting(standin_dir: Path):
    model = BodyModel(standin_dir).to(torch.float64)
    out = model(*rest())
    assert out.vertices.dtype == torch.float64


def test_gendered_stand_ins(standin_dir: Path):
    heights = {}
    for gender in ("male", "female"):
        vertices = BodyModel(standin_dir, gender=gender)(*rest()).vertices[0]
        heights[gender] = (vertices[:, 1].max() - vertices[:, 1].min()).item()
    assert heights["male"] > heights["female"]


def test_bad_inputs_name_the_argument(standin_model: BodyModel):
    global_orient, body_pose, betas = rest(2)
    with pytest.raises(ValueError, match="body_pose has shape \\(2, 60\\)"):
        standin_model(global_orient, torch.zeros(2, 60), betas)
    with pytest.raises(ValueError, match="betas has shape"):
        standin_model(global_orient, body_pose, torch.zeros(2, 11))
    with pytest.raises(ValueError, match="batch sizes differ"):
        standin_model(global_orient, body_pose, torch.zeros(3, 10))


def test_build_standin_writes_once_and_says_so(tmp_path: Path, caplog):
    folder = tmp_path / "standin"
    with caplog.at_level(logging.INFO, logger="romp_hydra.body.smpl"):
        first = build_body_model("standin", folder)
    assert "wrote the deterministic stand-in (NOT SMPL)" in caplog.text
    stamp = (folder / "SMPL_NEUTRAL.pkl").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="romp_hydra.body.smpl"):
        build_body_model("standin", folder)
    assert "wrote" not in caplog.text and (folder / "SMPL_NEUTRAL.pkl").stat().st_mtime_ns == stamp
    assert first.is_standin and first.kind == "standin"


def test_smpl_kind_with_missing_files_explains_the_fix(tmp_path: Path):
    with pytest.raises(BodyModelFilesMissing) as error:
        build_body_model("smpl", tmp_path / "nowhere")
    message = str(error.value)
    for expected in ("SMPL_NEUTRAL.pkl", "J_regressor_extra.npy", "J_regressor_h36m.npy", "smpl.is.tue.mpg.de",
                     str((tmp_path / "nowhere" / "SMPL_NEUTRAL.pkl").resolve()), "body_model=standin",
                     "python -m romp_hydra.body.convert"):
        assert expected in message
    assert isinstance(error.value, FileNotFoundError)


def test_smpl_kind_on_a_stand_in_folder_is_tagged(standin_dir: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="romp_hydra.body.smpl"):
        model = build_body_model("smpl", standin_dir)
    assert model.kind == "smpl" and model.is_standin
    assert "stand-in" in caplog.text


def test_unknown_kind_and_gender(tmp_path: Path, standin_dir: Path):
    with pytest.raises(ValueError, match="body_model.kind='smplx'"):
        build_body_model("smplx", tmp_path)
    with pytest.raises(ValueError, match="gender='other'"):
        BodyModel(standin_dir, gender="other")


def test_not_a_smpl_file_names_the_key(tmp_path: Path, standin_dir: Path):
    for name in ("J_regressor_extra.npy", "J_regressor_h36m.npy"):
        shutil.copy(standin_dir / name, tmp_path / name)
    import pickle

    with open(standin_dir / "SMPL_NEUTRAL.pkl", "rb") as handle:
        data = pickle.load(handle)
    data["weights"] = data["weights"][:, :23]
    with open(tmp_path / "SMPL_NEUTRAL.pkl", "wb") as handle:
        pickle.dump(data, handle)
    with pytest.raises(ValueError, match="'weights' has shape \\(6890, 23\\)"):
        BodyModel(tmp_path)
