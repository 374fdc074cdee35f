"""Joint orders and mappings, checked against ROMP's listings (romp/lib/constants.py as documented)."""

import numpy as np
import pytest
import torch

from romp_hydra.body import joint_sets as js
from romp_hydra.geometry.rotations import flip_smpl_pose_np

# ROMP's literal All54_flip.
ROMP_ALL54_FLIP = [
    0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22,
    24, 26, 25, 28, 27, 32, 33, 34, 29, 30, 31, 40, 41, 42, 43, 44, 35, 36, 37, 38, 39,
    46, 45, 47, 48, 49, 50, 51, 52, 53,
]  # fmt: skip
ROMP_SMPL_JOINTS_FLIP_PERM = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20]

# Source index -> 54 index, as listed for ROMP's name-based joint_mapping. Unlisted source joints are unused.
EXPECTED_TO_54 = {
    "coco_17": {0: 24, 1: 26, 2: 25, 3: 28, 4: 27, 5: 16, 6: 17, 7: 18, 8: 19, 9: 20, 10: 21, 11: 46, 12: 45,
                13: 4, 14: 5, 15: 7, 16: 8},
    "coco_18": {0: 24, 1: 12, 2: 17, 3: 19, 4: 21, 5: 16, 6: 18, 7: 20, 8: 45, 9: 5, 10: 8, 11: 46, 12: 4,
                13: 7, 14: 25, 15: 26, 16: 27, 17: 28},
    "mpii_16": {0: 8, 1: 5, 2: 45, 3: 46, 4: 4, 5: 7, 6: 49, 7: 50, 8: 12, 9: 48, 10: 21, 11: 19, 12: 17,
                13: 16, 14: 18, 15: 20},
    "lsp_14": {0: 8, 1: 5, 2: 45, 3: 46, 4: 4, 5: 7, 6: 21, 7: 19, 8: 17, 9: 16, 10: 18, 11: 20, 12: 47,
               13: 48},
    "crowdpose_14": {0: 16, 1: 17, 2: 18, 3: 19, 4: 20, 5: 21, 6: 46, 7: 45, 8: 4, 9: 5, 10: 7, 11: 8,
                     12: 48, 13: 47},
    "h36m_32": {1: 45, 2: 5, 3: 8, 4: 32, 5: 33, 6: 46, 7: 4, 8: 7, 9: 29, 10: 30, 11: 49, 12: 51, 14: 52,
                15: 53, 17: 16, 18: 18, 19: 20, 24: 12, 25: 17, 26: 19, 27: 21},
    "mpi_inf_28": {4: 49, 5: 12, 6: 53, 7: 48, 9: 16, 10: 18, 11: 20, 12: 22, 14: 17, 15: 19, 16: 21, 17: 23,
                   18: 46, 19: 4, 20: 7, 21: 30, 22: 29, 23: 45, 24: 5, 25: 8, 26: 33, 27: 32},
    "mpi_inf_test_17": {1: 47, 2: 17, 3: 19, 4: 21, 5: 16, 6: 18, 7: 20, 8: 45, 9: 5, 10: 8, 11: 46, 12: 4,
                        13: 7, 14: 49},
    "mupots_17": {0: 48, 1: 12, 2: 17, 3: 19, 4: 21, 5: 16, 6: 18, 7: 20, 8: 45, 9: 5, 10: 8, 11: 46, 12: 4,
                  13: 7, 14: 49, 15: 50, 16: 53},
    "muco_21": {0: 48, 2: 17, 3: 19, 4: 21, 5: 16, 6: 18, 7: 20, 8: 45, 9: 5, 10: 8, 11: 46, 12: 4, 13: 7,
                14: 49, 16: 53, 17: 23, 18: 22, 19: 32, 20: 29},
    # ROMP: 0 Nose, 1 Neck, 5..16 as COCO; 2 (head top) dropped by a dict-key collision. We also map the head
    # top (documented difference) and the never-annotated ears.
    "posetrack_17": {0: 24, 1: 12, 2: 48, 3: 28, 4: 27, 5: 16, 6: 17, 7: 18, 8: 19, 9: 20, 10: 21, 11: 46,
                     12: 45, 13: 4, 14: 5, 15: 7, 16: 8},
    "smpl_24": {i: i for i in range(24)},
}  # fmt: skip


