"""Reading clips (video files through PyAV, folders of numbered frames through Pillow) and writing them.

A clip is read whole into memory at the size it will be painted at (a 512 px frame is under 0.5 MB,
so minutes of video fit), which lets every bad input fail before the first frame is painted. Video
files need PyAV (``pip install 'painterly[video]'``), whose wheel bundles FFmpeg with H.264.
Written videos are H.264 (yuv420p, so both sides are even) at the source's frame rate, with the
source's audio for the painted stretch, to a temporary name renamed when complete.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from PIL import Image

from ..engine.images import atomic_path, fit_size, open_image
from ..errors import ImageError, OutputError, SettingsError

#: Video files painterly reads (anything FFmpeg decodes works; these are the ones it is tried on).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif")
#: Video files painterly writes (H.264 in each of these containers).
OUTPUT_VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv")
#: Image files a frames folder may hold.
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
#: H.264 encoders to try, in order (PyAV's wheel has libx264).
H264_ENCODERS = ("libx264", "h264", "libopenh264")
#: libx264's constant-rate factor: 18 is visually lossless for paintings at these sizes.
CRF = 18
#: Audio codecs each container takes as they are (others are re-encoded as AAC); .mkv takes all.
COPYABLE_AUDIO = {".mp4": {"aac", "mp3", "alac", "ac3", "opus", "flac"}, ".mov": {"aac", "mp3", "alac", "ac3"}}
#: Frame rate assumed for a folder of frames, and for a video file that does not say.
DEFAULT_FPS = Fraction(24)
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass
class Clip:
    """Frames chosen from a source, at the size they will be painted at."""

    frames: list[Image.Image]  # RGB, all (w, h) = size
    fps: Fraction  # frame rate of the chosen frames (the source's divided by --every)
    source_size: tuple[int, int]
    source_indices: list[int]  # frame numbers in the source, 0-based
    times: list[float] = field(default_factory=list)  # seconds of each frame in the source
    audio: bool = False  # the source has an audio stream

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size


@dataclass(frozen=True)
class Selection:
    """Which frames to paint: ``start``/``end`` as frame numbers (``"12"``) or times (``"2.5s"``, ``"1:05"``);
    ``end`` is exclusive and empty means the end of the clip; every ``every``-th frame is kept."""

    start: str = ""
    end: str = ""
    every: int = 1


def parse_position(text: str, what: str) -> tuple[str, float]:
    """``("frame", n)`` for ``"12"``, ``("time", seconds)`` for ``"2.5s"``, ``"1:05"`` or ``"0:01:05.5"``."""
    t = text.strip()
    try:
        if t.endswith("s") and ":" not in t:
            seconds = float(t[:-1])
        elif ":" in t:
            parts = [float(p) for p in t.split(":")]
            if len(parts) > 3:
                raise ValueError
            seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
        else:
            n = int(t)
            if n < 0:
                raise ValueError
            return "frame", float(n)
    except ValueError:
        raise SettingsError(f"{what} must be a frame number (12) or a time (2.5s, 1:05), got '{text}'") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise SettingsError(f"{what} must be a time >= 0, got '{text}'")
    return "time", seconds


def check_selection(selection: Selection) -> None:
    """Refuse a selection that cannot hold a frame, before anything is read."""
    if not isinstance(selection.every, int) or selection.every < 1:
        raise SettingsError(f"--every must be a whole number >= 1, got {selection.every!r}")
    if selection.start and selection.end:
        a, b = parse_position(selection.start, "--start"), parse_position(selection.end, "--end")
        if a[0] == b[0] and a[1] >= b[1]:
            raise SettingsError(f"--start {selection.start} is not before --end {selection.end}")


def _chosen(selection: Selection, index: int, time: float) -> bool | None:
    """Whether frame ``index`` (at ``time`` s) is in the range; None once past its end."""
    if selection.end:
        kind, value = parse_position(selection.end, "--end")
        if (index if kind == "frame" else time + 1e-6) >= value:
            return None
    if selection.start:
        kind, value = parse_position(selection.start, "--start")
        return (index if kind == "frame" else time + 1e-6) >= value
    return True


def paint_size(source: tuple[int, int], longer: int) -> tuple[int, int]:
    """The (w, h) frames are painted at: longer side ``longer``, aspect kept, both sides even (H.264's 4:2:0)."""
    w, h = fit_size(source, longer)
    return max(2, w - w % 2), max(2, h - h % 2)


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def read_clip(path: str | Path, longer: int, selection: Selection = Selection(), fps: Fraction | None = None) -> Clip:
    """The chosen frames of a video file or a folder of numbered frames, resized to :func:`paint_size`.

    Raises :class:`ImageError` for a missing path, a file that is not a video, an undecodable
    stream, a folder with no frames, frames of mixed sizes or a gap in their numbering, and a
    selection that holds no frame.
    """
    path = Path(path)
    check_selection(selection)
    if not path.exists():
        raise ImageError(f"video not found: {path}")
    if path.is_dir():
        clip = _read_folder(path, longer, selection, fps or DEFAULT_FPS)
    else:
        clip = _read_video(path, longer, selection, fps)
    if not clip.frames:
        rng = f" from --start {selection.start or 0} " + (
            f"to --end {selection.end}" if selection.end else "to its end")
        raise ImageError(f"no frames to paint in {path}{rng if selection.start or selection.end else ''}")
    return clip


def _numbered_frames(folder: Path) -> list[tuple[int, Path]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in FRAME_EXTENSIONS]
    if not images:
        raise ImageError(f"{folder} holds no frames (expected numbered images such as frame_0001.png)")
    numbered = []
    for p in images:
        m = _NUMBERED.match(p.stem)
        if not m:
            raise ImageError(f"frame {p.name} in {folder} has no frame number at the end of its name")
        numbered.append((m.group(1), p.suffix.lower(), int(m.group(2)), p))
    kinds = {(prefix, ext) for prefix, ext, _, _ in numbered}
    if len(kinds) > 1:
        names = ", ".join(sorted(f"{p}N{e}" for p, e in kinds))
        raise ImageError(f"{folder} mixes frames named differently ({names}); keep one sequence per folder")
    frames = sorted((n, p) for _, _, n, p in numbered)
    for (a, pa), (b, pb) in itertools.pairwise(frames):
        if b == a:
            raise ImageError(f"frames {pa.name} and {pb.name} in {folder} have the same number")
        if b != a + 1:
            raise ImageError(f"gap in the frame numbers of {folder}: {pa.name} is followed by {pb.name}")
    return frames


def _read_folder(folder: Path, longer: int, selection: Selection, fps: Fraction) -> Clip:
    frames = _numbered_frames(folder)
    first_size = None
    out, indices, times = [], [], []
    kept = 0
    for index, (_, p) in enumerate(frames):
        img = open_image(p)
        if first_size is None:
            first_size = img.size
        elif img.size != first_size:
            raise ImageError(f"frames differ in size: {frames[0][1].name} is {first_size[0]}x{first_size[1]}, "
                             f"{p.name} is {img.size[0]}x{img.size[1]}")
        chosen = _chosen(selection, index, float(index / fps))
        if chosen is None:
            break
        if chosen:
            if kept % selection.every == 0:
                out.append(_resize(img, longer))
                indices.append(index)
                times.append(float(index / fps))
            kept += 1
    assert first_size is not None
    return Clip(out, fps / selection.every, first_size, indices, times, audio=False)


def _resize(img: Image.Image, longer: int) -> Image.Image:
    size = paint_size(img.size, longer)
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)


