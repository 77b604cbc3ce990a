"""The crop cache: one margin crop per face, JPEG-encoded into one file per data set, keyed by
the images' paths, sizes and mtimes, the annotations and the crop settings. Built once (in
threads), leased by every process that reads it, pruned least recently used beyond
`max_gb` (never a cache in use); a half-built one of a killed process is removed."""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from smallnet_lit.data.crop import apply_affine, apply_affine_to_box, invert_affine
from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.images import read_image
from smallnet_lit.data.sample import FaceRecord, FaceSample

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass(frozen=True)
class CacheConfig:
    """`dir`: where crops are cached (null = no cache: photos are decoded every time and
    checked only for existence up front). `margin`: the cached square's side as a multiple
    of the face box's longer side; `size`: its side in pixels; `max_gb`: size limit of
    the cache folder (least recently used caches are deleted beyond it)."""

    dir: str | None = None
    margin: float = 2.0
    size: int = 384
    max_gb: float = 10.0  # least recently used caches beyond this total are deleted

    def __post_init__(self) -> None:
        if self.margin < 1.2 or self.size < 32:
            raise ValueError(f"cache margin must be >= 1.2 and size >= 32, got margin={self.margin}, size={self.size}")
        if self.max_gb <= 0:
            raise ValueError(f"cache max_gb must be positive, got {self.max_gb}")


def cache_key(records: list[FaceRecord], cache: CacheConfig) -> str:
    h = hashlib.sha1(json.dumps([CACHE_VERSION, cache.margin, cache.size]).encode())
    for rec in records:
        st = rec.image_path.stat()
        h.update(f"{rec.image_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
        h.update(np.ascontiguousarray(rec.points, np.float64).tobytes())
        if rec.box is not None:
            h.update(np.asarray(rec.box, np.float64).tobytes())
    return h.hexdigest()[:16]


def open_cache(cache: CacheConfig, name: str, records: list[FaceRecord], check_on_image) -> CropCache:
    """The crop cache of these records (built, with `check_on_image` run on each decoded photo,
    when there is none), leased by this process; the least recently used others pruned."""
    folder = Path(cache.dir) / f"{name}-{cache_key(records, cache)}"
    built = False
    while not _lease_existing(folder):  # built anew if another run's pruning took it before our lease
        _remove_stale_temps(folder.parent)
        _build_cache(folder, records, cache, check_on_image, name)
        built = True
    if built:
        _prune(folder.parent, cache.max_gb, keep=folder)
    else:
        os.utime(folder / "index.json")  # recently used: pruned last
    return CropCache(folder)


def _lease_existing(folder: Path) -> bool:
    """Lease the cache if it is complete; False if there is none (or another run's pruning
    took it before the lease)."""
    if not (folder / "index.json").is_file():
        return False
    try:
        _take_lease(folder)
    except FileNotFoundError:
        return False
    if (folder / "index.json").is_file():
        return True
    _drop_lease(folder)
    return False


def _margin_square(rec: FaceRecord, margin: float) -> tuple[np.ndarray, float]:
    lo, hi = rec.points.min(0), rec.points.max(0)
    if rec.box is not None:  # cover the detector box too, so either eval protocol fits
        lo, hi = np.minimum(lo, rec.box[:2]), np.maximum(hi, rec.box[2:])
    return (lo + hi) / 2, float((hi - lo).max()) * margin


def _crop_face(rec: FaceRecord, image: np.ndarray, cache: CacheConfig) -> tuple[np.ndarray, np.ndarray]:
    """The cached square crop (size x size) and its 2x3 map back to photo pixels."""
    centre, side = _margin_square(rec, cache.margin)
    side = max(side, 2.0)
    x0, y0 = np.floor(centre - side / 2).astype(int)
    n = int(np.ceil(side))
    h, w = image.shape[:2]
    pad = [max(0, -y0), max(0, y0 + n - h), max(0, -x0), max(0, x0 + n - w)]
    roi = image[max(0, y0) : min(h, y0 + n), max(0, x0) : min(w, x0 + n)]
    if any(pad):
        roi = cv2.copyMakeBorder(roi, *pad, cv2.BORDER_CONSTANT, value=0)
    s = cache.size / n
    crop = cv2.resize(roi, (cache.size, cache.size), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    # cv2.resize maps destination pixel centre u to source (u + 0.5) / s - 0.5.
    to_photo = np.array([[1 / s, 0, x0 + 0.5 / s - 0.5], [0, 1 / s, y0 + 0.5 / s - 0.5]])
    return crop, to_photo


def _build_cache(folder: Path, records, cache: CacheConfig, check_on_image, name: str) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name with our pid, renamed when complete: a killed build
    # leaves no half cache, and the next build removes its leftovers.
    tmp = Path(tempfile.mkdtemp(prefix=f"{folder.name}{TEMP_MARK}{os.getpid()}.", dir=folder.parent))

    def work(rec: FaceRecord) -> tuple[bytes, dict]:
        try:
            image = read_image(rec.image_path)
        except BadInputError as e:
            return b"", {"problem": e.what}
        if problem := check_on_image(rec, image.shape):
            return b"", {"problem": problem}
        crop, to_photo = _crop_face(rec, image, cache)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            return b"", {"problem": "could not encode the cached crop"}
        return jpeg.tobytes(), {"to_photo": to_photo.tolist()}

    entries, offset = [], 0
    try:
        with open(tmp / "faces.bin", "wb") as blob, ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
            for data, entry in tqdm(
                pool.map(work, records), total=len(records), desc=f"caching {name} crops", unit="face"
            ):
                entry.update(offset=offset, length=len(data))
                blob.write(data)
                offset += len(data)
                entries.append(entry)
        (tmp / "index.json").write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}))
        try:
            tmp.rename(folder)
        except OSError:  # another process (a DDP rank) finished the same cache first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("cached %d face crops of %s in %s", len(entries), name, folder)