def expected_mapping(table: dict[int, int]) -> np.ndarray:
    mapping = np.full(54, -1, dtype=np.int64)
    for src_index, index54 in table.items():
        mapping[index54] = src_index
    return mapping


def test_the_54_joint_order():
    assert len(js.SMPL_ALL_54) == js.NUM_JOINTS_54 == 54
    assert len(set(js.SMPL_ALL_54)) == 54
    spot_checks = {0: "Pelvis_SMPL", 12: "Neck", 15: "Jaw", 23: "R_Hand", 24: "Nose", 29: "L_BigToe",
                   34: "R_Heel", 35: "L_Hand_thumb", 44: "R_Hand_pinky", 45: "R_Hip", 46: "L_Hip",
                   47: "Neck_LSP", 48: "Head_top", 49: "Pelvis", 50: "Thorax_MPII", 51: "Spine_H36M",
                   52: "Jaw_H36M", 53: "Head"}  # fmt: skip
    for index, name in spot_checks.items():
        assert js.SMPL_ALL_54[index] == name
        assert js.JOINT54[name] == index
    assert js.SMPL_ALL_54[:24] == js.SMPL_24


def test_flip54_equals_romps_listing_and_is_an_involution():
    assert list(js.FLIP54) == ROMP_ALL54_FLIP
    flip = np.array(js.FLIP54)
    np.testing.assert_array_equal(flip[flip], np.arange(54))


def test_flipping_54_keypoints_twice_is_identity():
    width = 512.0
    kps = np.random.default_rng(0).uniform(0, width, size=(54, 2))

    def flip_kps(points: np.ndarray) -> np.ndarray:
        flipped = points[list(js.FLIP54)].copy()
        flipped[:, 0] = width - flipped[:, 0]
        return flipped

    once = flip_kps(kps)
    np.testing.assert_array_equal(once[js.JOINT54["L_Wrist"]], [width - kps[21, 0], kps[21, 1]])
    np.testing.assert_array_equal(flip_kps(once), kps)


def test_smpl_flip_permutations():
    assert list(js.SMPL_POSE_FLIP_PERM) == ROMP_SMPL_JOINTS_FLIP_PERM
    assert list(js.SMPL24_FLIP_PERM) == ROMP_SMPL_JOINTS_FLIP_PERM + [23, 22]
    assert tuple(js.FLIP54[:24]) == js.SMPL24_FLIP_PERM


@pytest.mark.parametrize("num_joints", [22, 24])
def test_geometry_pose_flip_uses_the_same_permutation(num_joints):
    # Joint i carries x = i, so after the flip the x components spell out the permutation.
    pose = np.zeros((num_joints, 3))
    pose[:, 0] = np.arange(num_joints)
    flipped = flip_smpl_pose_np(pose.reshape(-1)).reshape(num_joints, 3)
    np.testing.assert_array_equal(flipped[:, 0], js.SMPL24_FLIP_PERM[:num_joints])


@pytest.mark.parametrize("set_name", sorted(EXPECTED_TO_54))
def test_mapping_to_54_matches_romps_listing(set_name):
    np.testing.assert_array_equal(js.map_to_54(set_name), expected_mapping(EXPECTED_TO_54[set_name]))


def test_spot_mappings_from_the_facts():
    assert js.map_to_54(js.COCO_17)[20] == 9  # COCO L_Wrist(9) -> 20
    assert js.map_to_54(js.LSP_14)[47] == 12  # LSP Neck_LSP(12) -> 47
    assert js.map_to_54(js.MPII_16)[50] == 7  # MPII thorax -> 50
    assert js.map_to_54(js.H36M_32)[21] == 27  # H36M_32 index 27 -> 21


