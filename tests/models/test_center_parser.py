"""Centre parsing, GT matching and parameter sampling on hand-made maps."""

from __future__ import annotations

import pytest
import torch

from romp_hydra.models.parser import Selection, gt_center_cells, match_to_gt, parse, sample_params

C = 8  # map size of the hand-made examples


def cell_center(y: int, x: int) -> list[float]:
    """Normalised (x, y) of the middle of map cell (y, x)."""
    return [(x + 0.5) / C * 2 - 1, (y + 0.5) / C * 2 - 1]


def planted_map() -> torch.Tensor:
    """Image 0: 0.9 at (2,3) with a 0.8 neighbour at (2,4), 0.5 at (6,6), 0.15 at (0,7). Image 1: empty."""
    maps = torch.zeros(2, 1, C, C)
    maps[0, 0, 2, 3] = 0.9
    maps[0, 0, 2, 4] = 0.8  # inside the 5x5 window of (2,3): suppressed
    maps[0, 0, 6, 6] = 0.5
    maps[0, 0, 0, 7] = 0.15  # a peak of its own, but under the 0.2 threshold
    return maps


def test_parse_finds_planted_peaks_not_their_neighbours():
    found = parse(planted_map())
    assert found.center_yx.tolist() == [[2, 3], [6, 6]]
    assert found.batch_idx.tolist() == [0, 0]
    assert found.person_idx.tolist() == [-1, -1]
    torch.testing.assert_close(found.score, torch.tensor([0.9, 0.5]))


def test_parse_threshold_is_exclusive_and_configurable():
    assert parse(planted_map(), threshold=0.1).center_yx.tolist() == [[2, 3], [6, 6], [0, 7]]
    assert parse(planted_map(), threshold=0.5).center_yx.tolist() == [[2, 3]]  # 0.5 is not > 0.5


def test_parse_keeps_top_k_per_image():
    maps = torch.cat([planted_map()[:1], planted_map()[:1]])
    found = parse(maps, top_k=1)
    assert found.batch_idx.tolist() == [0, 1]
    assert found.center_yx.tolist() == [[2, 3], [2, 3]]


def test_parse_never_reports_suppressed_cells_even_with_negative_threshold():
    # A cone with its top (-1) at (4, 4): every other cell has a higher neighbour, so it is no peak
    # although its score (< -1) is above the threshold.
    rows, cols = torch.meshgrid(torch.arange(C), torch.arange(C), indexing="ij")
    maps = (-1.0 - (rows - 4) ** 2 - (cols - 4) ** 2).float().view(1, 1, C, C)
    found = parse(maps, threshold=-10.0)
    assert found.center_yx.tolist() == [[4, 4]]


def test_gt_center_cells_use_x_y_order_skip_missing_and_clamp():
    centers = torch.tensor([[cell_center(7, 2), [-2.0, -2.0], [1.0, -1.0]]])
    person_mask = torch.tensor([[True, True, True]])
    batch_idx, person_idx, cells = gt_center_cells(centers, person_mask, C)
    assert batch_idx.tolist() == [0, 0]
    assert person_idx.tolist() == [0, 2]
    assert cells.tolist() == [[7, 2], [0, C - 1]]  # x = 1.0 -> C, clamped to C - 1


def gt_batch() -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.full((2, 4, 2), -2.0)
    centers[0, 0] = torch.tensor(cell_center(7, 2))  # nearest peak (6,6) (swapping x/y would give (2,3))
    centers[0, 1] = torch.tensor(cell_center(1, 1))  # nearest peak (2,3)
    centers[0, 2] = torch.tensor(cell_center(4, 4))  # valid centre but empty slot: ignored
    centers[1, 0] = torch.tensor(cell_center(3, 3))  # image 1 has no peak: dropped
    person_mask = torch.tensor(
        [[True, True, False, True], [True, False, False, False]]
    )  # [0,3] has centre -2
    return centers, person_mask


