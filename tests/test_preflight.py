"""The preflight: every input of a run is checked before anything is built, and every problem comes in one message
without a traceback (romp_hydra/preflight.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from romp_hydra.data.template import write_example
from romp_hydra.preflight import PreflightError, check_inputs, find_problems, incomplete_images

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, *overrides: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env_paths = [f"paths.data_dir={tmp_path / 'no_data'}", f"paths.model_dir={tmp_path / 'no_models'}",
                 f"paths.smpl_dir={tmp_path / 'no_smpl'}", f"paths.log_dir={tmp_path / 'logs'}"]
    return subprocess.run([sys.executable, "-m", module, *overrides, *env_paths], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_v1_on_a_machine_without_data_lists_everything_missing_once(tmp_path):
    """The issue's case: SMPL files, the pretrained backbone and all 8 datasets in ONE message, no traceback,
    status 2, from the training entry point itself; nothing is built."""
    out = _run("romp_hydra.train", "backbone=hrnet32", "dataset=v1_mix", tmp_path=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert "problem(s) found before train started" in out.stderr
    assert "SMPL_NEUTRAL.pkl" in out.stderr and "body_model=standin" in out.stderr
    assert "pretrain_hrnet.pkl" in out.stderr and "backbone.pretrained=null" in out.stderr
    for member in ("h36m", "mpiinf", "coco", "lsp", "mpii", "muco", "crowdpose"):
        assert f"dataset '{member}'" in out.stderr, member
    assert "expected under" in out.stderr
    assert not list((tmp_path / "logs").rglob("checkpoints"))  # Hydra made the run dir; nothing was trained


def test_the_preflight_runs_alone(tmp_path):
    failing = _run("romp_hydra.preflight", "backbone=hrnet32", "dataset=v1_mix", tmp_path=tmp_path)
    assert failing.returncode == 2 and "Traceback" not in failing.stderr
    assert "dataset 'coco'" in failing.stderr
    fine = _run("romp_hydra.preflight", "experiment=quickstart", tmp_path=tmp_path)
    assert fine.returncode == 0, fine.stderr[-3000:]
    assert "every input of this train run is in place" in fine.stdout


def test_every_bad_setting_is_reported_at_once(compose_cfg, tmp_path):
    bad = ["experiment=quickstart", "optim.optimizer.lr=-1", "val.metric=val/mpjep", "loss.weights.kp2d=-3",
           f"ckpt_path={tmp_path / 'nothing.pt'}", "trainer.device=cuda:7"]
    if not torch.cuda.is_available():
        bad.append("trainer.precision=bf16")
    problems = "\n".join(find_problems(compose_cfg(bad), "train"))
    assert "optim.optimizer.lr=-1: the learning rate must be a positive number" in problems
    assert "val.metric='val/mpjep'" in problems and "fix: val.metric=val/mpjpe" in problems
    assert "loss.weights.kp2d=-3" in problems
    assert "nothing.pt: no such file" in problems
    assert "trainer.device=cuda:7" in problems
    if not torch.cuda.is_available():
        assert "trainer.precision=bf16: mixed precision needs CUDA" in problems
        assert "trainer.precision=mixed" in problems


def test_a_good_quickstart_config_has_no_problem(compose_cfg):
    assert find_problems(compose_cfg(["experiment=quickstart"]), "train") == []


def test_quickstart_with_another_dataset_names_the_experiment(compose_cfg):
    with pytest.raises(PreflightError) as caught:
        check_inputs(compose_cfg(["experiment=quickstart", "dataset=coco"]), "train")
    message = str(caught.value)
    assert "the settings come from experiment=quickstart" in message
    assert "leave out experiment=quickstart" in message and "python -m romp_hydra.train dataset=coco" in message


def test_resume_into_another_architecture_says_what_differs(compose_cfg, tmp_path):
    trained = compose_cfg(["experiment=quickstart"])
    ckpt = tmp_path / "last.pt"
    torch.save({"config": OmegaConf.to_container(trained, resolve=False)}, ckpt)
    problems = "\n".join(find_problems(compose_cfg(["experiment=quickstart", "backbone=resnet_tiny",
                                                    f"resume={ckpt}"]), "train"))
    assert "was trained with another architecture" in problems
    assert "backbone._target_: checkpoint 'romp_hydra.models.backbones.HRNet'" in problems
    assert "size mismatch" not in problems
    assert find_problems(compose_cfg(["experiment=quickstart", f"resume={ckpt}"]), "train") == []
    missing = "\n".join(find_problems(compose_cfg(["experiment=quickstart", f"resume={tmp_path / 'gone'}"])))
    assert "no checkpoint at" in missing


def test_a_truncated_validation_image_is_found_before_training(compose_cfg, tmp_path):
    """Validation never replaces an image, so a file cut short after packing used to stop the run at a validation
    hours in. The preflight reads the last bytes of each validation image."""
    root = write_example(tmp_path / "mine", num_images=3)
    cfg = compose_cfg(["experiment=quickstart"])
    with open_dict(cfg):
        cfg.val.dataset.members["mine"] = {"_target_": "romp_hydra.data.template.MyDataset", "root": str(root),
                                           "split": "train"}
    assert find_problems(cfg, "train") == []  # packs the store
    image = root / "images" / "img_001.jpg"
    image.write_bytes(image.read_bytes()[:-200])  # a copy cut short
    problems = "\n".join(find_problems(cfg, "train"))
    assert str(image) in problems and "truncated" in problems and "val=none" in problems
    assert incomplete_images([root / "images" / "img_000.jpg"]) == []


def test_evaluate_reports_its_missing_inputs_together(compose_cfg, tmp_path):
    cfg = compose_cfg([f"ckpt_path={tmp_path / 'best.pt'}", "dataset=pw3d_test", f"paths.data_dir={tmp_path}",
                       f"paths.smpl_dir={tmp_path / 'smpl'}"], config_name="evaluate")
    problems = "\n".join(find_problems(cfg, "evaluate"))
    assert "best.pt: no such file" in problems
    assert "dataset 'pw3d" in problems and "SMPL_NEUTRAL.pkl" in problems


def test_a_bad_synthetic_scene_setting_is_reported_before_any_image_is_generated(compose_cfg):
    problems = "\n".join(find_problems(compose_cfg(["experiment=quickstart",
                                                    "dataset.members.synth_crowd.min_center_distance=-1",
                                                    "dataset.members.synth_solo.pose_blend_prob=2"]), "train"))
    assert "dataset.members.synth_crowd: ValueError" in problems and "min_center_distance=-1.0 >= 0" in problems
    assert "dataset.members.synth_solo: ValueError" in problems and "pose_blend_prob=2.0 within [0, 1]" in problems
    assert "val.dataset.members.synth_crowd" in problems  # the held-out images follow the training settings