def test_aich_matches_romps_route_through_lsp():
    # ROMP: AIC -> LSP with kp_map (lsp[i] = aic[kp_map[i]]), then LSP -> 54.
    aic_to_lsp = np.array([8, 7, 6, 9, 10, 11, 2, 1, 0, 3, 4, 5, 13, 12])
    lsp_to_54 = js.map_to_54(js.LSP_14)
    via_lsp = np.where(lsp_to_54 >= 0, aic_to_lsp[lsp_to_54], -1)
    np.testing.assert_array_equal(js.map_to_54(js.AICH_14), via_lsp)
    assert [js.AICH_14[i] for i in aic_to_lsp] == list(js.LSP_14)


def test_h36m17_orders():
    assert js.H36M_17[:12] == js.LSP_14[:12]
    assert js.H36M_17[12:] == ("Neck", "Head", "Pelvis", "Spine_H36M", "Jaw_H36M")
    assert tuple(js.H36M_17_STANDARD[i] for i in js.H36M_TO_J17) == js.H36M_17
    assert sorted(js.H36M_TO_J17) == list(range(17))
    # ROMP's H36M_17 dict: Pelvis 0, L_Hip 1, L_Knee 2, L_Ankle 3, R_Hip 4, R_Knee 5, R_Ankle 6,
    # Spine_H36M 7, Neck 8, Jaw_H36M 9, Head 10, L_Shoulder 11, L_Elbow 12, L_Wrist 13, R_Shoulder 14,
    # R_Elbow 15, R_Wrist 16.
    assert js.H36M_17_STANDARD[1] == "L_Hip" and js.H36M_17_STANDARD[6] == "R_Ankle"
    assert js.H36M_17_STANDARD[8] == "Neck" and js.H36M_17_STANDARD[10] == "Head"


def test_cmup_j24_is_consistent_with_romps_j24_to_h36m():
    converted = [js.CMUP_J24[i] for i in js.CMUP_J24_TO_H36M17]
    for position, (got, expected) in enumerate(zip(converted, js.H36M_17_STANDARD)):
        if position == 8:  # SPIN/CRMH pair the LSP neck with the regressor's neck
            assert (got, expected) == ("Neck_LSP", "Neck")
        else:
            assert got == expected
    # ROMP's 2D route: H36M_TO_LSP = J24_TO_H36M[[6,5,4,1,2,3,16,15,14,11,12,13,8,10]] -> J24 0..12 then 18.
    j24_to_lsp = np.array(js.CMUP_J24_TO_H36M17)[[6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]]
    np.testing.assert_array_equal(j24_to_lsp, list(range(13)) + [18])
    assert js.map_to_54(js.CMUP_J24)[js.JOINT54["Neck_LSP"]] == 12


def test_every_name_is_in_the_54_set_or_deliberately_unmapped():
    unmapped = {
        "h36m_32": {0, 13, 16, 20, 21, 22, 23, 28, 29, 30, 31},
        "mpi_inf_28": {0, 1, 2, 3, 8, 13},
        "mpi_inf_test_17": {0, 15, 16},
        "muco_21": {1, 15},
    }
    for set_name, names in js.JOINT_SETS.items():
        assert len(set(names)) == len(names), f"duplicate names in {set_name}"
        missing = {i for i, name in enumerate(names) if name not in js.JOINT54}
        assert missing == unmapped.get(set_name, set()), set_name


def test_every_joint_set_is_closed_under_left_right_mirroring():
    for set_name, names in js.JOINT_SETS.items():
        perm = js.flip_permutation(names)  # raises if a counterpart is missing
        assert sorted(perm) == list(range(len(names))), set_name


