"""homogenize_pose_space: pose clusters (ROMP's file or k-means at pack time) and cluster-balanced drawing."""

from __future__ import annotations

import json

import numpy as np

from romp_hydra.data.pose_clusters import cluster_file, compute_pose_clusters
from romp_hydra.data.sampler import MixtureSampler, source_clusters
from romp_hydra.data.sources.mpiinf import MPIINF3DHP
from tests.data.sources.fixtures_3d import write_mpiinf_romp


def _two_pose_groups(common: int = 90, rare: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    standing = rng.normal(0.0, 0.3, (54, 3))
    sitting = standing + rng.normal(0.0, 0.5, (54, 3))
    groups = np.array([0] * common + [1] * rare)
    kp3d = np.where(groups[:, None, None] == 0, standing, sitting) + rng.normal(0, 0.01, (len(groups), 54, 3))
    return kp3d, groups


def test_kmeans_separates_poses_and_the_sampler_draws_clusters_evenly():
    kp3d, groups = _two_pose_groups()
    ids = compute_pose_clusters(kp3d, num_clusters=2, seed=0)
    assert len(set(zip(ids.tolist(), groups.tolist()))) == 2  # the clusters are the two pose groups
    np.testing.assert_array_equal(ids, compute_pose_clusters(kp3d, num_clusters=2, seed=0))

    sampler = MixtureSampler([100, 50], [0.5, 0.5], epoch_samples=2000, seed=3, clusters=[ids, None])
    members, items, _ = sampler.epoch_plan(0)
    drawn = items[members == 0]
    rare = np.isin(drawn, np.flatnonzero(groups == 1))
    # ROMP draws cluster `index % k`: every cluster equally often, whatever its size (10 vs 90 frames).
    assert abs(int(rare.sum()) - len(drawn) // 2) <= 1
    # Within a cluster every item is used before any repeats (the unclustered rule, per cluster).
    rare_items = drawn[rare][:10]
    assert sorted(rare_items.tolist()) == np.flatnonzero(groups == 1).tolist()
    plain = MixtureSampler([100, 50], [0.5, 0.5], epoch_samples=2000, seed=3)
    assert np.isin(plain.epoch_plan(0)[1][plain.epoch_plan(0)[0] == 0], np.flatnonzero(groups == 1)).mean() < 0.2

    # Exact resume: a new sampler restored after 300 samples yields what the first one would have.
    sampler.advance(300)
    resumed = MixtureSampler([100, 50], [0.5, 0.5], epoch_samples=2000, seed=3, clusters=[ids, None])
    resumed.load_state_dict(sampler.state_dict())
    assert list(resumed)[:50] == list(sampler)[:50]


NAMES = [f"S2_Seq1_video_0_F{frame:06d}.jpg" for frame in (1, 2, 3, 4)]


def test_romp_cluster_file_is_used_when_present(tmp_path):
    root = tmp_path / "mpi_inf_3dhp"
    write_mpiinf_romp(root, NAMES)
    # ROMP's file: img_names (any folder) with their cluster ids in 'kp3ds'; the last image is not listed.
    np.savez(root / "cluster_results_noumap_mpiinf_kmeans.npz",
             img_names=np.array([f"/data/mpi/images/{name}" for name in NAMES[:3]]), kp3ds=np.array([2, 0, 2]))
    assert source_clusters(MPIINF3DHP(root, "train", frame_stride=1)) is None  # off: ROMP's argparse default
    source = MPIINF3DHP(root, "train", frame_stride=1, homogenize_pose_space=True)
    np.testing.assert_array_equal(source_clusters(source), [2, 0, 2, 3])  # unlisted -> one extra cluster
    meta = json.loads(str(np.load(cluster_file(source.store_path))["meta"]))
    assert meta["method"] == "romp_file"


def test_clusters_are_computed_at_pack_time_without_romps_file(tmp_path):
    root = tmp_path / "mpi_inf_3dhp"
    write_mpiinf_romp(root, NAMES)
    source = MPIINF3DHP(root, "train", frame_stride=1, homogenize_pose_space=True, pose_clusters=2)
    source.pack_data()
    path = cluster_file(source.store_path)
    assert path.is_file() and json.loads(str(np.load(path)["meta"]))["method"] == "kmeans"
    ids = source_clusters(source)
    assert len(ids) == len(source) == 4 and set(ids.tolist()) <= {0, 1}
    stamp = path.stat().st_mtime_ns
    np.testing.assert_array_equal(source_clusters(MPIINF3DHP(root, "train", frame_stride=1,
                                                             homogenize_pose_space=True, pose_clusters=2)), ids)
    assert path.stat().st_mtime_ns == stamp  # read back, not recomputed


def test_training_loader_draws_a_homogenized_member_by_clusters(tmp_path, compose_cfg):
    from romp_hydra.data.loader import build_train_loader

    write_mpiinf_romp(tmp_path / "mpi_inf_3dhp", NAMES)
    cfg = compose_cfg(["dataset=mpiinf", f"paths.data_dir={tmp_path}", "dataset.members.mpiinf.frame_stride=1",
                       "dataset.members.mpiinf.homogenize_pose_space=true", "dataset.members.mpiinf.pose_clusters=2",
                       "sampling.epoch_samples=8"])
    loader = build_train_loader(cfg)
    assert loader.sampler.clusters[0] is not None and sum(len(g) for g in loader.sampler.clusters[0]) == 4