def test_nearest_center_matching_on_a_hand_made_case():
    centers, person_mask = gt_batch()
    matched = match_to_gt(planted_map(), centers, person_mask, mode="nearest_center")
    assert matched.batch_idx.tolist() == [0, 0]
    assert matched.person_idx.tolist() == [0, 1]
    assert matched.center_yx.tolist() == [[6, 6], [2, 3]]
    torch.testing.assert_close(matched.score, torch.tensor([0.5, 0.9]))
    assert matched.gt_mask(2, 4).tolist() == [[True, True, False, False], [False, False, False, False]]


def test_nearest_center_ties_go_to_the_stronger_peak_and_peaks_can_be_shared():
    maps = torch.zeros(1, 1, C, C)
    maps[0, 0, 2, 1] = 0.4
    maps[0, 0, 2, 6] = 0.8
    # (2,3) is 2 cells from the weak peak and 3 from the strong one: distance decides, not score.
    centers = torch.tensor([[cell_center(2, 3), cell_center(2, 4), cell_center(3, 7)]])
    matched = match_to_gt(maps, centers, torch.ones(1, 3, dtype=torch.bool))
    assert matched.center_yx.tolist() == [[2, 1], [2, 6], [2, 6]]
    even = torch.zeros(1, 1, C, C)
    even[0, 0, 2, 1], even[0, 0, 2, 5] = 0.4, 0.8
    tie = match_to_gt(even, torch.tensor([[cell_center(2, 3)]]), torch.ones(1, 1, dtype=torch.bool))
    assert tie.center_yx.tolist() == [[2, 5]]  # both 2 cells away: the 0.8 peak wins


def test_gt_center_mode_samples_at_the_gt_cells_and_drops_nobody():
    centers, person_mask = gt_batch()
    matched = match_to_gt(planted_map(), centers, person_mask, mode="gt_center")
    assert matched.batch_idx.tolist() == [0, 0, 1]
    assert matched.person_idx.tolist() == [0, 1, 0]
    assert matched.center_yx.tolist() == [[7, 2], [1, 1], [3, 3]]
    assert matched.score.tolist() == [0.0, 0.0, 0.0]


def test_nothing_detected_gives_an_empty_selection():
    centers, person_mask = gt_batch()
    matched = match_to_gt(torch.zeros(2, 1, C, C), centers, person_mask)
    assert len(matched) == 0
    assert matched.center_yx.shape == (0, 2)
    assert sample_params(torch.rand(2, 145, C, C), matched).shape == (0, 145)


def test_sample_params_reads_the_selected_cells():
    maps = torch.randn(2, 145, C, 6, requires_grad=True)  # non-square, to catch a row/column mix-up
    selection = Selection(
        batch_idx=torch.tensor([1, 0, 1]),
        person_idx=torch.tensor([-1, -1, -1]),
        center_yx=torch.tensor([[7, 5], [0, 0], [3, 1]]),
        score=torch.zeros(3),
    )
    sampled = sample_params(maps, selection)
    assert sampled.shape == (3, 145)
    for row, (b, (y, x)) in enumerate(zip([1, 0, 1], [(7, 5), (0, 0), (3, 1)])):
        assert torch.equal(sampled[row], maps[b, :, y, x])
    sampled.sum().backward()
    assert maps.grad.sum().item() == pytest.approx(3 * 145)


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        parse(torch.zeros(1, C, C))
    with pytest.raises(ValueError, match="nearest_center"):
        match_to_gt(
            torch.zeros(1, 1, C, C), torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.bool), mode="closest"
        )


def test_sampled_parameters_backpropagate_into_the_camera_head(make_tiny_net):
    net = make_tiny_net("hrnet").train()
    out = net(torch.rand(2, 3, 64, 64) * 255)
    centers = torch.tensor([[cell_center(1, 2)], [cell_center(5, 6)]])
    selection = match_to_gt(out["center_map"], centers, torch.ones(2, 1, dtype=torch.bool), mode="gt_center")
    params = sample_params(out["params_maps"], selection)
    assert params.shape == (2, 145)
    params[:, :3].sum().backward()
    assert net.cam_head.out.weight.grad.abs().sum() > 0
    assert torch.all(net.smpl_head.out.weight.grad == 0)
