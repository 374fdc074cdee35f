"""The packed annotation store: one plain-array `.npz` per dataset split, memory-mapped by every loader worker.

Why this format (romp_datasets.md §1.2, docs/design.md "Annotation store"): ROMP keeps annotations in `np.savez`
archives of *pickled* Python objects, which need `allow_pickle=True` (arbitrary code on load) and are unpickled in
full by every DataLoader worker. Ours holds only plain numeric / fixed-width unicode arrays, so

* `np.load(path, allow_pickle=False)` reads it anywhere, with no romp_hydra code;
* it is written *uncompressed* (`np.savez`), so every member sits as raw `.npy` bytes inside the zip. Numpy cannot
  memory-map a zip member itself (`np.load(mmap_mode=...)` ignores the mode for `.npz`), so `PackedStore` finds
  each member's byte offset from the zip headers and maps it with `np.memmap`. All workers then read the same
  pages of the OS page cache: nothing is copied per worker, and a pickled `PackedStore` (spawned workers) carries
  only its path.

Layout. Images are rows of the per-image arrays; persons are rows of flat per-person arrays, and image `i` owns
persons `person_offsets[i]:person_offsets[i+1]` (a CSR layout: no padding to a maximum person count).

    per image   image_paths (I,) <U      as written; relative paths are relative to the source root
                img_size (I, 2) int32    (H, W)
                cam_mats (I, 3, 3) f32   optional intrinsics, NaN where unknown
                person_offsets (I+1,) int64
    per person  kp2d (P, 54, 3) f32      [x_px, y_px, vis], -2 where missing. A box-only person stores its
                                         (4, 2) box [full lt, full rb, visible lt, visible rb] in rows 0..3
                is_box (P,) bool         ... and is flagged here (equals ~vmask_2d[:, 0])
                vmask_2d (P, 3) bool, vmask_3d (P, 6) bool
                track_ids (P,) int64     -1 where unknown
                kp3d (P, 54, 3) f32      optional, metres, -2 where missing
                params (P, 76) f32       optional, -10 where absent
                root_trans (P, 3) f32    optional, -2 where absent
    meta        () <U                    JSON: format, version, dataset key, source files (size, mtime), created
"""
from __future__ import annotations

import json
import logging
import os
import struct
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from romp_hydra.data.base import SourceDataset, load_image

log = logging.getLogger(__name__)

FORMAT_NAME = "romp_hydra.packed_store"
FORMAT_VERSION = 1
NUM_JOINTS = 54
NUM_PARAMS = 76

# Fill values of optional per-person arrays where a person has no such annotation (the img_info conventions).
_PERSON_OPTIONAL = {
    "kp3d": ("kp3ds", (NUM_JOINTS, 3), -2.0),
    "params": ("params", (NUM_PARAMS,), -10.0),
    "root_trans": ("root_trans", (3,), -2.0),
}

_ZIP_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # the 30-byte local file header of a zip member
_ZIP_LOCAL_SIGNATURE = 0x04034B50


class StoreFormatError(ValueError):
    """A file is not a packed store this version can read, or a record given to `PackedStore.write` is malformed."""


