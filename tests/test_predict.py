"""`python -m romp_hydra.predict` on a checkpoint from a tiny training run: an image, a folder and a short
video,
and bad inputs reported together before the model is built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from romp_hydra.predict import predict, prepare
from romp_hydra.preflight import PreflightError

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PER_PERSON = {
    "centers": (2,),
    "cam": (3,),
    "body_pose": (63,),
    "betas": (10,),
    "joints2d": (54, 2),
    "joints3d": (54, 3),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, shared_cache_dir) -> Path:
    """last.pt of a 2-step quickstart run (its config names the architecture and the stand-in body model)."""
    root = tmp_path_factory.mktemp("tiny_run")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "romp_hydra.train",
            "experiment=quickstart",
            "trainer.max_steps=2",
            "trainer.val_at_start=false",
            "sampling.epoch_samples=16",
            "dataset.members.synth_solo.num_samples=16",
            "dataset.members.synth_crowd.num_samples=16",
            "val.dataset.members.synth_solo.num_samples=4",
            "val.dataset.members.synth_crowd.num_samples=4",
            "data.batch_size=4",
            "logger=none",
            f"hydra.run.dir={root / 'run'}",
            f"paths.cache_dir={shared_cache_dir}",
        ],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return root / "run" / "checkpoints" / "last.pt"


def photo(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 200, size=(height, width, 3), dtype=np.uint8)
    cv2.circle(image, (width // 2, height // 2), min(height, width) // 4, (220, 190, 160), -1)
    return image


def check_outputs(out: Path, name: str, image_hw: tuple[int, int]) -> None:
    arrays = np.load(out / f"{name}.npz")
    assert tuple(arrays["image_hw"]) == image_hw
    count = len(arrays["scores"])
    for key, shape in PER_PERSON.items():
        assert arrays[key].shape == (count, *shape), key
    summary = json.loads((out / f"{name}.json").read_text())
    assert summary["num_people"] == count and summary["image_hw"] == list(image_hw)
    if count:
        person = summary["people"][0]
        assert set(PER_PERSON) <= set(person)
        np.testing.assert_allclose(person["joints2d"], arrays["joints2d"][0], atol=1e-3)
    drawn = cv2.imread(str(out / f"{name}.png"))
    assert drawn.shape[:2] == image_hw  # the overlay is on the original image, not the network input


def test_predict_cli_on_an_image_in_original_pixels(checkpoint, tmp_path):
    image = photo(120, 200, seed=0)
    cv2.imwrite(str(tmp_path / "street.jpg"), image)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "romp_hydra.predict",
            f"ckpt_path={checkpoint}",
            f"input={tmp_path / 'street.jpg'}",
            f"out={out}",
            "center_threshold=0.0",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "predict: 100%" in result.stderr  # the progress bar
    check_outputs(out, "street", (120, 200))
    arrays = np.load(out / "street.npz")
    assert len(arrays["scores"]) > 0  # threshold 0: every kept peak is a person
    # Original pixels: the letterbox square (200 px) around the 120 px high image spans y in [-40, 160].
    assert np.all((arrays["centers"] >= [0, -40]) & (arrays["centers"] <= [200, 160]))


def test_predict_on_a_folder_and_a_video(checkpoint, tmp_path, compose_cfg):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), photo(64, 96, seed=1))
    cv2.imwrite(str(folder / "b.jpg"), photo(100, 80, seed=2))
    (folder / "notes.txt").write_text("not an image")
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    for index in range(3):
        writer.write(photo(64, 96, seed=10 + index))
    writer.release()

    for source, names in (
        (folder, {"a": (64, 96), "b": (100, 80)}),
        (video, {f"clip_{i:06d}": (64, 96) for i in range(3)}),
    ):
        out = tmp_path / f"out_{source.stem}"
        cfg = compose_cfg(
            [
                f"ckpt_path={checkpoint}",
                f"input={source}",
                f"out={out}",
                "device=auto",
                "center_threshold=0.0",
            ],
            config_name="predict",
        )
        predict(cfg)
        assert {path.stem for path in out.glob("*.npz")} == set(names)
        for name, image_hw in names.items():
            check_outputs(out, name, image_hw)
    assert (
        cv2.VideoCapture(str(tmp_path / "out_clip" / "clip_overlay.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 3
    )


def test_bad_inputs_are_reported_together_before_the_model_is_built(tmp_path, compose_cfg):
    (tmp_path / "file").write_text("x")
    cfg = compose_cfg(
        [
            f"ckpt_path={tmp_path / 'missing.pt'}",
            f"input={tmp_path / 'nowhere'}",
            f"out={tmp_path / 'file'}",
            "body_model=standin",
        ],
        config_name="predict",
    )
    with pytest.raises(PreflightError) as caught:
        prepare(cfg)
    message = str(caught.value)
    assert "3 problem(s)" in message
    assert "missing.pt" in message and "nowhere" in message and "is a file" in message
