"""GMM pose prior on a tiny hand-made 2-component mixture."""

import math
import pickle
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from romp_hydra.losses import prior as prior_module
from romp_hydra.losses.prior import MaxMixturePrior, build_pose_prior, load_gmm, pose_prior_loss

DIM = 69
WEIGHTS = (0.7, 0.3)
VARIANCES = (1.0, 4.0)  # isotropic covariances: Sigma_k = v_k * I
MEANS = (0.0, 1.0)  # every coordinate


@pytest.fixture
def gmm_file(tmp_path):
    content = {
        "means": np.stack([np.full(DIM, m) for m in MEANS]),
        "covars": np.stack([v * np.eye(DIM) for v in VARIANCES]),
        "weights": np.array(WEIGHTS),
    }
    path = tmp_path / "gmm_tiny.pkl"
    with path.open("wb") as handle:
        pickle.dump(content, handle)
    return path


def _hand_nll(value):
    """Closed form for a pose whose 69 coordinates all equal ``value`` (hands included)."""
    min_half_logdet = min(0.5 * DIM * math.log(v) for v in VARIANCES)
    per_component = []
    for mean, var, weight in zip(MEANS, VARIANCES, WEIGHTS):
        quadratic = DIM * (value - mean) ** 2 / var
        relative_sqrt_det = 0.5 * DIM * math.log(var) - min_half_logdet
        log_norm = math.log(weight) - 0.5 * DIM * math.log(2 * math.pi) - relative_sqrt_det
        per_component.append(0.5 * quadratic - log_norm)
    return min(per_component)


def test_prior_values_match_closed_form(gmm_file):
    prior = MaxMixturePrior.from_file(gmm_file)
    # Hand joints are filled with 0, so use value 0 (all coordinates equal) for an exact comparison.
    nll = prior(torch.zeros(1, 63))
    assert nll.item() == pytest.approx(_hand_nll(0.0), rel=1e-5)
    full = prior(torch.full((1, 69), 10.0))
    assert full.item() == pytest.approx(_hand_nll(10.0), rel=1e-5)
    assert _hand_nll(10.0) / 100 > 5  # the second component wins there and the batch term is active


def test_prior_loss_threshold_acts_on_batch_mean(gmm_file):
    prior = MaxMixturePrior(*load_gmm(gmm_file))
    plausible = torch.zeros(1, 69)
    implausible = torch.full((1, 69), 10.0)
    assert pose_prior_loss(prior, plausible).item() == 0.0
    assert pose_prior_loss(prior, implausible).item() == pytest.approx(_hand_nll(10.0) / 100, rel=1e-5)
    # Mixed batch: the mean is below 5 although one person alone would be above.
    mixed = torch.cat([plausible, implausible])
    assert (_hand_nll(0.0) + _hand_nll(10.0)) / 200 < 5
    assert pose_prior_loss(prior, mixed).item() == 0.0

    pose = implausible.clone().requires_grad_(True)
    pose_prior_loss(prior, pose).backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0


def test_missing_file_turns_prior_off_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(prior_module, "_warned_paths", set())
    missing = tmp_path / "gmm_08.pkl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert build_pose_prior(missing) is None
        assert build_pose_prior(missing) is None
    assert len(caught) == 1 and str(missing) in str(caught[0].message)


def test_chumpy_arrays_load_without_chumpy(tmp_path, monkeypatch):
    # Pickle the mixture with its arrays wrapped in a stand-in ``chumpy.ch.Ch`` (state {'x': array}),
    # then make sure no chumpy module is importable when loading.
    fake_chumpy, fake_ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    fake_ch.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", fake_chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", fake_ch)
    content = {
        "means": Ch(np.zeros((2, DIM))),
        "covars": Ch(np.stack([np.eye(DIM)] * 2)),
        "weights": np.array(WEIGHTS),
    }
    path = tmp_path / "gmm_chumpy.pkl"
    path.write_bytes(pickle.dumps(content))
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")

    means, covars, weights = load_gmm(path)
    assert means.shape == (2, DIM) and covars.shape == (2, DIM, DIM) and weights.tolist() == list(WEIGHTS)


def test_unexpected_pickle_content_is_refused_with_the_converter_hint(tmp_path):
    path = tmp_path / "gmm_bad.pkl"
    path.write_bytes(pickle.dumps({"means": print}))  # names builtins.print: never executed
    with pytest.raises(ValueError, match="romp_hydra.body.convert"):
        load_gmm(path)


def test_buffers_stay_out_of_state_dict(gmm_file):
    assert MaxMixturePrior.from_file(gmm_file).state_dict() == {}
