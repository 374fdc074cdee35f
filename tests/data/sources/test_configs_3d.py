"""The conf/source and conf/dataset files of the 3D / video / evaluation sources build their classes."""

from __future__ import annotations

import pytest

from romp_hydra.data.loader import instantiate_source

# dataset config -> (member key, folder under paths.data_dir, class name, split)
CONFIGS = {
    "h36m": ("h36m", "h36m", "H36M", "train"),
    "mpiinf": ("mpiinf", "mpi_inf_3dhp", "MPIINF3DHP", "train"),
    "mpiinf_val": ("mpiinf_val", "mpi_inf_3dhp", "MPIINF3DHP", "val"),
    "mpiinf_test": ("mpiinf_test", "mpi_inf_3dhp/mpi_inf_3dhp_test_set", "MPIINF3DHPTest", "test"),
    "muco": ("muco", "MuCo", "MuCo", "train"),
    "mupots": ("mupots", "MultiPersonTestSet", "MuPoTS", "test"),
    "pw3d": ("pw3d", "3DPW", "PW3D", "train"),
    "pw3d_test": ("pw3d", "3DPW", "PW3D", "test"),
    "cmup": ("cmup", "cmu_panoptic", "CMUPanoptic", "test"),
}


@pytest.mark.parametrize("dataset", sorted(CONFIGS))
def test_config_builds_the_source(dataset, compose_cfg, tmp_path):
    key, folder, class_name, split = CONFIGS[dataset]
    (tmp_path / folder).mkdir(parents=True)
    cfg = compose_cfg(
        [f"dataset={dataset}", f"paths.data_dir={tmp_path}", f"paths.smpl_dir={tmp_path / 'smpl'}"],
        config_name="pack",
    )
    source = instantiate_source(key, cfg.dataset.members[key])
    assert type(source).__name__ == class_name
    assert source.key == key and source.split == split and source.root == tmp_path / folder
    if dataset == "pw3d_test":
        assert source.gt_source == "vibe"