class PackedStore:
    """Read access to a packed store file; `PackedStore.write` creates one.

    >>> store = PackedStore("coco_train2014.npz")
    >>> len(store), store.num_persons
    >>> store.image_record(0)["kp2ds"].shape      # (N, 54, 3)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no packed store at {self.path}")
        self._arrays: dict[str, np.ndarray] | None = None
        self.meta = self._read_meta()

    # -- reading --------------------------------------------------------------------------------------------------
    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """All members, memory-mapped read-only (opened on first use, so pickling before use is free)."""
        if self._arrays is None:
            self._arrays = memmap_npz(self.path)
        return self._arrays

    def __len__(self) -> int:
        return int(self.meta["num_images"])

    @property
    def num_persons(self) -> int:
        return int(self.meta["num_persons"])

    @property
    def left_out(self) -> list[dict[str, str]]:
        """Annotated images the source could not pack ({path, reason}), e.g. unreadable at packing time."""
        return list(self.meta.get("left_out", []))

    def image_record(self, index: int) -> dict[str, Any]:
        """Image `index`'s annotations as an img_info dict without the image: imgpath, img_size, kp2ds, vmask_2d,
        vmask_3d, track_ids, kp3ds, params, root_trans (None when the store has none) and camMats if known.

        kp2ds is an (N, 54, 3) array, or a list of per-person arrays with (4, 2) boxes when the image has box-only
        persons (the img_info contract allows both). Arrays are copies, safe to modify.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range for a store of {len(self)} images ({self.path})")
        a = self.arrays
        start, stop = int(a["person_offsets"][index]), int(a["person_offsets"][index + 1])
        persons = slice(start, stop)
        kp2d = np.array(a["kp2d"][persons])
        is_box = np.array(a["is_box"][persons])
        kp2ds: np.ndarray | list[np.ndarray] = kp2d
        if is_box.any():
            kp2ds = [kp2d[j, :4, :2].copy() if is_box[j] else kp2d[j] for j in range(len(kp2d))]
        record: dict[str, Any] = {
            "imgpath": str(a["image_paths"][index]),
            "img_size": tuple(int(v) for v in a["img_size"][index]),
            "kp2ds": kp2ds,
            "vmask_2d": np.array(a["vmask_2d"][persons]),
            "vmask_3d": np.array(a["vmask_3d"][persons]),
            "track_ids": np.array(a["track_ids"][persons]),
        }
        for name, (info_key, _, _) in _PERSON_OPTIONAL.items():
            record[info_key] = np.array(a[name][persons]) if name in a else None
        if "cam_mats" in a and np.isfinite(a["cam_mats"][index]).all():
            record["camMats"] = np.array(a["cam_mats"][index])
        return record

    def _read_meta(self) -> dict[str, Any]:
        with np.load(self.path, allow_pickle=False) as npz:
            if "meta" not in npz.files:
                raise StoreFormatError(
                    f"{self.path} has no 'meta' member, so it is not a packed store (members: {npz.files}). "
                    f"If it is one of ROMP's pickled annots*.npz files, convert it with the dataset's pack_data()."
                )
            meta = json.loads(str(npz["meta"]))
        if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
            raise StoreFormatError(
                f"{self.path}: format {meta.get('format')!r} version {meta.get('version')!r}; this code reads "
                f"{FORMAT_NAME!r} version {FORMAT_VERSION}. Delete the file and pack the dataset again "
                f"(python -m romp_hydra.data.pack dataset=<name>)."
            )
        return meta

    # Workers get the path, not the mapped arrays (pickling a np.memmap would copy all of its data).
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "meta": self.meta}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.meta, self._arrays = state["path"], state["meta"], None

    def __repr__(self) -> str:
        return f"PackedStore({str(self.path)!r}, images={len(self)}, persons={self.num_persons})"

    # -- writing --------------------------------------------------------------------------------------------------
    @staticmethod
    def write(
        path: str | Path,
        records: Iterable[Mapping[str, Any]],
        *,
        dataset: str,
        source_files: Sequence[str | Path] = (),
        left_out: Sequence[Mapping[str, str]] = (),
    ) -> Path:
        """Pack `records` (img_info dicts without the image) into the store file `path` (must end in .npz).

        Each record needs `imgpath`, `img_size` (H, W), `kp2ds` and `vmask_2d`; `vmask_3d`, `track_ids`, `kp3ds`,
        `params`, `root_trans` and `camMats` are optional (None or absent = not annotated). `source_files` are the
        original annotation files; their sizes and modification times are kept so that a source can tell when its
        store is out of date. `left_out` lists annotated images the source could not pack ({path, reason}; read
        after `records` is consumed, so a source may fill it while yielding). The file is written to a temporary
        name and renamed, so concurrent writers (e.g.
        several DDP ranks) and interrupted runs never leave a half-written store behind.
        """
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"a packed store path must end in .npz, got {path}")
        arrays = _pack_records(records)
        arrays["meta"] = np.array(json.dumps({
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "dataset": dataset,
            "num_images": len(arrays["image_paths"]),
            "num_persons": len(arrays["kp2d"]),
            "source_files": [file_signature(f) for f in source_files],
            "left_out": [dict(entry) for entry in left_out],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }))
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as file:
                np.savez(file, **arrays)  # uncompressed on purpose: members must be memory-mappable
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return path


