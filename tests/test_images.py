"""Images: reading every kind of file (and refusing broken ones), conversions, sizes, writing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from painterly.engine.images import (
    MAX_INPUT_PIXELS,
    MIN_SIDE,
    check_output,
    fit_size,
    from_any,
    open_image,
    output_format,
    resize_longer,
    resize_tensor,
    save_image,
    to_pil,
    to_tensor,
)
from painterly.errors import ImageError, OutputError

# -- open_image: what must fail, with one clear sentence ------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("missing", "not found"),
        ("folder", "is a folder"),
        ("not_an_image", "not an image"),
        ("truncated_png", "truncated or corrupt"),
        ("truncated_jpg", "truncated or corrupt"),
        ("too_small", "too small"),
        ("bomb", "too large"),
        ("huge_header", "too large"),
    ],
)
def test_open_image_refuses(broken: dict[str, Path], name: str, words: str) -> None:
    with pytest.raises(ImageError, match=words) as info:
        open_image(broken[name])
    message = str(info.value)
    assert str(broken[name]) in message
    assert "\n" not in message


def test_bomb_is_over_the_limit_but_under_pillows(broken: dict[str, Path]) -> None:
    # The fixture really is a bomb by painterly's rule, not by Pillow's (which would fire on its own).
    with Image.open(broken["bomb"]) as img:
        assert img.size == (9000, 9000)
        assert img.width * img.height > MAX_INPUT_PIXELS
        assert img.width * img.height < Image.MAX_IMAGE_PIXELS
    assert broken["bomb"].stat().st_size < 100_000


def test_small_but_sufficient_image_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (MIN_SIDE, 40), (1, 2, 3)).save(path)
    assert open_image(path).size == (MIN_SIDE, 40)
    Image.new("RGB", (MIN_SIDE - 1, 40)).save(path)
    with pytest.raises(ImageError, match="too small"):
        open_image(path)


# -- open_image: what must just work ---------------------------------------------------------------


def _gradient(w: int = 40, h: int = 32) -> np.ndarray:
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return np.stack([x, y, 255 - x], axis=2).round().astype(np.uint8)


def _saved(tmp_path: Path, img: Image.Image, name: str, **params) -> Path:
    path = tmp_path / name
    img.save(path, **params)
    return path


def _check_rgb(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    assert img.mode == "RGB" and img.size == size
    return np.asarray(img)


def test_rgb_png_is_read_exactly(tmp_path: Path) -> None:
    arr = _gradient()
    got = _check_rgb(open_image(_saved(tmp_path, Image.fromarray(arr), "rgb.png")), (40, 32))
    assert np.array_equal(got, arr)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((32, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :20, 3] = 255  # left opaque red-ish, right fully transparent
    got = _check_rgb(open_image(_saved(tmp_path, Image.fromarray(rgba, "RGBA"), "rgba.png")), (40, 32))
    assert got[0, 0].tolist() == [200, 0, 0]
    assert got[0, -1].tolist() == [255, 255, 255]


def test_la_is_composited_on_white(tmp_path: Path) -> None:
    la = Image.merge("LA", [Image.new("L", (40, 32), 50), Image.new("L", (40, 32), 0)])
    la.paste(Image.new("LA", (20, 32), (50, 255)), (0, 0))
    got = _check_rgb(open_image(_saved(tmp_path, la, "la.png")), (40, 32))
    assert got[0, 0].tolist() == [50, 50, 50] and got[0, -1].tolist() == [255, 255, 255]


def test_grayscale(tmp_path: Path) -> None:
    gray = Image.fromarray(_gradient()[..., 0], "L")
    got = _check_rgb(open_image(_saved(tmp_path, gray, "gray.png")), (40, 32))
    assert np.array_equal(got[..., 0], np.asarray(gray)) and np.array_equal(got[..., 0], got[..., 2])


def test_one_bit(tmp_path: Path) -> None:
    bits = Image.new("1", (40, 32), 0)
    bits.paste(1, (0, 0, 20, 32))
    got = _check_rgb(open_image(_saved(tmp_path, bits, "bits.png")), (40, 32))
    assert got[0, 0].tolist() == [255, 255, 255] and got[0, -1].tolist() == [0, 0, 0]


def test_palette_without_transparency(tmp_path: Path) -> None:
    pal = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    path = _saved(tmp_path, pal, "pal.png")
    assert Image.open(path).mode == "P"
    got = _check_rgb(open_image(path), (40, 32))
    assert np.array_equal(got, np.asarray(pal.convert("RGB")))


def test_palette_with_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (40, 32), 0)
    pal.putpalette([0, 0, 255, 10, 200, 10] + [0] * 762)
    pal.paste(1, (20, 0, 40, 32))
    path = _saved(tmp_path, pal, "pal_t.png", transparency=0)  # index 0 (blue) is transparent
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    got = _check_rgb(open_image(path), (40, 32))
    assert got[0, 0].tolist() == [255, 255, 255]
    assert got[0, -1].tolist() == [10, 200, 10]


def test_16_bit_png_is_scaled_to_8_bits(tmp_path: Path) -> None:
    values = np.array([0, 257, 32896, 65535], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    arr = np.tile(np.repeat(values, 10), (32, 1))
    path = _saved(tmp_path, Image.fromarray(arr), "sixteen.png")
    assert Image.open(path).mode.startswith("I")
    got = _check_rgb(open_image(path), (40, 32))
    assert got[0, ::10, 0].tolist() == [0, 1, 128, 255]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = _saved(tmp_path, Image.new("CMYK", (40, 32), (0, 255, 255, 0)), "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    got = _check_rgb(open_image(path), (40, 32))
    assert np.abs(got[10, 10].astype(int) - [255, 0, 0]).max() < 8


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (64, 32), (200, 10, 10))
    img.paste((10, 10, 200), (0, 0, 32, 32))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = _saved(tmp_path, img, "rotated.jpg", exif=exif.tobytes(), quality=95)
    got = _check_rgb(open_image(path), (32, 64))
    assert got[5, 16, 2] > 150  # the blue half ends up on top after a clockwise turn
    assert got[-5, 16, 0] > 150


# -- from_any ---------------------------------------------------------------------------------


def test_from_any_numpy_uint8_rgb_and_rgba() -> None:
    arr = _gradient()
    assert np.array_equal(np.asarray(from_any(arr)), arr)
    rgba = np.concatenate([arr, np.full((32, 40, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(np.asarray(from_any(rgba)), arr)


def test_from_any_numpy_float_is_0_to_1() -> None:
    arr = _gradient()
    assert np.array_equal(np.asarray(from_any(arr.astype(np.float32) / 255)), arr)
    with pytest.raises(ImageError, match=r"values in 0\.\.1, got 2\.\.2 \(for 0\.\.255 pass uint8"):
        from_any(np.full((20, 20, 3), 2.0))  # refused, not silently clipped to white
    with pytest.raises(ImageError, match="values in 0..1"):
        from_any(torch.full((3, 20, 20), -0.5))


def test_from_any_reads_a_path(tmp_path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "p.png")
    assert np.array_equal(np.asarray(from_any(tmp_path / "p.png")), arr)
    assert np.array_equal(np.asarray(from_any(str(tmp_path / "p.png"))), arr)
    with pytest.raises(ImageError, match="image not found"):
        from_any(tmp_path / "missing.png")


def test_from_any_numpy_grayscale() -> None:
    gray = _gradient()[..., 1]
    for arr in (gray, gray[..., None]):
        got = np.asarray(from_any(arr))
        assert got.shape == (32, 40, 3) and np.array_equal(got[..., 2], gray)


def test_from_any_numpy_16_bit() -> None:
    arr = np.full((20, 20), 65535, np.uint16)
    assert np.asarray(from_any(arr))[0, 0].tolist() == [255, 255, 255]


def test_from_any_tensors() -> None:
    arr = _gradient()
    t = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    for tensor in (t, t[None], t.double(), (t * 255).round().to(torch.uint8)):
        assert np.array_equal(np.asarray(from_any(tensor)), arr)
    gray = t[:1]
    assert np.array_equal(np.asarray(from_any(gray))[..., 0], arr[..., 0])


def test_from_any_pil_converts_modes() -> None:
    assert from_any(Image.new("L", (20, 20), 7)).getpixel((0, 0)) == (7, 7, 7)
    assert from_any(Image.new("RGBA", (20, 20), (1, 2, 3, 0))).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (np.zeros((20, 20, 2), np.uint8), "shape"),
        (np.zeros((2, 20, 20, 3), np.uint8), "shape"),
        (np.full((20, 20, 3), np.nan), "NaN"),
        (np.zeros((20, 20, 3), np.complex64), "dtype"),
        (torch.zeros(2, 3, 20, 20), "tensor of shape"),
        (torch.zeros(20, 20), "tensor of shape"),
        (np.zeros((4, 4, 3), np.uint8), "too small"),
        ("picture.png", "image not found"),
        (3.5, "expected a file path, a PIL image"),
    ],
)
def test_from_any_refuses(value, words: str) -> None:
    with pytest.raises(ImageError, match=words):
        from_any(value, "content image")


# -- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "longer", "expected"),
    [
        ((64, 43), 48, (48, 32)),  # 32.25 -> 32
        ((64, 43), 32, (32, 22)),  # 21.5 -> 22 (Python's round, as the tutorial)
        ((64, 45), 32, (32, 22)),  # 22.5 -> 22 (half to even)
        ((43, 64), 48, (32, 48)),
        ((1024, 768), 512, (512, 384)),
        ((64, 64), 128, (128, 128)),
        ((300, 1), 30, (30, 1)),  # never 0
    ],
)
def test_fit_size(size: tuple[int, int], longer: int, expected: tuple[int, int]) -> None:
    assert fit_size(size, longer) == expected


def test_resize_longer() -> None:
    img = Image.fromarray(_gradient(64, 43))
    assert resize_longer(img, 48).size == (48, 32)
    assert resize_longer(img, 64) is img  # already the size: untouched
    with pytest.raises(ImageError, match="too thin"):
        resize_longer(Image.new("RGB", (400, 20)), 64, "style image")


def test_tensor_round_trip() -> None:
    img = Image.fromarray(_gradient())
    t = to_tensor(img)
    assert t.shape == (1, 3, 32, 40) and t.dtype == torch.float32 and t.max() <= 255
    assert np.array_equal(np.asarray(to_pil(t)), np.asarray(img))
    assert np.asarray(to_pil(torch.full((3, 20, 20), 300.0)))[0, 0].tolist() == [255, 255, 255]
    resized = resize_tensor(t, (20, 16))
    assert resized.shape == (1, 3, 16, 20) and resized.min() >= 0 and resized.max() <= 255


# -- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ext", "fmt", "exact"), [
    (".png", "PNG", True), (".jpg", "JPEG", False), (".jpeg", "JPEG", False),
    (".webp", "WEBP", False), (".tiff", "TIFF", True), (".tif", "TIFF", True), (".PNG", "PNG", True),
])
def test_save_image_round_trip(tmp_path: Path, ext: str, fmt: str, exact: bool) -> None:
    arr = _gradient(64, 48)
    path = save_image(Image.fromarray(arr), tmp_path / f"out{ext}")
    assert path == tmp_path / f"out{ext}"
    with Image.open(path) as back:
        assert back.format == fmt and back.size == (64, 48)
        got = np.asarray(back.convert("RGB")).astype(int)
    if exact:
        assert np.array_equal(got, arr)
    else:
        assert np.abs(got - arr).mean() < 4
    assert [p.name for p in tmp_path.iterdir()] == [f"out{ext}"]  # no temporary file left


def test_save_image_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    save_image(Image.new("RGB", (20, 20)), path)
    assert Image.open(path).size == (20, 20)


@pytest.mark.parametrize("name", ["out.bmp", "out.gif", "out", "out.png.txt"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputError, match="cannot write|has no extension"):
        output_format(name)
    with pytest.raises(OutputError, match="cannot write|has no extension"):
        save_image(Image.new("RGB", (20, 20)), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_when_the_encoder_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half an image")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(Image.new("RGB", (20, 20)), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.png"
    Image.new("RGB", (20, 20), (1, 2, 3)).save(path)
    before = path.read_bytes()

    def interrupted(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_image(Image.new("RGB", (20, 20)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_saved_file_has_ordinary_permissions(tmp_path: Path) -> None:
    # A file written with open() gets 0666 minus the umask (0644 usually); mkstemp's file is 0600,
    # so a result is unreadable by the group, other users or a web server.
    umask = os.umask(0o022)
    os.umask(umask)
    path = save_image(Image.new("RGB", (20, 20)), tmp_path / "out.png")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_check_output(tmp_path: Path, content_path: Path) -> None:
    assert check_output(tmp_path / "result.png") == tmp_path / "result.png"
    with pytest.raises(OutputError, match="folder does not exist"):
        check_output(tmp_path / "nowhere" / "result.png")
    with pytest.raises(OutputError, match="cannot write"):
        check_output(tmp_path / "result.bmp")
    folder = tmp_path / "dir.png"
    folder.mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output(folder)
    with pytest.raises(OutputError, match="also an input"):
        check_output(content_path, (content_path,))
    relative = Path(os.path.relpath(content_path))
    with pytest.raises(OutputError, match="also an input"):
        check_output(content_path.resolve(), ("x.png", relative))