def test_joint_mapping_rejects_duplicate_source_names_and_unknown_sets():
    with pytest.raises(ValueError, match="appears twice"):
        js.map_to_54(("Nose", "Nose"))
    with pytest.raises(KeyError, match="unknown joint set"):
        js.map_to_54("coco_19")


def test_convert_to_54_numpy_hand_case():
    kps = np.stack([np.arange(17.0), 10 + np.arange(17.0), np.ones(17)], axis=-1)[None]  # [1, 17, 3]
    out = js.convert_to_54(kps, "coco_17")
    assert out.shape == (1, 54, 3) and out.dtype == np.float64
    np.testing.assert_array_equal(out[0, 20], [9.0, 19.0, 1.0])  # COCO L_Wrist -> 20
    np.testing.assert_array_equal(out[0, 45], [12.0, 22.0, 1.0])  # COCO R_Hip -> 45
    np.testing.assert_array_equal(out[0, 0], [-2.0, -2.0, -2.0])  # SMPL pelvis is not in COCO
    assert (out[0] == -2).all(axis=-1).sum() == 54 - 17


def test_convert_to_54_torch_leading_dims_and_fill():
    kps = torch.arange(2 * 3 * 14 * 2, dtype=torch.float32).reshape(2, 3, 14, 2)
    out = js.convert_to_54(kps, js.LSP_14, fill=-10.0)
    assert out.shape == (2, 3, 54, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out[1, 2, 47], kps[1, 2, 12])
    assert (out[..., 0, :] == -10).all()
    # Converting and selecting the evaluation joints gives back the LSP input.
    torch.testing.assert_close(js.select_lsp14(out), kps)


def test_convert_to_54_integer_input_becomes_float_and_shape_is_checked():
    out = js.convert_to_54(np.ones((14, 2), dtype=np.int64), "lsp_14")
    assert out.dtype == np.float32 and out.shape == (54, 2)
    with pytest.raises(ValueError, match=r"\[\.\.\., 17, D\]"):
        js.convert_to_54(np.zeros((2, 14, 2)), "coco_17")


def test_root_torso_and_eval_joints():
    assert js.ROOT_JOINTS == (45, 46)
    assert js.TORSO_JOINTS == (12, 47, 17, 16, 49, 45, 46)
    assert js.LSP14_FROM_54 == (8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48)
    joints = np.arange(54 * 3).reshape(54, 3)
    np.testing.assert_array_equal(js.select_lsp14(joints)[12], joints[47])
    with pytest.raises(ValueError, match=r"\[\.\.\., 54, D\]"):
        js.select_lsp14(np.zeros((24, 3)))


def test_skeleton_is_valid_and_mirror_symmetric():
    edges = js.SKELETON_54
    assert len(edges) == len(set(edges)) == len(js.SKELETON_54_SIDES)
    assert all(0 <= p < 54 and 0 <= c < 54 and p != c for p, c in edges)
    assert {j for edge in edges for j in edge} == set(range(54))  # every joint is drawn
    # SMPL kinematic tree is included.
    assert (9, 13) in edges and (0, 1) in edges and (20, 22) in edges
    # Mirroring maps the skeleton onto itself with sides swapped.
    side_of = dict(zip(edges, js.SKELETON_54_SIDES))
    swap = {"left": "right", "right": "left", "centre": "centre"}
    for (parent, child), side in side_of.items():
        mirrored = (js.FLIP54[parent], js.FLIP54[child])
        assert mirrored in side_of
        assert side_of[mirrored] == swap[side]
    assert side_of[(js.JOINT54["L_Wrist"], js.JOINT54["L_Hand_thumb"])] == "left"
    assert side_of[(js.JOINT54["Neck_LSP"], js.JOINT54["R_Shoulder"])] == "right"
    assert side_of[(js.JOINT54["Neck_LSP"], js.JOINT54["Head_top"])] == "centre"
