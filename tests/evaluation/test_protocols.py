"""Protocols: which rows are compared, the alignment root, config errors, the spelled-out description."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from romp_hydra.body.joint_sets import JOINT54
from romp_hydra.config.errors import ConfigError
from romp_hydra.evaluation.protocols import Protocol, protocol_from_config
from tests.conftest import CONF_DIR


def test_3dpw_compares_lsp14_with_the_regressors_first_14_rows_on_the_hips():
    comparison = Protocol(joints="lsp14", pred_joints="h36m17").comparison()
    assert comparison.pred_key == "joints_h36m17" and comparison.pred_index == tuple(range(14))
    # LSP-14 order: R_Ankle, R_Knee, R_Hip, L_Hip, ..., Neck_LSP, Head_top
    assert comparison.gt_index[:4] == (JOINT54["R_Ankle"], JOINT54["R_Knee"], 45, 46)
    assert comparison.gt_index[12:] == (47, 48)
    assert comparison.root == (2, 3) and comparison.root_names == ("R_Hip", "L_Hip")


def test_cmu_panoptic_aligns_on_row_14_of_romps_h36m_order():
    comparison = Protocol(joints="h36m17", pred_joints="h36m17").comparison()
    assert comparison.root == (14,) and comparison.root_names == ("Pelvis",)
    assert comparison.pred_index == tuple(range(17))
    assert comparison.gt_index[14] == JOINT54["Pelvis"] == 49
    assert comparison.gt_index[:3] == (JOINT54["R_Ankle"], JOINT54["R_Knee"], JOINT54["R_Hip"])


def test_mpi_sets_keep_the_joints_the_54_set_has():
    mupots = Protocol(joints="mupots17", pred_joints="joints54").comparison()
    assert len(mupots.names) == 17 and mupots.pred_index == mupots.gt_index
    assert mupots.gt_index[0] == JOINT54["Head_top"] and mupots.root == (14,)
    mpiinf = Protocol(joints="mpiinf17", pred_joints="joints54").comparison()
    # The misaligned head top, thorax and head of the MPI-INF-3DHP test set have no row in our 54 joints.
    assert len(mpiinf.names) == 14 and "Head_top" not in mpiinf.names
    assert mpiinf.names[mpiinf.root[0]] == "Pelvis"


@pytest.mark.parametrize(
    ("settings", "key", "text"),
    [
        ({"joints": "lsp17"}, "protocol.joints", "lsp14"),
        ({"joints": "mupots17", "pred_joints": "h36m17"}, "protocol.pred_joints", "Head_top"),
        ({"joints": "smpl54", "pred_joints": "h36m17"}, "protocol.pred_joints", "joints54"),
        ({"metrics": ["mpjpe", "mpvpe"]}, "protocol.metrics", "mpvpe"),
        ({"group_pattern": "TS\\d+"}, "protocol.group_pattern", "capture group"),
        ({"mathcing": "gt_center"}, "protocol.mathcing", "not a protocol setting"),
    ],
)
def test_bad_settings_name_the_key(settings, key, text):
    with pytest.raises(ConfigError, match=text) as info:
        Protocol.from_mapping(settings)
    assert info.value.key == key


def test_validation_errors_name_the_val_node():
    with pytest.raises(ConfigError) as info:
        Protocol.from_mapping({"matching": "closest"}, where="val.protocol")
    assert info.value.key == "val.protocol.matching"


@pytest.mark.parametrize(
    "name",
    [
        "3dpw_p2",
        "cmup",
        "mupots_pck",
        "mpiinf_pck",
        "crowdpose_ap",
        "synthetic",
        "pw3d_test",
        "mupots",
        "mpiinf_test",
        "crowdpose_val",
        "crowdpose_test",
    ],
)
def test_every_protocol_config_builds(name):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("evaluate", overrides=["ckpt_path=x.pt", f"protocol={name}"])
    protocol = protocol_from_config(cfg.protocol)
    described = protocol.describe()
    assert described["name"] == protocol.name and all(isinstance(v, str) for v in described.values())


def test_dataset_picks_its_protocol():
    chosen = {}
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        for dataset in ("pw3d_test", "cmup", "mupots", "mpiinf_test", "crowdpose_val", "synthetic"):
            cfg = compose("evaluate", overrides=["ckpt_path=x.pt", f"dataset={dataset}"])
            chosen[dataset] = cfg.protocol.name
    assert chosen == {
        "pw3d_test": "3dpw_p2",
        "cmup": "cmup",
        "mupots": "mupots_pck",
        "mpiinf_test": "mpiinf_pck",
        "crowdpose_val": "crowdpose_ap",
        "synthetic": "synthetic",
    }


def test_description_spells_out_joints_alignment_and_matching():
    described = Protocol.from_mapping(
        OmegaConf.create({"joints": "h36m17", "matching": "gt_center"})
    ).describe()
    assert described["joints"].startswith("h36m17: 17 joints (R_Ankle, R_Knee")
    assert described["alignment"].startswith("Pelvis moved to the origin")
    assert "own centre cell" in described["matching"]