def av_module():
    """PyAV, or a :class:`SettingsError` naming the extra that brings it."""
    try:
        import av
    except ImportError:
        raise SettingsError("video files need PyAV: pip install 'painterly[video]'") from None
    return av


def _read_video(path: Path, longer: int, selection: Selection, fps: Fraction | None) -> Clip:
    av = av_module()
    try:
        container = av.open(str(path))
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise ImageError(f"{path} is not a video FFmpeg can read ({_reason(exc)})") from None
    with container:
        if not container.streams.video:
            raise ImageError(f"{path} has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None or stream.codec_context.codec is None:
            raise ImageError(f"{path}: no decoder for its video codec")
        rate = fps or _stream_rate(stream)
        stream.thread_type = "AUTO"
        out, indices, times, kept = [], [], [], 0
        source_size = (stream.codec_context.width, stream.codec_context.height)
        try:
            for index, frame in enumerate(container.decode(stream)):
                time = float(frame.time) if frame.time is not None else index / float(rate)
                chosen = _chosen(selection, index, time)
                if chosen is None:
                    break
                if chosen:
                    if kept % selection.every == 0:
                        img = frame.to_image()
                        source_size = img.size
                        out.append(_resize(img, longer))
                        indices.append(index)
                        times.append(time)
                    kept += 1
        except av.error.FFmpegError as exc:
            raise ImageError(f"{path}: its video cannot be decoded ({_reason(exc)})") from None
        if out and min(source_size) < 16:
            raise ImageError(f"{path} is {source_size[0]}x{source_size[1]} px, too small (each side needs 16 px)")
        audio = bool(container.streams.audio)
    return Clip(out, rate / selection.every, source_size, indices, times, audio)


def _stream_rate(stream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate)
    return DEFAULT_FPS


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


# -- writing ---------------------------------------------------------------------------------


def check_video_output(path: Path) -> str:
    """``"video"`` or ``"folder"`` for an output path, or :class:`OutputError` for anything else."""
    ext = path.suffix.lower()
    if path.is_dir() or ext == "":
        return "folder"
    if ext in OUTPUT_VIDEO_EXTENSIONS:
        return "video"
    raise OutputError(f"cannot write '{ext}' video: the output must end in "
                      f"{', '.join(OUTPUT_VIDEO_EXTENSIONS)} or be a folder (a name without an extension)")


def h264_encoder() -> str:
    """The first H.264 encoder this FFmpeg has, or :class:`OutputError`."""
    av = av_module()
    for name in H264_ENCODERS:
        with contextlib.suppress(Exception):
            av.codec.Codec(name, "w")
            return name
    raise OutputError(f"this PyAV's FFmpeg has no H.264 encoder (tried {', '.join(H264_ENCODERS)})")


def write_video(
    frames: Sequence[Image.Image] | Iterator[Image.Image],
    path: str | Path,
    fps: Fraction,
    audio_from: str | Path | None = None,
    audio_span: tuple[float, float] | None = None,
) -> Path:
    """Encode ``frames`` (RGB, one even size) as H.264 at ``fps`` into ``path``, atomically.

    ``audio_from``: a video file whose first audio stream's packets in ``audio_span`` (start, end
    seconds) are copied, shifted to start at 0 (re-encoded as AAC if the container cannot hold the
    codec). The file appears only when complete.
    """
    av = av_module()
    out = Path(path)
    encoder = h264_encoder()
    with atomic_path(out) as tmp, av.open(str(tmp), "w") as container:
        stream, audio = None, None
        for img in frames:
            if stream is None:  # the first frame gives the size; the audio stream comes second
                stream = container.add_stream(encoder, rate=fps)
                stream.width, stream.height = img.size
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(CRF)}
                audio = _AudioCopy(container, audio_from, audio_span) if audio_from else None
            frame = av.VideoFrame.from_image(img.convert("RGB"))
            for packet in stream.encode(frame):
                container.mux(packet)
        if stream is None:
            raise OutputError(f"no frames to write to {out}")
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            audio.copy()
    return out


