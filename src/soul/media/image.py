"""Portrait loading: what generation sees of an image, decided once and validated here.

Every later stage (face detection, VAE encoding) assumes an upright RGB image of sane size, so
EXIF orientation, alpha, palette and grayscale modes and huge scans are all resolved at load time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from soul.errors import InputError

MIN_SIDE = 64
DEFAULT_MAX_SIDE = 2048
# Alpha is composited on white: portraits cut out of their background are usually shown on white.
_FLATTEN_BACKGROUND = (255, 255, 255)
# Guard against decompression bombs without PIL's noisy warning: 100 megapixels is far beyond any photo.
_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class ImageInfo:
    """What `soul probe` reports about an image."""

    path: str
    format: str
    mode: str
    width: int
    height: int
    original_width: int
    original_height: int
    exif_orientation: int
    has_alpha: bool
    loaded_width: int
    loaded_height: int

    def as_dict(self) -> dict:
        return {"kind": "image", **asdict(self)}


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "file not found", "check the path")
    if path.is_dir():
        raise InputError(path, "is a directory, not an image file", "give the path of an image file")
    if path.stat().st_size == 0:
        raise InputError(path, "is empty (0 bytes)", "give a real image file")


def _open(path: Path) -> Image.Image:
    _check_file(path)
    try:
        img = Image.open(path)
        img.size  # noqa: B018 - forces the header to be parsed
    except UnidentifiedImageError:
        raise InputError(path, "is not an image Pillow can read", "use a JPEG, PNG, WebP, BMP or TIFF file") from None
    except OSError as err:
        raise InputError(path, f"cannot be read as an image ({err})", "re-export the image") from None
    if img.width * img.height > _MAX_PIXELS:
        raise InputError(path, f"is {img.width}x{img.height}, too large to decode safely", "downscale it below 100 megapixels")
    return img


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)


def _to_rgb(img: Image.Image) -> Image.Image:
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _FLATTEN_BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode == "I;16" or img.mode == "I":
        # 16-bit grayscale: scale to 8 bits before converting, or Pillow clips everything to white.
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def load_image(path: str | Path, *, max_side: int = DEFAULT_MAX_SIDE) -> Image.Image:
    """Load an upright RGB image no larger than `max_side` on its longer side.

    Huge images are reduced while decoding (JPEG draft mode) so a 3511 px scan costs little.
    """
    path = Path(path)
    img = _open(path)
    try:
        if img.format == "JPEG" and max(img.size) > 2 * max_side:
            img.draft("RGB", (max_side, max_side))
        img = ImageOps.exif_transpose(img)
        img.load()
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(path, f"image data is corrupt ({err})", "re-export the image") from None
    if min(img.size) < MIN_SIDE:
        raise InputError(
            path, f"is {img.width}x{img.height}; both sides must be at least {MIN_SIDE} px", "use a larger portrait"
        )
    img = _to_rgb(img)
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    return img


def image_info(path: str | Path, *, max_side: int = DEFAULT_MAX_SIDE) -> ImageInfo:
    """Describe an image as Soul will use it, validating it the same way generation does."""
    path = Path(path)
    raw = _open(path)
    orientation = int(raw.getexif().get(0x0112, 1) or 1)
    fmt, mode, alpha = raw.format or "unknown", raw.mode, _has_alpha(raw)
    original = raw.size
    loaded = load_image(path, max_side=max_side)
    upright = (original[1], original[0]) if orientation in (5, 6, 7, 8) else original
    return ImageInfo(
        path=str(path),
        format=fmt,
        mode=mode,
        width=upright[0],
        height=upright[1],
        original_width=original[0],
        original_height=original[1],
        exif_orientation=orientation,
        has_alpha=alpha,
        loaded_width=loaded.width,
        loaded_height=loaded.height,
    )


@dataclass(frozen=True)
class Fit:
    """How `fit_image` maps a ``source`` size onto a ``width`` x ``height`` frame: resize to
    ``resized`` (covering the frame), then crop at ``(left, top)``. It also maps positions found on
    the source (faces) into the frame, so they can be found at the source's full resolution."""

    source: tuple[int, int]
    resized: tuple[int, int]
    left: int
    top: int
    width: int
    height: int

    @classmethod
    def of(cls, source: tuple[int, int], width: int, height: int) -> Fit:
        if width <= 0 or height <= 0:
            raise ValueError(f"target size must be positive, got {width}x{height}")
        src_w, src_h = source
        scale = max(width / src_w, height / src_h)
        resized = (max(width, round(src_w * scale)), max(height, round(src_h * scale)))
        return cls(source, resized, (resized[0] - width) // 2, (resized[1] - height) // 2, width, height)

    def point(self, x: float, y: float) -> tuple[float, float]:
        """A source pixel position in frame coordinates (outside ``[0, width) x [0, height)``: cropped)."""
        return x * self.resized[0] / self.source[0] - self.left, y * self.resized[1] / self.source[1] - self.top


def fit_image(img: Image.Image, width: int, height: int) -> Image.Image:
    """Resize to cover `width` x `height`, then centre-crop: the model needs an exact size, no bars."""
    fit = Fit.of(img.size, width, height)
    resized = img.resize(fit.resized, Image.Resampling.LANCZOS)
    return resized.crop((fit.left, fit.top, fit.left + width, fit.top + height))
