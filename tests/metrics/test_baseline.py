"""The mean baseline: the mean of SMPL parameters, and a stand-in network that predicts it at every cell."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from romp_hydra.body.smpl import BodyModel
from romp_hydra.body.standin import standin_is_complete, write_standin
from romp_hydra.metrics.baseline import MeanParamsNetwork, mean_smpl_params, params_from_sources
from romp_hydra.models.parser import Selection, sample_params
from romp_hydra.models.predictor import Predictor


def _params(orient_deg, knee_deg=0.0, betas=0.0):
    row = np.zeros(76, np.float32)
    row[:3] = Rotation.from_euler("y", orient_deg, degrees=True).as_rotvec()
    row[3 + 3 * 3] = np.deg2rad(knee_deg)  # SMPL joint 4 (L_Knee), x component
    row[66:] = betas
    return row


def test_mean_is_the_rotation_average_and_skips_rows_without_parameters():
    params = np.stack([_params(30, 40, 1.0), _params(-30, 60, -0.5), np.full(76, -10, np.float32)])
    mean = mean_smpl_params(params)
    np.testing.assert_allclose(mean[:3], 0.0, atol=1e-6)  # +30 and -30 degrees of yaw average to none
    np.testing.assert_allclose(np.rad2deg(mean[12]), 50.0, atol=1e-4)  # one axis: the angles average
    np.testing.assert_allclose(mean[66:], 0.25, atol=1e-6)


def test_mean_of_opposite_rotations_is_still_a_rotation():
    params = np.stack([_params(0), _params(180)])  # the chordal mean is defined; a naive axis-angle mean is 0
    mean = mean_smpl_params(params)
    assert np.isfinite(mean).all()
    rotation = Rotation.from_rotvec(mean[:3]).as_matrix()
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)


def test_no_person_with_parameters_is_an_error():
    with pytest.raises(ValueError, match="no person with SMPL parameters"):
        mean_smpl_params(np.full((3, 76), -10.0))


def test_params_from_sources_reads_packed_stores_and_names_the_problem():
    class Store:
        def __init__(self):
            self.arrays = {"params": np.ones((2, 76), np.float32)}

    class Source:
        def __init__(self):
            self.store = Store()

    assert params_from_sources([Source(), object(), Source()]).shape == (4, 76)
    with pytest.raises(ValueError, match="none of the sources"):
        params_from_sources([object()])


def test_network_decodes_to_the_mean_person_at_every_cell(shared_cache_dir: Path):
    model_dir = shared_cache_dir / "standin_smpl"
    if not standin_is_complete(model_dir):
        write_standin(model_dir)
    body_model = BodyModel(model_dir, root_align=False, kind="standin")
    predictor = Predictor(body_model, root_align=True)
    mean = _params(20, 70, 0.5)
    net = MeanParamsNetwork(mean, centermap_size=4)
    maps = net(torch.zeros(2, 3, 32, 32))
    assert maps["center_map"].shape == (2, 1, 4, 4) and (maps["center_map"] < 0).all()  # no detection
    cells = torch.tensor([[0, 0], [3, 2]])
    selection = Selection(batch_idx=torch.tensor([0, 1]), person_idx=torch.tensor([0, 0]), center_yx=cells,
                          score=torch.zeros(2))
    people = predictor(sample_params(maps["params_maps"], selection), selection)
    t = torch.from_numpy(mean)[None]
    expected = body_model(global_orient=t[:, :3], body_pose=t[:, 3:66], betas=t[:, 66:]).joints54[0]
    expected = expected - expected[[45, 46]].mean(dim=0)
    for person in range(2):
        torch.testing.assert_close(people["joints54"][person], expected, atol=1e-4, rtol=0)