TEMP_MARK = ".building-"


def _remove_stale_temps(cache_dir: Path) -> None:
    """Delete half-built caches whose building process is gone (killed mid-way)."""
    for tmp in cache_dir.glob(f"*{TEMP_MARK}*"):
        pid = tmp.name.rsplit(TEMP_MARK, 1)[1].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            log.info("removed the unfinished cache %s (its process %s is gone)", tmp, pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files in `folder`; files (leases) or the folder that vanish meanwhile,
    as other runs exit or prune, count 0."""
    total = 0
    try:
        for f in folder.iterdir():
            total += _size_or_zero(f)
    except FileNotFoundError:
        pass
    return total


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except FileNotFoundError:
        return 0


def _last_used(cache: Path) -> float:
    try:
        return (cache / "index.json").stat().st_mtime
    except FileNotFoundError:  # pruned by another run meanwhile
        return float("inf")


LEASE_MARK = "in-use."


def _take_lease(folder: Path) -> None:
    """Mark the cache as read by this process (`in-use.<pid>`, removed at exit) so that no
    other run's pruning deletes it while this one (or its loader workers) reads it."""
    lease = folder / f"{LEASE_MARK}{os.getpid()}"
    lease.touch()
    atexit.register(lambda: lease.unlink(missing_ok=True))


def _drop_lease(folder: Path) -> None:
    (folder / f"{LEASE_MARK}{os.getpid()}").unlink(missing_ok=True)


def _in_use(folder: Path) -> bool:
    """A live process holds a lease on the cache (leases of processes that died are ignored)."""
    for lease in folder.glob(f"{LEASE_MARK}*"):
        pid = lease.name[len(LEASE_MARK) :]
        if pid.isdigit() and pid_alive(int(pid)):
            return True
    return False


def _prune(cache_dir: Path, max_gb: float, keep: Path) -> None:
    """Delete the least recently used caches until the folder fits in `max_gb`, except the
    ones that a running process reads; log its size."""
    # Other runs read, build, lease and prune beside this one: anything may vanish meanwhile.
    caches = [d for d in cache_dir.iterdir() if (d / "index.json").is_file()]
    caches.sort(key=_last_used)
    sizes = {d: _folder_bytes(d) for d in caches}
    total = sum(sizes.values())
    for d in caches:
        if total <= max_gb * 1e9:
            break
        if d != keep and not _in_use(d):
            shutil.rmtree(d, ignore_errors=True)
            total -= sizes[d]
            log.info("removed the least recently used face cache %s (limit %.1f GB)", d.name, max_gb)
    log.info("face cache: %.2f GB in %s (data.cache.dir; limit data.cache.max_gb=%g)", total / 1e9, cache_dir, max_gb)


class CropCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.entries = json.loads((folder / "index.json").read_text())["entries"]
        self._blob: np.ndarray | None = None  # opened lazily: memmaps do not pickle to workers

    def load(self, index: int, rec: FaceRecord) -> FaceSample:
        if self._blob is None:
            self._blob = np.memmap(self.folder / "faces.bin", dtype=np.uint8, mode="r")
        e = self.entries[index]
        data = np.asarray(self._blob[e["offset"] : e["offset"] + e["length"]])
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            raise BadInputError(
                f"{self.folder / 'faces.bin'}: cached crop {index} ({rec.key}) is corrupt; delete the folder"
            )
        to_photo = np.array(e["to_photo"])
        from_photo = invert_affine(to_photo)
        points = apply_affine(from_photo, rec.points)
        box = None if rec.box is None else apply_affine_to_box(from_photo, rec.box)
        return FaceSample(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), points, rec.key, box, rec.attributes, to_photo)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_blob"] = None
        return state
