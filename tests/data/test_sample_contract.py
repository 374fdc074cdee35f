"""The img_info contract check (romp_hydra.data.sample.validate_img_info)."""

from __future__ import annotations

import numpy as np
import pytest

from romp_hydra.data import masks
from romp_hydra.data.sample import ImgInfoError, validate_img_info
from tests.data.builders import gradient_image, make_info

BOX = np.array([[150.0, 20.0], [190.0, 140.0], [155.0, 30.0], [185.0, 130.0]], dtype=np.float32)


def pose_kp2d(pelvis_xy: tuple[float, float], height: float) -> np.ndarray:
    """Five visible joints around the pelvis, the rest -2."""
    kp = np.full((54, 3), -2.0, dtype=np.float32)
    for joint, (dx, dy) in {49: (0, 0), 45: (-0.07, 0), 46: (0.07, 0), 12: (0, -0.32), 48: (0, -0.5)}.items():
        kp[joint] = (pelvis_xy[0] + dx * height, pelvis_xy[1] + dy * height, 1.0)
    return kp


def pose_kp3d() -> np.ndarray:
    kp = np.full((54, 3), -2.0, dtype=np.float32)
    kp[[45, 46, 12]] = [[-0.1, 0.0, 3.0], [0.1, 0.0, 3.0], [0.0, -0.5, 3.0]]
    return kp


def smpl_params() -> np.ndarray:
    return np.linspace(-0.5, 0.5, 76, dtype=np.float32)




def _valid_info() -> dict:
    return make_info(
        poses=[pose_kp2d((60, 80), 100), pose_kp2d((110, 80), 90)], boxes=[BOX],
        kp3ds=[pose_kp3d(), None], params=[smpl_params(), None], track_ids=[4, 7, -1],
    )


def _error(info: dict, dataset: str = "h36m", index: int = 12) -> ImgInfoError:
    with pytest.raises(ImgInfoError) as caught:
        validate_img_info(info, dataset, index)
    return caught.value


def test_valid_info_is_normalised_to_arrays():
    checked = validate_img_info(_valid_info(), "toy", 0)
    assert checked.num_persons == 3 and (checked.height, checked.width) == (150, 200)
    assert checked.kp2ds.shape == (3, 54, 3) and checked.kp2ds.dtype == np.float32
    assert np.all(checked.kp2ds[2] == -2)  # the box person has no pose
    np.testing.assert_array_equal(checked.boxes[2], BOX)
    assert np.all(checked.boxes[:2] == -2)
    assert checked.kp3ds.shape == (3, 54, 3) and np.all(checked.kp3ds[1:] == -2)
    assert checked.params.shape == (3, 76) and np.all(checked.params[1:] == -10)
    np.testing.assert_array_equal(checked.track_ids, [4, 7, -1])
    np.testing.assert_array_equal(checked.is_pose, [True, True, False])
    assert checked.all_persons_labelled and checked.dataset == "toy"


def test_integer_masks_and_pose_array_are_accepted():
    info = make_info(poses=[pose_kp2d((60, 80), 100)])
    info["kp2ds"] = np.stack(info["kp2ds"])
    info["vmask_2d"] = info["vmask_2d"].astype(np.int64)
    checked = validate_img_info(info, "toy", 0)
    assert checked.vmask_2d.dtype == bool and checked.num_persons == 1


def test_no_persons_is_allowed():
    info = make_info()
    checked = validate_img_info(info, "toy", 0)
    assert checked.num_persons == 0 and not checked.all_persons_labelled


def test_errors_name_dataset_index_and_field():
    info = _valid_info()
    info["image"] = info["image"].astype(np.float32)
    err = _error(info)
    assert (err.dataset, err.index, err.field) == ("h36m", 12, "image")
    assert "dataset 'h36m'" in str(err) and "index 12" in str(err) and "'image'" in str(err)
    assert "uint8" in str(err)