def file_signature(path: str | Path) -> dict[str, Any]:
    """What identifies a version of an annotation file: its absolute path, size and modification time."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def memmap_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Memory-map every member of an uncompressed `.npz` read-only, without loading it.

    Each member of an uncompressed zip is stored verbatim after its local header, so a `.npy` member's array
    starts at header_offset + local header + npy header. Raises StoreFormatError for compressed members or
    object arrays (which would need pickle).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as file:
        for member in archive.infolist():
            if not member.filename.endswith(".npy"):
                continue
            if member.compress_type != zipfile.ZIP_STORED:
                raise StoreFormatError(
                    f"{path}: member {member.filename} is compressed and cannot be memory-mapped; "
                    f"write stores with PackedStore.write (np.savez, not np.savez_compressed)"
                )
            file.seek(member.header_offset)
            header = _ZIP_LOCAL_HEADER.unpack(file.read(_ZIP_LOCAL_HEADER.size))
            if header[0] != _ZIP_LOCAL_SIGNATURE:
                raise StoreFormatError(f"{path}: corrupt zip local header for {member.filename}")
            name_length, extra_length = header[9], header[10]
            file.seek(member.header_offset + _ZIP_LOCAL_HEADER.size + name_length + extra_length)
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
            else:
                raise StoreFormatError(f"{path}: member {member.filename} uses .npy format {version}, expected 1.0/2.0")
            if dtype.hasobject:
                raise StoreFormatError(f"{path}: member {member.filename} holds Python objects (needs pickle)")
            name = member.filename[: -len(".npy")]
            order = "F" if fortran_order else "C"
            if int(np.prod(shape)) == 0:
                arrays[name] = np.empty(shape, dtype=dtype, order=order)  # mmap cannot map zero bytes
            else:
                arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=file.tell(), shape=shape, order=order)
    return arrays


def _pack_records(records: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Concatenate per-image records into the flat arrays of the store, checking every shape on the way."""
    paths: list[str] = []
    sizes: list[tuple[int, int]] = []
    cams: list[np.ndarray | None] = []
    offsets = [0]
    kp2d, is_box, vmask_2d, vmask_3d, track_ids = [], [], [], [], []
    optional: dict[str, list[np.ndarray | None]] = {name: [] for name in _PERSON_OPTIONAL}

    for index, record in enumerate(records):
        where = f"record {index} ({record.get('imgpath', '?')})"
        for required in ("imgpath", "img_size", "kp2ds", "vmask_2d"):
            if required not in record:
                raise StoreFormatError(f"{where}: missing '{required}'")
        persons = [np.asarray(p, dtype=np.float32) for p in record["kp2ds"]]
        count = len(persons)
        masks_2d = _person_array(record["vmask_2d"], (count, 3), bool, where, "vmask_2d")
        masks_3d = (
            np.zeros((count, 6), bool) if record.get("vmask_3d") is None
            else _person_array(record["vmask_3d"], (count, 6), bool, where, "vmask_3d")
        )
        for j, person in enumerate(persons):
            box = person.shape == (4, 2)
            if not box and person.shape != (NUM_JOINTS, 3):
                raise StoreFormatError(f"{where}: person {j} kp2ds has shape {person.shape}, expected (54, 3) or a (4, 2) box")
            if box == bool(masks_2d[j, 0]):
                raise StoreFormatError(
                    f"{where}: person {j} is {'a box' if box else 'a 54-joint pose'} but vmask_2d[{j}, 0]={masks_2d[j, 0]} "
                    f"(column 0 must be True exactly for 54-joint poses)"
                )
            if box:
                encoded = np.full((NUM_JOINTS, 3), -2.0, np.float32)
                encoded[:4, :2], encoded[:4, 2] = person, 1.0
                person = encoded
            kp2d.append(person)
            is_box.append(box)
        ids = record.get("track_ids")
        track_ids.append(np.full(count, -1, np.int64) if ids is None
                         else _person_array(ids, (count,), np.int64, where, "track_ids"))
        vmask_2d.append(masks_2d)
        vmask_3d.append(masks_3d)
        for name, (info_key, shape, fill) in _PERSON_OPTIONAL.items():
            value = record.get(info_key)
            optional[name].append(None if value is None else _optional_rows(value, count, shape, fill, where, info_key))
        height, width = (int(v) for v in record["img_size"][:2])
        cam = record.get("camMats")
        cams.append(None if cam is None else _person_array(cam, (3, 3), np.float32, where, "camMats"))
        paths.append(str(record["imgpath"]))
        sizes.append((height, width))
        offsets.append(offsets[-1] + count)

    total = offsets[-1]
    arrays: dict[str, np.ndarray] = {
        "image_paths": np.array(paths, dtype=str) if paths else np.zeros(0, dtype="<U1"),
        "img_size": np.array(sizes, dtype=np.int32).reshape(-1, 2),
        "person_offsets": np.array(offsets, dtype=np.int64),
        "kp2d": np.array(kp2d, dtype=np.float32).reshape(total, NUM_JOINTS, 3),
        "is_box": np.array(is_box, dtype=bool).reshape(total),
        "vmask_2d": _concat(vmask_2d, (3,), bool),
        "vmask_3d": _concat(vmask_3d, (6,), bool),
        "track_ids": _concat(track_ids, (), np.int64),
    }
    for name, (_, shape, fill) in _PERSON_OPTIONAL.items():
        parts = optional[name]
        if any(part is not None for part in parts):  # an array nobody annotates is left out, not stored as fill
            filled = [np.full((offsets[i + 1] - offsets[i], *shape), fill, np.float32) if part is None else part
                      for i, part in enumerate(parts)]
            arrays[name] = _concat(filled, shape, np.float32)
    if any(cam is not None for cam in cams):
        arrays["cam_mats"] = np.stack([np.full((3, 3), np.nan, np.float32) if cam is None else cam for cam in cams])
    return arrays


