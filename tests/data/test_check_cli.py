"""The check CLI and its drawing helpers: pictures from the real pipeline, the summary, clear failures."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from romp_hydra.data.check import fit_weak_perspective, run_check
from romp_hydra.data.template import write_example
from romp_hydra.viz.draw import (
    SKELETON_COLORS,
    concat_panels,
    draw_centers,
    draw_skeleton,
    heatmap_overlay,
    normalized_to_pixels,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = (REPO_ROOT / "conf" / "dataset" / "synthetic.yaml").is_file()


def run_check_cli(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "romp_hydra.data.check", f"paths.log_dir={cwd / 'logs'}", *overrides]
    return subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_weak_perspective_fit_recovers_scale_and_shift():
    points3d = np.array([[0.0, 0.0, 5.0], [1.0, 0.0, 1.0], [0.0, 1.0, 2.0]])
    points2d = 2.0 * points3d[:, :2] + [3.0, 4.0]  # [[3, 4], [5, 4], [3, 6]]
    scale, shift = fit_weak_perspective(points3d, points2d)
    assert scale == pytest.approx(2.0) and shift == pytest.approx([3.0, 4.0])
    assert fit_weak_perspective(points3d[:1], points2d[:1]) is None  # one point: no scale
    assert fit_weak_perspective(np.zeros((3, 3)), points2d) is None  # no spread


def test_draw_skeleton_colours_bones_by_side():
    joints = np.zeros((54, 2))
    joints[0], joints[1] = (2, 10), (18, 10)  # Pelvis_SMPL -> L_Hip_SMPL, a left bone of SKELETON_54
    present = np.zeros(54, bool)
    present[[0, 1]] = True
    out = draw_skeleton(np.zeros((20, 20, 3), np.uint8), joints, present, radius=1)
    assert tuple(out[10, 10]) == SKELETON_COLORS["left"]
    assert out[2].sum() == 0  # nothing drawn for missing joints


def test_normalized_points_map_to_pixels_and_missing_stays_missing():
    pixels, present = normalized_to_pixels(np.array([[-1.0, 1.0], [0.0, 0.0], [-2.0, -2.0]]), 512)
    np.testing.assert_allclose(pixels[:2], [[0, 512], [256, 256]])
    assert present.tolist() == [True, True, False]


def test_centres_heatmap_and_panels():
    image = np.zeros((64, 64, 3), np.uint8)
    marked = draw_centers(image, np.array([[32.0, 32.0]]), ["0 id:3"], size=4)
    assert tuple(marked[28, 32]) == (255, 0, 255) and image.sum() == 0  # input untouched
    heat = np.zeros((8, 8), np.float32)
    heat[4, 4] = 1.0
    overlay = heatmap_overlay(image, heat)
    red, _, blue = overlay[36, 36].astype(int)
    assert red > blue and tuple(overlay[0, 0]) != tuple(overlay[36, 36])
    assert overlay[0, 0, 2] > overlay[0, 0, 0]  # JET's cold end is blue
    assert concat_panels([image, np.zeros((32, 16, 3), np.uint8)], gap=4).shape == (64, 64 + 4 + 32, 3)


def test_run_check_reports_unreadable_files(compose_cfg, tmp_path):
    root = write_example(tmp_path / "data", num_images=4)
    conf = tmp_path / "conf"
    (conf / "source").mkdir(parents=True)
    (conf / "dataset").mkdir()
    (conf / "source" / "mine.yaml").write_text(f"_target_: romp_hydra.data.template.MyDataset\nroot: {root}\n")
    (conf / "dataset" / "mine.yaml").write_text("defaults:\n  - /source@members.mine: mine\n  - _self_\nname: mine\n")
    cfg = compose_cfg([f"hydra.searchpath=[file://{conf}]", "dataset=mine", "num=6", f"out={tmp_path / 'pics'}",
                       "augment=false", "data.input_size=128", "data.centermap_size=16"], config_name="check")
    from romp_hydra.data.template import MyDataset

    len(MyDataset(root, key="mine"))  # pack first, then break an image
    (root / "images" / "img_001.jpg").write_bytes(b"\x00" * 10)
    report = run_check(cfg)
    assert report.samples == 6 and len(report.pictures) == 6
    assert report.skipped and {s.path for s in report.skipped} == {str(root / "images" / "img_001.jpg")}
    text = report.format()
    assert "could not be used" in text and "img_001.jpg" in text
    # persons: images 0, 2, 3 show 1, 1, 2 persons; every person has a 2D pose and nothing else
    assert report.masks_per_dataset["mine"][0] == report.persons_per_dataset["mine"] == report.persons
    assert report.masks_per_dataset["mine"][1:].sum() == 0


def test_check_cli_fails_clearly_when_the_data_is_missing(tmp_path):
    conf = tmp_path / "conf"
    (conf / "source").mkdir(parents=True)
    (conf / "dataset").mkdir()
    (conf / "source" / "gone.yaml").write_text(
        f"_target_: romp_hydra.data.template.MyDataset\nroot: {tmp_path / 'not_here'}\n")
    (conf / "dataset" / "gone.yaml").write_text("defaults:\n  - /source@members.gone: gone\n  - _self_\nname: gone\n")
    result = run_check_cli(tmp_path, f"hydra.searchpath=[file://{conf}]", "dataset=gone", f"out={tmp_path / 'p'}")
    assert result.returncode == 1
    assert "check failed: dataset 'gone'" in result.stderr and str(tmp_path / "not_here") in result.stderr
    assert "expected under" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not SYNTHETIC, reason="needs the synthetic source (conf/dataset/synthetic.yaml)")
def test_check_cli_on_the_synthetic_dataset(tmp_path, shared_cache_dir):
    result = run_check_cli(
        tmp_path, "dataset=synthetic", "body_model=standin", "num=4", f"out={tmp_path / 'pics'}",
        f"paths.cache_dir={shared_cache_dir}", "data.input_size=256", "data.centermap_size=32",
        *[f"dataset.members.{key}.{option}" for key in ("synth_solo", "synth_crowd")
          for option in ("num_samples=4", "num_workers=0")],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((tmp_path / "pics").glob("*.jpg"))) == 4
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("  synth_")}
    assert rows  # one summary row per dataset drawn
    for row in rows.values():
        assert row[3:] == ["1.00"] * 8  # the synthetic data has every annotation for every person


def _mine_config(compose_cfg, tmp_path, root):
    conf = tmp_path / "conf"
    (conf / "source").mkdir(parents=True)
    (conf / "dataset").mkdir()
    (conf / "source" / "mine.yaml").write_text(f"_target_: romp_hydra.data.template.MyDataset\nroot: {root}\n")
    (conf / "dataset" / "mine.yaml").write_text("defaults:\n  - /source@members.mine: mine\n  - _self_\nname: mine\n")
    return compose_cfg([f"hydra.searchpath=[file://{conf}]", "dataset=mine", "num=4", f"out={tmp_path / 'pics'}",
                        "augment=false", "data.input_size=128", "data.centermap_size=16"], config_name="check")


def test_images_left_out_when_packing_are_reported_not_every_file_read(compose_cfg, tmp_path):
    root = write_example(tmp_path / "data", num_images=4)
    (root / "images" / "img_002.jpg").write_bytes(b"\xff\xd8 cut short")  # broken before the first pack
    report = run_check(_mine_config(compose_cfg, tmp_path, root))
    assert not report.skipped  # never drawn: it is not in the store
    text = report.format()
    assert "every file could be read" not in text
    assert "1 annotated image(s) of mine were left out when packing" in text and "img_002.jpg" in text
    assert not report.all_read  # the CLI exits 1


def test_a_template_joint_without_visibility_names_the_file_and_the_image(tmp_path):
    import json

    from romp_hydra.data.template import ANNOTATION_FILE, MyDataset

    root = write_example(tmp_path / "data", num_images=2)
    annotations = json.loads((root / ANNOTATION_FILE).read_text())
    annotations["img_001.jpg"][0][9] = [120.0, 80.0]  # x, y but no v
    (root / ANNOTATION_FILE).write_text(json.dumps(annotations))
    with pytest.raises(ValueError) as caught:
        len(MyDataset(root, key="mine"))
    message = str(caught.value)
    assert str(root / ANNOTATION_FILE) in message and "img_001.jpg" in message
    assert "joint 9 (L_Wrist)" in message and "inhomogeneous" not in message
