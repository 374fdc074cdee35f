"""The generated stand-in: SMPL's file layout, a sound closed mesh, a plausible human, determinism."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from scipy.sparse.csgraph import connected_components

from romp_hydra.body import files
from romp_hydra.body.standin import (
    EXTRA_JOINT_VERTEX_IDS,
    REST_JOINTS,
    SMPL_PARENTS,
    build_standin,
    main,
    standin_is_complete,
    write_standin,
)


@pytest.fixture(scope="module")
def smpl_dict(standin_dir: Path) -> dict:
    with open(standin_dir / "SMPL_NEUTRAL.pkl", "rb") as handle:
        return pickle.load(handle)  # a plain pickle: no custom unpickler needed


@pytest.fixture(scope="module")
def model():
    return build_standin()


def test_files_have_smpl_names_and_layout(standin_dir: Path, smpl_dict: dict):
    for name in ("SMPL_NEUTRAL.pkl", "SMPL_MALE.pkl", "SMPL_FEMALE.pkl", "J_regressor_extra.npy",
                 "J_regressor_h36m.npy", files.STANDIN_MARKER_FILE):
        assert (standin_dir / name).is_file(), name
    assert "NOT SMPL" in (standin_dir / files.STANDIN_MARKER_FILE).read_text()
    assert files.is_standin_dir(standin_dir)

    assert smpl_dict["v_template"].shape == (6890, 3)
    assert smpl_dict["f"].shape == (13776, 3) and smpl_dict["f"].dtype == np.uint32
    assert scipy.sparse.isspmatrix_csc(smpl_dict["J_regressor"]) and smpl_dict["J_regressor"].shape == (24, 6890)
    assert smpl_dict["weights"].shape == (6890, 24)
    assert smpl_dict["posedirs"].shape == (6890, 3, 207)
    assert smpl_dict["shapedirs"].shape == (6890, 3, 10)
    kintree = smpl_dict["kintree_table"]
    assert kintree.shape == (2, 24) and kintree[0, 0] == 4294967295
    assert kintree[0, 1:].tolist() == list(SMPL_PARENTS[1:]) and kintree[1].tolist() == list(range(24))
    assert "NOT SMPL" in smpl_dict["standin_note"]
    assert np.load(standin_dir / "J_regressor_extra.npy").shape == (9, 6890)
    assert np.load(standin_dir / "J_regressor_h36m.npy").shape == (17, 6890)


def test_mesh_is_one_closed_oriented_surface(model):
    faces = model.faces.astype(np.int64)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    directed = {tuple(e) for e in edges.tolist()}
    # Each directed edge occurs once and its reverse once: closed, manifold, consistently oriented.
    assert len(directed) == len(edges)
    assert all((b, a) in directed for a, b in directed)
    num_edges = len(edges) // 2
    assert 6890 - num_edges + 13776 == 2  # Euler characteristic of a sphere
    graph = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(6890, 6890))
    assert connected_components(graph, directed=False)[0] == 1
    v = model.v_template
    areas = 0.5 * np.linalg.norm(np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]]), axis=1)
    assert areas.min() > 1e-8


def test_human_proportions_at_smpl_scale(model):
    v = model.v_template
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.6 < height < 1.85
    assert np.linalg.norm(REST_JOINTS[0]) < 0.25  # pelvis near the origin, as in SMPL
    assert v[:, 1].argmax() in np.flatnonzero(model.part_of_vertex == model.part_names.index("head"))
    arm_span = v[:, 0].max() - v[:, 0].min()
    assert 0.9 * height < arm_span < 1.15 * height  # T-pose: arm span close to height
    np.testing.assert_allclose(v[:, 0].max(), -v[:, 0].min(), atol=1e-12)  # left/right symmetric


def test_joint_regressor_lands_on_joint_centres(model, smpl_dict):
    np.testing.assert_allclose(model.j_regressor @ model.v_template, REST_JOINTS, atol=1e-9)
    np.testing.assert_allclose(model.j_regressor.sum(axis=1), 1.0, atol=1e-9)  # affine: follows translation
    np.testing.assert_allclose(smpl_dict["J"], REST_JOINTS, atol=1e-9)


def test_landmark_regressors_are_plausible(model):
    extra = model.j_regressor_extra @ model.v_template  # joints 45..53
    r_hip, l_hip, neck, head_top, pelvis, thorax, spine, jaw, head = extra
    assert r_hip[0] < 0 < l_hip[0]
    assert pelvis[1] < spine[1] < thorax[1] < neck[1] < jaw[1] < head[1] < head_top[1]
    assert head_top[1] > 0.5
    h36m = model.j_regressor_h36m @ model.v_template  # raw H36M rows
    assert h36m[1, 0] > 0 and h36m[4, 0] < 0  # rows 1-3 left leg, 4-6 right leg
    assert h36m[3, 1] < h36m[2, 1] < h36m[1, 1]  # ankle below knee below hip
    assert h36m[13, 0] > h36m[12, 0] > h36m[11, 0] > 0  # left arm: wrist, elbow, shoulder outwards
    j17 = h36m[[6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9]]  # ROMP's H36M_TO_J17
    assert j17[0, 0] < 0 and j17[0, 1] < -1.0  # LSP order starts with the right ankle


def test_extra_joint_vertices_sit_at_their_landmarks(model):
    p = {name: model.v_template[index] for name, index in EXTRA_JOINT_VERTEX_IDS.items()}
    neck, l_wrist = REST_JOINTS[12], REST_JOINTS[20]
    assert p["nose"][1] > neck[1] and p["nose"][2] > p["leye"][2]  # nose above the neck, sticks out
    assert p["leye"][0] > 0 > p["reye"][0] and p["leye"][1] > p["nose"][1]
    assert p["lear"][0] > p["leye"][0] and p["rear"][0] < p["reye"][0]
    for side, sign in (("L", 1), ("R", -1)):
        assert p[f"{side}BigToe"][2] > p[f"{side}Heel"][2] + 0.2  # toes in front of the heel
        assert sign * p[f"{side}SmallToe"][0] > sign * p[f"{side}BigToe"][0]  # small toe on the outside
        assert p[f"{side}Heel"][1] < -1.1
    tips = np.stack([p[f"l{f}"] for f in ("thumb", "index", "middle", "ring", "pinky")])
    assert (tips[:, 0] > l_wrist[0]).all()
    assert tips[0, 2] == tips[:, 2].max()  # palms down in the T-pose: the thumb points forward
    assert tips[2, 0] == tips[:, 0].max()  # the middle finger reaches furthest


def test_skinning_weights_are_a_partition_of_unity(model):
    w = model.weights
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    left_index_tip = EXTRA_JOINT_VERTEX_IDS["lindex"]
    assert w[left_index_tip, [20, 22]].sum() == pytest.approx(1.0)  # follows the left wrist / hand only


def test_generation_is_deterministic_and_seed_only_moves_seeded_shapes(tmp_path: Path, standin_dir: Path):
    out = write_standin(tmp_path / "again")
    for name in ("SMPL_NEUTRAL.pkl", "J_regressor_extra.npy", "J_regressor_h36m.npy"):
        assert (out / name).read_bytes() == (standin_dir / name).read_bytes(), name
    first, other = build_standin(seed=0), build_standin(seed=1)
    np.testing.assert_array_equal(first.v_template, other.v_template)
    np.testing.assert_array_equal(first.shapedirs[..., :6], other.shapedirs[..., :6])
    assert not np.array_equal(first.shapedirs[..., 6:], other.shapedirs[..., 6:])


def test_never_overwrites_a_real_smpl_folder(tmp_path: Path):
    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(b"licensed")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_standin(tmp_path)
    assert (tmp_path / "SMPL_NEUTRAL.pkl").read_bytes() == b"licensed"
    assert not standin_is_complete(tmp_path)


def test_command_line_writes_the_folder(tmp_path: Path, capsys):
    assert main([str(tmp_path / "cli")]) == 0
    assert standin_is_complete(tmp_path / "cli")
    assert "NOT SMPL" in capsys.readouterr().out