@pytest.mark.parametrize(
    "mutate,field,fragment",
    [
        (lambda i: i.update(image=gradient_image()[..., :2]), "image", "(H, W, 3)"),
        (lambda i: i.update(imgpath=None), "imgpath", "non-empty str"),
        (lambda i: i.update(ds=""), "ds", "dataset tag"),
        (lambda i: i.update(img_size=(10, 10)), "img_size", "(150, 200)"),
        (lambda i: i.update(vmask_2d=i["vmask_2d"][:2]), "vmask_2d", "N = 3"),
        (lambda i: i.update(vmask_3d=i["vmask_3d"][:, :4]), "vmask_3d", "(3, 6)"),
        (lambda i: i.update(vmask_2d=i["vmask_2d"] * 2), "vmask_2d", "expected bool"),
        (lambda i: i["kp2ds"][0].__setitem__((3, 0), np.nan), "kp2ds[0]", "NaN"),
        (lambda i: i["kp2ds"].__setitem__(0, np.zeros((17, 3))), "kp2ds[0]", "(54, 3)"),
        (lambda i: i["kp2ds"].__setitem__(2, np.zeros((54, 3))), "kp2ds[2]", "(4, 2)"),
        (lambda i: i["kp2ds"].__setitem__(2, BOX[[1, 0, 2, 3]]), "kp2ds[2]", "lt <= rb"),
        (lambda i: i.update(track_ids=[4, 7]), "track_ids", "(3,)"),
        (lambda i: i.update(track_ids=[4.5, 7, -1]), "track_ids", "non-integer"),
        (lambda i: i.update(track_ids=None), "track_ids", "vmask_2d[:, 1]"),
        (lambda i: i["kp3ds"].__setitem__(0, pose_kp3d() * 1000), "kp3ds", "metres"),
        (lambda i: i["kp3ds"].__setitem__(0, None), "kp3ds", "vmask_3d[0, 0]"),
        (lambda i: i.update(params=np.zeros((3, 72))), "params", "(3, 76)"),
        (lambda i: i["params"].__setitem__(0, np.full(76, -10.0)), "params", "-10 marks"),
        (lambda i: i.update(root_trans=np.zeros((2, 3))), "root_trans", "(3, 3)"),
        (lambda i: i.update(camMats=np.eye(4)), "camMats", "(3, 3)"),
    ],
)
def test_each_field_is_checked(mutate, field, fragment):
    info = _valid_info()
    mutate(info)
    err = _error(info, "coco", 5)
    assert err.field == field
    assert fragment in str(err)
    assert str(err).startswith("dataset 'coco', index 5, field ")


def test_missing_params_with_flag_names_the_column():
    info = make_info(poses=[pose_kp2d((60, 80), 100)])
    info["vmask_3d"][0, masks.VMASK_3D_BETAS] = True
    err = _error(info)
    assert err.field == "params" and "betas" in str(err)


def test_not_a_dict():
    assert _error([1, 2, 3]).field == "<img_info>"


def test_unflagged_labels_are_blanked_without_touching_the_source_arrays():
    kp3ds = np.stack([pose_kp3d(), pose_kp3d() * 1000])  # person 1 is not flagged: its units do not matter
    params = np.stack([smpl_params(), smpl_params()])
    info = make_info(poses=[pose_kp2d((60, 80), 100), pose_kp2d((110, 80), 90)], kp3ds=[pose_kp3d(), None],
                     params=[smpl_params(), None])
    info["kp3ds"], info["params"] = kp3ds, params
    info["vmask_3d"][0, masks.VMASK_3D_BETAS] = False
    checked = validate_img_info(info, "toy", 0)
    assert np.all(checked.kp3ds[1] == -2) and np.all(checked.params[1] == -10)
    assert np.all(checked.params[0, 66:] == -10)
    np.testing.assert_array_equal(checked.params[0, :66], smpl_params()[:66])
    np.testing.assert_array_equal(info["kp3ds"][1], pose_kp3d() * 1000)
    np.testing.assert_array_equal(info["params"][0], smpl_params())
