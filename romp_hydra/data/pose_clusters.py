"""Pose clusters of a 3D dataset, for ROMP's ``homogenize_pose_space`` (v1.yml: True).

ROMP draws H36M and MPI-INF-3DHP frames evenly over k-means clusters of their 3D poses, so the many standing
frames do not drown the rare poses (``image_base.homogenize_pose_sample``: cluster ``index % k``, then a random
member). The clusters come from ROMP's ``cluster_results_noumap_<ds>_kmeans.npz`` when that file is in the
dataset folder (``img_names`` with one cluster id each in ``kp3ds``, matched by image basename); otherwise they
are computed once here with scipy's k-means on the hip-centred 3D joints and kept beside the packed store as
``<store>_pose_clusters.npz``. That file is rebuilt when the store, ROMP's file or the settings change.

The sampler (``romp_hydra.data.sampler``) does the balanced drawing; a source only hands it the cluster id of
each of its items (``sampling_clusters()``).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np

from romp_hydra.body.joint_sets import ROOT_JOINTS
from romp_hydra.data.store import PackedStore, file_signature

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_NUM_CLUSTERS",
    "KMEANS_FIT_SAMPLES",
    "cluster_file",
    "compute_pose_clusters",
    "read_romp_clusters",
    "store_pose_clusters",
]

# ROMP does not publish how many clusters its files hold; 100 keeps > 1000 frames per cluster on H36M.
DEFAULT_NUM_CLUSTERS = 100
# k-means is fitted on at most this many frames (drawn with the seed), then every frame takes its nearest centre.
KMEANS_FIT_SAMPLES = 50_000
KMEANS_ITERATIONS = 20
_MISSING = -2.0


def cluster_file(store_path: Path) -> Path:
    """Where the clusters of a packed store are kept: next to it."""
    return store_path.with_name(f"{store_path.stem}_pose_clusters.npz")


def pose_features(kp3d: np.ndarray) -> np.ndarray:
    """(I, 54, 3) joints (-2 = missing) -> (I, 3 * J') hip-centred joints, J' = the joints present in every item.

    Items whose hips are missing get NaN rows (they cannot be compared); they are clustered apart.
    """
    kp3d = np.asarray(kp3d, dtype=np.float32)  # float32: H36M's 312k frames stay at ~200 MB
    present = ~np.isclose(kp3d, _MISSING).any(axis=-1)  # (I, J)
    roots = list(ROOT_JOINTS)
    has_root = present[:, roots].all(axis=1)
    if not has_root.any():
        raise ValueError("no item has both hip joints, so poses cannot be clustered")
    common = present[has_root].all(axis=0)
    centred = kp3d[:, common] - kp3d[:, roots].mean(axis=1, keepdims=True)
    features = centred.reshape(len(kp3d), -1)
    features[~has_root] = np.nan
    return features


def compute_pose_clusters(kp3d: np.ndarray, num_clusters: int, seed: int = 0) -> np.ndarray:
    """(I,) cluster id of each item: scipy k-means (k-means++ start, fixed seed) on `pose_features`.

    Items without hips form one extra cluster (id ``num_clusters``). Clusters that end up empty simply do not
    occur in the result.
    """
    from scipy.cluster.vq import kmeans2, vq

    if num_clusters < 1:
        raise ValueError(f"pose clusters: num_clusters={num_clusters} must be >= 1")
    features = pose_features(kp3d)
    usable = np.isfinite(features).all(axis=1)
    rng = np.random.default_rng(seed)
    data = features[usable]
    fit = data if len(data) <= KMEANS_FIT_SAMPLES else data[rng.choice(len(data), KMEANS_FIT_SAMPLES, replace=False)]
    k = min(int(num_clusters), len(fit))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "One of the clusters is empty": harmless, it is just not drawn
        centres, _ = kmeans2(fit, k, iter=KMEANS_ITERATIONS, minit="++", rng=rng)
    ids = np.full(len(features), int(num_clusters), dtype=np.int64)
    ids[usable] = vq(data, centres)[0]
    return ids


def read_romp_clusters(path: Path, image_paths: np.ndarray) -> np.ndarray:
    """(I,) cluster ids from ROMP's ``cluster_results_noumap_*_kmeans.npz`` for our images (by basename).

    Images the file does not list are put into one extra cluster, with a warning saying how many.
    """
    log.info("reading ROMP's pose clusters %s (allow_pickle=True: this file is trusted)", path)
    with np.load(path, allow_pickle=True) as archive:
        missing = [key for key in ("kp3ds", "img_names") if key not in archive.files]
        if missing:
            raise ValueError(
                f"{path} has no {missing} (members: {archive.files}); expected ROMP's cluster file with "
                "'img_names' and their cluster ids in 'kp3ds'"
            )
        ids, names = np.asarray(archive["kp3ds"]).astype(np.int64).reshape(-1), archive["img_names"]
    lookup = {os.path.basename(str(name)): int(cluster) for name, cluster in zip(names, ids)}
    extra = int(ids.max()) + 1 if len(ids) else 0
    result = np.array([lookup.get(os.path.basename(str(p)), extra) for p in image_paths], dtype=np.int64)
    unlisted = int((result == extra).sum())
    if unlisted:
        log.warning("%s does not list %d of our %d images; they are drawn as one extra cluster",
                    path, unlisted, len(result))
    return result


def store_pose_clusters(
    store: PackedStore, romp_file: Path | None, num_clusters: int = DEFAULT_NUM_CLUSTERS, seed: int = 0,
) -> np.ndarray:
    """(I,) cluster id of every image of `store` (its first person): cached beside the store, else built.

    Built from `romp_file` when it exists, otherwise by `compute_pose_clusters`.
    """
    path = cluster_file(store.path)
    use_romp = romp_file is not None and Path(romp_file).is_file()
    wanted = {
        "store": file_signature(store.path),
        "method": "romp_file" if use_romp else "kmeans",
        "romp_file": file_signature(romp_file) if use_romp else None,
        "num_clusters": None if use_romp else int(num_clusters),
        "seed": None if use_romp else int(seed),
    }
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if json.loads(str(cached["meta"])) == wanted and len(cached["cluster_ids"]) == len(store):
                return np.array(cached["cluster_ids"])
    arrays = store.arrays
    if use_romp:
        ids = read_romp_clusters(Path(romp_file), np.asarray(arrays["image_paths"]))
    else:
        if "kp3d" not in arrays:
            raise ValueError(f"{store.path} has no 3D joints, so its poses cannot be clustered")
        offsets = np.asarray(arrays["person_offsets"])
        first = np.minimum(offsets[:-1], max(len(arrays["kp3d"]) - 1, 0))
        kp3d = np.array(arrays["kp3d"][first])
        kp3d[offsets[1:] == offsets[:-1]] = _MISSING  # images without persons
        log.info("clustering the poses of %s into %d clusters (k-means, seed %d)", store.path, num_clusters, seed)
        ids = compute_pose_clusters(kp3d, num_clusters, seed)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            np.savez(file, cluster_ids=ids, meta=np.array(json.dumps(wanted)))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return ids


class PoseClusteredSource:
    """Mixin for a store-backed source that ROMP draws evenly over pose clusters (`homogenize_pose_space` in
    v1.yml). The source names ROMP's cluster file and sets the two attributes in its ``__init__``."""

    romp_cluster_file: ClassVar[str]
    homogenize_pose_space: bool = False
    pose_clusters: int = DEFAULT_NUM_CLUSTERS

    def sampling_clusters(self) -> np.ndarray | None:
        """The pose cluster of each image when `homogenize_pose_space`, else None."""
        if not self.homogenize_pose_space:
            return None
        return store_pose_clusters(self.store, self.root / self.romp_cluster_file, self.pose_clusters)

    def pack_data(self) -> Path:
        path = super().pack_data()
        self.sampling_clusters()  # the clusters are made with the store
        return path
