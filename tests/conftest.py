"""Shared fixtures: the tiny test images, broken files, fast settings and a CLI runner.

Every run in these tests is tiny (longer side <= 64 px, a few steps) and pinned to the CPU in fp32,
so the numbers do not depend on the machine (``precision='auto'`` would pick bf16 on some CPUs).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from painterly.engine.settings import TUTORIAL, Settings

DATA = Path(__file__).parent / "data"
CONTENT_DIR = DATA / "content"
STYLES_DIR = DATA / "styles"

#: Settings fields for a run that takes a second or two: shallow layers, so the network is cut at
#: block2, a small size and two steps; fp32 so that every CPU computes the same numbers (tests that
#: compare stored numbers also pin the machine: ``device="cpu"``).
FAST = {
    "size": 48,
    "steps": 2,
    "start_size": 0,
    "precision": "fp32",
    "content_layers": ("block2_conv2",),
    "style_layers": ("block1_conv1", "block2_conv1"),
    "style_weight": 1.0,
}

#: The same for the command line.
FAST_ARGS = [
    "--size", "48", "--steps", "2", "--start-size", "0", "--device", "cpu", "--precision", "fp32",
    "--content-layers", "block2_conv2", "--style-layers", "block1_conv1", "block2_conv1",
]


@pytest.fixture(scope="session")
def content_path() -> Path:
    """A 64x43 photo (Chelsea the cat)."""
    return CONTENT_DIR / "chelsea.png"


@pytest.fixture(scope="session")
def style_path() -> Path:
    """A 64x44 artwork (the Great Wave)."""
    return STYLES_DIR / "great_wave.png"


@pytest.fixture(scope="session")
def style2_path() -> Path:
    """A second, different 64x40 artwork (the Starry Night)."""
    return STYLES_DIR / "starry_night.png"


@pytest.fixture
def content_img(content_path: Path) -> Image.Image:
    return Image.open(content_path).convert("RGB")


@pytest.fixture
def style_img(style_path: Path) -> Image.Image:
    return Image.open(style_path).convert("RGB")


@pytest.fixture
def style2_img(style2_path: Path) -> Image.Image:
    return Image.open(style2_path).convert("RGB")


@pytest.fixture(scope="session")
def fast() -> Settings:
    """The tutorial's optimizer (Adam) with the :data:`FAST` changes."""
    return TUTORIAL.replace(**FAST)


@pytest.fixture
def fast_changes() -> dict:
    """:data:`FAST` as keyword overrides."""
    return dict(FAST)


@pytest.fixture
def fast_args() -> list[str]:
    return list(FAST_ARGS)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` (1-bit gray) and whose data is one empty row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    path.write_bytes(body)
    return path


@pytest.fixture(scope="session")
def bomb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 9000x9000 PNG (81 Mpx, over painterly's 64 Mpx limit, under Pillow's own) of ~30 kB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (9000, 9000), 1).save(path)
    return path


@pytest.fixture
def broken(tmp_path: Path, content_path: Path, bomb_path: Path) -> dict[str, Path]:
    """Bad inputs by name, each a path in ``tmp_path`` (the bomb is shared by the session)."""
    files: dict[str, Path] = {"missing": tmp_path / "missing.png", "bomb": bomb_path}
    folder = tmp_path / "folder.png"
    folder.mkdir()
    files["folder"] = folder
    text = tmp_path / "text.png"
    text.write_text("this is not an image\n")
    files["not_an_image"] = text
    png = content_path.read_bytes()
    files["truncated_png"] = tmp_path / "truncated.png"
    files["truncated_png"].write_bytes(png[: len(png) // 2])
    jpg_full = tmp_path / "full.jpg"
    Image.open(content_path).convert("RGB").save(jpg_full, quality=95)
    jpg = jpg_full.read_bytes()
    files["truncated_jpg"] = tmp_path / "truncated.jpg"
    files["truncated_jpg"].write_bytes(jpg[: len(jpg) // 2])
    jpg_full.unlink()
    files["too_small"] = tmp_path / "one_pixel.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(files["too_small"])
    files["huge_header"] = png_header_only(tmp_path / "huge_header.png", 20000, 20000)
    return files


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``painterly.cli.main(argv)``; returns (exit code, stdout, stderr).

    argparse reports a bad command line by raising SystemExit; the exit code is taken from it.
    """
    from painterly.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster of 2 CPUs, started once for the session (batch and video tests share it)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()
