import math

import pytest
import torch

from romp_hydra.geometry.procrustes import similarity_procrustes
from romp_hydra.geometry.rotations import axis_angle_to_rotmat


def make_similarity_problem(batch: int, joints: int = 14, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    source = torch.randn(batch, joints, 3, generator=gen, dtype=torch.float64)
    axis_angle = torch.nn.functional.normalize(
        torch.randn(batch, 3, generator=gen, dtype=torch.float64), dim=-1
    )
    axis_angle = axis_angle * torch.linspace(0.3, math.pi - 0.2, batch, dtype=torch.float64)[:, None]
    rotation = axis_angle_to_rotmat(axis_angle)
    scale = torch.linspace(0.5, 2.0, batch, dtype=torch.float64)
    translation = torch.randn(batch, 3, generator=gen, dtype=torch.float64)
    target = scale[:, None, None] * source @ rotation.transpose(1, 2) + translation[:, None]
    return source, target, scale, rotation, translation


@pytest.mark.parametrize("batch", [1, 2, 3, 5])
@pytest.mark.parametrize("joints", [3, 14])
def test_recovers_a_known_similarity_transform(batch, joints):
    # Batches of 2 and 3 (and 3 joints) are where ROMP's shape-based transposition went wrong.
    source, target, scale, rotation, translation = make_similarity_problem(batch, joints, seed=batch)
    aligned, est_scale, est_rotation, est_translation = similarity_procrustes(source, target)
    torch.testing.assert_close(aligned, target)
    torch.testing.assert_close(est_scale, scale)
    torch.testing.assert_close(est_rotation, rotation)
    torch.testing.assert_close(est_translation, translation)


def test_each_batch_element_is_aligned_independently():
    source, target, *_ = make_similarity_problem(5, seed=11)
    batched = similarity_procrustes(source, target)[0]
    for i in range(5):
        single = similarity_procrustes(source[i : i + 1], target[i : i + 1])[0]
        torch.testing.assert_close(batched[i : i + 1], single)


def test_masked_joints_are_excluded_from_the_fit_but_still_transformed():
    source, target, scale, rotation, translation = make_similarity_problem(3, seed=4)
    mask = torch.ones(3, 14, dtype=torch.bool)
    mask[:, [0, 5, 9]] = False
    mask[2, 13] = False
    corrupted = target.clone()
    corrupted[~mask] = 100.0  # garbage where the ground truth is missing
    aligned, est_scale, est_rotation, est_translation = similarity_procrustes(source, corrupted, mask)
    torch.testing.assert_close(aligned, target)  # masked joints land where they truly belong
    torch.testing.assert_close(est_scale, scale)
    torch.testing.assert_close(est_rotation, rotation)
    torch.testing.assert_close(est_translation, translation)
    # Without the mask the garbage pulls the fit away.
    assert not torch.allclose(similarity_procrustes(source, corrupted)[0], target, atol=1e-3)


def test_reflection_is_never_returned():
    source, *_ = make_similarity_problem(2, seed=8)
    mirrored = source * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    _, _, rotation, _ = similarity_procrustes(source, mirrored)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(2, dtype=torch.float64))


def test_degenerate_inputs_give_identity_without_nan():
    source, target, *_ = make_similarity_problem(3, seed=2)
    source[0] = 0.0  # all-zero prediction
    target[1] = 0.0  # all-zero ground truth
    source.requires_grad_(True)
    mask = torch.ones(3, 14, dtype=torch.bool)
    aligned, scale, rotation, translation = similarity_procrustes(source, target, mask)
    assert torch.isfinite(aligned).all()
    torch.testing.assert_close(aligned[:2], source[:2].detach())
    torch.testing.assert_close(scale[:2], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(rotation[:2], torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    torch.testing.assert_close(translation[:2], torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(aligned[2], target[2])  # the healthy element is unaffected
    (aligned - target).norm(dim=-1).mean().backward()
    assert torch.isfinite(source.grad).all()


def test_fully_masked_element_is_returned_unchanged():
    source, target, *_ = make_similarity_problem(2, seed=6)
    mask = torch.ones(2, 14, dtype=torch.bool)
    mask[1] = False
    aligned = similarity_procrustes(source, target, mask)[0]
    torch.testing.assert_close(aligned[1], source[1])
    torch.testing.assert_close(aligned[0], target[0])


def test_float32_in_float32_out_and_half_in_float32_out():
    source, target, *_ = make_similarity_problem(2, seed=3)
    outputs = similarity_procrustes(source.float(), target.float())
    assert all(t.dtype == torch.float32 for t in outputs)
    torch.testing.assert_close(outputs[0], target.float(), atol=1e-5, rtol=1e-5)
    assert similarity_procrustes(source.half(), target.half())[0].dtype == torch.float32


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\[B, J, 3\]"):
        similarity_procrustes(torch.zeros(14, 3), torch.zeros(14, 3))
    with pytest.raises(ValueError, match="must equal source shape"):
        similarity_procrustes(torch.zeros(2, 14, 3), torch.zeros(2, 13, 3))
    with pytest.raises(ValueError, match="mask must have shape"):
        similarity_procrustes(torch.zeros(2, 14, 3), torch.zeros(2, 14, 3), torch.ones(14, dtype=torch.bool))


def test_autocast_does_not_lower_the_precision():
    source, target, *_ = make_similarity_problem(3, seed=12)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        aligned = similarity_procrustes(source.float(), target.float())[0]
    assert aligned.dtype == torch.float32
    torch.testing.assert_close(aligned, target.float(), atol=1e-5, rtol=1e-5)