class _AudioCopy:
    """Copies one stretch of a source's audio into an output container being written."""

    def __init__(self, container, source: str | Path, span: tuple[float, float] | None) -> None:
        av = av_module()
        self.av, self.out, self.span = av, container, span
        self.source = av.open(str(source))
        self.input = self.source.streams.audio[0] if self.source.streams.audio else None
        self.stream, self.encoder = None, None
        if self.input is None:
            return
        codec = self.input.codec_context.name
        copyable = COPYABLE_AUDIO.get(Path(container.name).suffix.lower(), container.supported_codecs)
        if codec in copyable and codec in container.supported_codecs:
            self.stream = container.add_stream_from_template(self.input)
        else:  # e.g. Vorbis from a WebM into an mp4: re-encode
            self.stream = container.add_stream("aac", rate=self.input.codec_context.sample_rate or 44100)
            self.encoder = True

    def copy(self) -> None:
        try:
            if self.input is not None and self.stream is not None:
                self._copy()
        finally:
            self.source.close()

    def _copy(self) -> None:
        assert self.input is not None and self.stream is not None
        start, end = self.span or (0.0, float("inf"))
        base = self.input.time_base
        offset = round(start / base) if base else 0
        if self.encoder:
            for frame in self.source.decode(self.input):
                if frame.time is None or frame.time < start:
                    continue
                if frame.time >= end:
                    break
                frame.pts = None
                for packet in self.stream.encode(frame):
                    self.out.mux(packet)
            for packet in self.stream.encode():
                self.out.mux(packet)
            return
        for packet in self.source.demux(self.input):
            if packet.pts is None or packet.dts is None:
                continue
            t = float(packet.pts * base)
            if t < start - 1e-6:
                continue
            if t >= end:
                break
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = self.stream
            self.out.mux(packet)


def write_folder(frames: Sequence[Image.Image], folder: Path, start: int = 1) -> list[Path]:
    """Write ``frames`` as ``frame_000001.png`` ... into ``folder`` (made if missing), each atomically."""
    from ..engine.images import save_image

    folder.mkdir(parents=True, exist_ok=True)
    return [save_image(img, folder / frame_name(i)) for i, img in enumerate(frames, start)]


def frame_name(number: int) -> str:
    """The name of frame ``number`` (1-based) in a folder painterly writes."""
    return f"frame_{number:06d}.png"
