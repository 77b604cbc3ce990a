"""Reading photos as RGB uint8, whatever their format (grey, RGBA, 16-bit)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from smallnet_lit.data.errors import BadInputError

# Image files the package reads (lower case; matched case-insensitively).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def image_beside(path: Path) -> Path | None:
    """The image with the same stem as `path` (an annotation file), any known suffix in
    lower or upper case; None when there is none."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def read_image(path: str | Path) -> np.ndarray:
    """The image at `path` as (H, W, 3) uint8 RGB, the way a viewer shows it: turned by its
    EXIF orientation (phone photos are often stored sideways with a tag that says so).
    Greyscale is repeated to three channels, alpha is dropped, 16-bit is scaled to 8.
    Raises BadInputError for missing, empty, truncated or undecodable files."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError.at(path, None, "image not found")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:  # permission denied, I/O error: name the file, let skip handle it
        raise BadInputError.at(path, None, f"cannot read the file ({e.strerror or e})") from None
    if data.size == 0:
        raise BadInputError.at(path, None, "image file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise BadInputError.at(path, None, "not a readable image (corrupt, truncated or not an image format)")
    if _looks_truncated(data, path):
        raise BadInputError.at(path, None, "JPEG data is truncated (the file ends before the image does)")
    return _displayed(_to_rgb(image), _exif_orientation(data))


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _looks_truncated(data: np.ndarray, path: Path) -> bool:
    """OpenCV decodes a cut-off JPEG with a warning and grey rows, so it cannot tell. A JPEG
    that ends with its end-of-image marker (FF D9, maybe padded) is whole; otherwise (cut
    off, or with data appended after the image: phone motion photos, padding) let Pillow
    decode it strictly: only a real decoding failure means truncated."""
    if data[:2].tobytes() != b"\xff\xd8" or b"\xff\xd9" in data[-64:].tobytes():
        return False
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            im.load()
    except (OSError, SyntaxError, ValueError):
        return True
    return False


# EXIF orientation tag -> how to turn the stored pixels into the displayed ones (EXIF 2.3).
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],  # mirrored
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1],  # mirrored upside down
    5: lambda a: a.transpose(1, 0, 2),  # transposed
    6: lambda a: np.rot90(a, -1),  # stored turned 90 deg anticlockwise: turn clockwise
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),  # transversed
    8: lambda a: np.rot90(a, 1),  # stored turned 90 deg clockwise: turn anticlockwise
}


def _exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation (1-8) of an encoded image; 1 when it has none or cannot say."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            value = im.getexif().get(0x0112, 1)
    except Exception:  # no EXIF block, or one Pillow cannot parse: the pixels as stored
        return 1
    return value if value in _ORIENTATIONS else 1


def _displayed(image: np.ndarray, orientation: int) -> np.ndarray:
    turn = _ORIENTATIONS.get(orientation)
    return image if turn is None else np.ascontiguousarray(turn(image))