def _person_array(value: Any, shape: tuple[int, ...], dtype: Any, where: str, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.shape != shape:
        raise StoreFormatError(f"{where}: {name} has shape {array.shape}, expected {shape}")
    return array


def _optional_rows(value: Any, count: int, shape: tuple[int, ...], fill: float, where: str, name: str) -> np.ndarray:
    """An (N, *shape) array, or a per-person list whose None entries get the fill (both allowed by img_info)."""
    if not isinstance(value, (list, tuple)):
        return _person_array(value, (count, *shape), np.float32, where, name)
    if len(value) != count:
        raise StoreFormatError(f"{where}: {name} has {len(value)} entries for {count} persons")
    rows = np.full((count, *shape), fill, np.float32)
    for person, row in enumerate(value):
        if row is not None:
            rows[person] = _person_array(row, shape, np.float32, where, f"{name}[{person}]")
    return rows


def _concat(parts: list[np.ndarray], row_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    if not parts:
        return np.zeros((0, *row_shape), dtype)
    return np.concatenate(parts).astype(dtype, copy=False).reshape(-1, *row_shape)


class StoreBackedSource(SourceDataset):
    """A source whose annotations are packed once into a `PackedStore` and read from it afterwards.

    A subclass implements two things:

    * `annotation_files()` — the original annotation files (relative to root or absolute);
    * `read_annotations()` — yields one img_info-like record per image (no image array; `imgpath` preferably
      relative to root, so that the data folder can move).

    `pack_data()` runs `read_annotations()` and writes `<store_dir>/<key>_<split>.npz` (store_dir defaults to
    root). The store is packed automatically the first time it is needed, and packed again when an annotation
    file has changed since (size or modification time), so editing your annotation file and re-running the
    check CLI shows the edit. `get_image_info(i)` reads image i's record from the store and loads the image.

    Args:
        store_dir: where to write the store (default: the dataset root); use it when root is read-only.
    """

    def __init__(self, root: str | Path, split: str | None = None, *, key: str | None = None,
                 store_dir: str | Path | None = None, **options: Any):
        super().__init__(root, split, key=key, **options)
        self.store_dir = Path(store_dir).expanduser() if store_dir else self.root
        self._store: PackedStore | None = None
        self._left_out: list[dict[str, str]] = []

    def annotation_files(self) -> list[Path]:
        raise NotImplementedError(f"{type(self).__name__} must list its annotation files in annotation_files()")

    def read_annotations(self) -> Iterable[Mapping[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must yield its per-image records in read_annotations()")

    @property
    def store_path(self) -> Path:
        return self.store_dir / f"{self.key}_{self.split}.npz"

    def pack_data(self) -> Path:
        """Convert the original annotation files into the packed store and return its path."""
        files = [self.require(path) for path in self.annotation_files()]
        log.info("packing %s annotations (%s) into %s", self.key, ", ".join(map(str, files)), self.store_path)
        self._left_out = []
        path = PackedStore.write(self.store_path, self.read_annotations(), dataset=self.key, source_files=files,
                                 left_out=self._left_out)
        self._store = None
        if self._left_out:
            log.warning("%s: %d annotated image(s) were left out of the store (first: %s: %s); "
                        "python -m romp_hydra.data.check lists them", self.key, len(self._left_out),
                        self._left_out[0]["path"], self._left_out[0]["reason"])
        return path

    def leave_out(self, imgpath: str, reason: str) -> None:
        """Call from read_annotations() for an annotated image that cannot be packed: it is logged and listed in
        the store (`PackedStore.left_out`), so the check CLI reports it instead of saying every file was read."""
        if len(self._left_out) < 10:
            log.warning("%s: leaving out %s (%s)", self.key, imgpath, reason)
        self._left_out.append({"path": str(imgpath), "reason": str(reason)})

    @property
    def store(self) -> PackedStore:
        """The packed store, packed first if it is missing or older than the annotation files."""
        if self._store is None:
            if not self._store_is_current():
                self.pack_data()
            self._store = PackedStore(self.store_path)
        return self._store

    def __len__(self) -> int:
        return len(self.store)

    def image_paths(self) -> list[Path]:
        return [path if path.is_absolute() else self.root / path
                for path in map(Path, self.store.arrays["image_paths"].tolist())]

    def get_image_info(self, index: int) -> dict[str, Any]:
        info = self.store.image_record(index)
        path = Path(info["imgpath"])
        if not path.is_absolute():
            path = self.root / path
        info["imgpath"] = str(path)
        info["image"] = load_image(path)
        info["ds"] = self.key
        return info

    def _store_is_current(self) -> bool:
        if not self.store_path.is_file():
            return False
        try:
            packed = PackedStore(self.store_path).meta["source_files"]
        except (StoreFormatError, ValueError, KeyError, zipfile.BadZipFile) as err:
            log.warning("repacking %s: the existing store %s is unusable (%s)", self.key, self.store_path, err)
            return False
        for entry in packed:
            # A deleted annotation file does not invalidate the store: packing is exactly what lets you drop it.
            if Path(entry["path"]).is_file() and file_signature(entry["path"]) != entry:
                log.info("repacking %s: %s changed since the store was written", self.key, entry["path"])
                return False
        return True
