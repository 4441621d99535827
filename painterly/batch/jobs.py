"""Many pictures at once: ``painterly batch``.

The jobs come from a manifest (CSV or JSON lines: ``content``, ``style``, optional ``output`` and
``preset``, any setting as a column) or from folders and globs (``--contents photos/ --styles
art/*.jpg``, their cross product), times a grid (``--grid style_weight=1e-2,3e-2``). Each job's
settings are, in order of precedence: the preset, the setting flags for all rows, the row's columns,
the grid's values. Outputs are named by a template (``{content}-{style}-{preset}.png``) inside
``-o DIR``.

Everything a person can get wrong about the batch as a whole (a missing column, an unknown setting,
an empty folder, two jobs writing one file, an unreachable Ray cluster) is reported in one line
before any work starts. What is wrong with one row (a missing file, a broken image, a bad value)
fails that job only: see :mod:`painterly.batch.run`, which runs the jobs on a pool of
:mod:`painterly.workers`. The command itself is :mod:`painterly.cli.batch`.
"""

from __future__ import annotations

import csv
import functools
import glob
import itertools
import json
import os
import string
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.images import check_output, output_format
from ..engine.settings import FIELD_NAMES, FLAG_NAMES, MACHINE_FIELDS, Settings, preset
from ..errors import OutputError, SettingsError, closest

DEFAULT_TEMPLATE = "{content}-{style}-{preset}.png"
#: Files ``--contents``/``--styles`` pick from a folder.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
#: Manifest columns that are not settings.
JOB_COLUMNS = ("content", "style", "styles", "output", "preset")
#: Names a template may use besides the settings.
TEMPLATE_NAMES = ("content", "style", "preset", "index")
#: The exit code counts failed jobs up to this many.
MAX_EXIT = 100
#: Several style files in one CSV cell are separated by this (paths may hold spaces).
STYLE_SEPARATOR = ";"


@dataclass(frozen=True)
class Job:
    """One picture to paint. ``error`` is set when the row itself is bad (the job fails unrun)."""

    index: int  # 1-based, in manifest (or cross product) order
    content: Path
    styles: tuple[Path, ...]
    output: Path
    preset: str
    settings: Settings | None
    error: str | None = None


# -- names and values --------------------------------------------------------------------------

def setting_name(name: str, where: str) -> str:
    """A setting's field name from a column or ``--grid`` name (``style_weight``, ``style-weight``,
    ``--style-weight`` or ``style-weights``, the flag spelling); :class:`SettingsError` if none."""
    flags = {flag.lstrip("-"): field for field, flag in FLAG_NAMES.items()}
    bare = name.strip().lstrip("-")
    field = flags.get(bare, bare.replace("-", "_"))
    if field in MACHINE_FIELDS:
        raise SettingsError(f"{where} '{name}' is a machine setting, the same for the whole batch: give it as "
                            f"--{field.replace('_', '-')} on the command line")
    if field not in FIELD_NAMES:
        raise SettingsError(f"{where} '{name}' is not a setting{closest(field, FIELD_NAMES)}; "
                            f"see painterly --help for the settings")
    return field


def parse_value(field: str, raw: Any) -> Any:
    """``raw`` (text from a CSV cell or a grid, or a JSON value) as the type of setting ``field``.

    Lists are written with spaces in text (``block1_conv1 block2_conv1``). Raises
    :class:`SettingsError` naming the setting and the value.
    """
    hint = _hints()[field]
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        values = raw.split() if isinstance(raw, str) else raw
        if not isinstance(values, (list, tuple)):
            raise SettingsError(f"{field} must be a list, got {raw!r}")
        return tuple(_scalar(field, item, v) for v in values)
    return _scalar(field, hint, raw)


@functools.lru_cache(maxsize=1)
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _scalar(field: str, kind: Any, raw: Any) -> Any:
    if kind is str:
        return str(raw)
    if isinstance(raw, str):
        try:
            return kind(raw.strip())
        except ValueError:
            noun = "whole number" if kind is int else "number"
            raise SettingsError(f"{field} must be a {noun}, got {raw!r}") from None
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    return raw  # JSON numbers pass as they are; Settings checks their type and range


def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``["style_weight=1e-2,3e-2", ...]`` -> ``[("style_weight", [0.01, 0.03]), ...]``."""
    grid = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values.strip():
            raise SettingsError(f"--grid takes NAME=V1,V2,..., got {spec!r}")
        field = setting_name(name, "--grid name")
        grid.append((field, [parse_value(field, v) for v in values.split(",")]))
    return grid


# -- where the jobs come from ------------------------------------------------------------------

def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a CSV (with a header) or JSON lines manifest, paths made relative to its folder.

    Checks the whole manifest before any work: a missing ``content`` or ``style`` column (or cell), or
    a column that is no setting, is a :class:`SettingsError`.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise SettingsError(f"manifest not found: {manifest}")
    text = manifest.read_text(encoding="utf-8-sig")
    if manifest.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{manifest} line {number} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise SettingsError(f"{manifest} line {number} must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    else:
        reader = csv.DictReader(text.splitlines())
        rows = [{k.strip(): v.strip() for k, v in row.items() if k and isinstance(v, str) and v.strip()}
                for row in reader]
        _check_columns(manifest, {c.strip() for c in reader.fieldnames or []}, "has no", "column")
    if not rows:
        raise SettingsError(f"manifest {manifest} has no jobs")
    for number, row in enumerate(rows, 1):
        _check_columns(manifest, set(row), f"row {number} has no", "value")
    return [_resolve_paths(row, manifest.parent) for row in rows]


def _check_columns(manifest: Path, keys: set[str], missing: str, noun: str) -> None:
    if "content" not in keys:
        raise SettingsError(f"{manifest} {missing} 'content' {noun} (the photo to paint)")
    if not keys & {"style", "styles"}:
        raise SettingsError(f"{manifest} {missing} 'style' {noun} (the artwork, or several separated by "
                            f"'{STYLE_SEPARATOR}')")
    for key in sorted(keys - set(JOB_COLUMNS)):
        setting_name(key, f"{manifest}: column")


def _resolve_paths(row: dict[str, Any], folder: Path) -> dict[str, Any]:
    row = dict(row)
    styles = row.pop("styles", None) or row.pop("style")
    if isinstance(styles, str):
        styles = [s.strip() for s in styles.split(STYLE_SEPARATOR) if s.strip()]
    row["content"] = str(folder / str(row["content"]))
    row["style"] = [str(folder / str(s)) for s in styles]
    return row


def find_images(patterns: Sequence[str], flag: str) -> list[Path]:
    """The image files that folders, globs or files name, sorted, each once; an error if none."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
        else:
            matches = [path]  # a missing file fails its jobs, with its name
        if not matches:
            raise SettingsError(f"{flag} {pattern} matches no image files")
        found.extend(m for m in matches if m not in found)
    return found


# -- jobs --------------------------------------------------------------------------------------

def make_jobs(
    rows: list[dict[str, Any]],
    flags: dict[str, Any],
    preset_name: str,
    out_dir: Path,
    template: str,
    grid: Sequence[tuple[str, list[Any]]] = (),
) -> list[Job]:
    """One job per row and grid point: the row's preset (or ``preset_name``), then ``flags`` (the
    settings for every row), the row's columns and the grid point. A row with a bad value becomes a
    job that fails unrun; a template that would make two jobs write one file is an :class:`OutputError`."""
    names = [name for name, _ in grid]
    check_template(template, preset(preset_name).replace(**flags))
    jobs: list[Job] = []
    for row in rows:
        for point in itertools.product(*[values for _, values in grid]):
            index = len(jobs) + 1
            content, styles = Path(row["content"]), tuple(Path(s) for s in row["style"])
            name = str(row.get("preset", preset_name))
            settings, error = _row_settings(row, name, flags, dict(zip(names, point)))
            fields = (settings or preset(preset_name).replace(**flags)).to_dict()
            output = out_dir / (str(row["output"]) if "output" in row else _fill(template, content, styles, name,
                                                                                  index, fields))
            jobs.append(Job(index, content, styles, output, name, settings, error))
    check_outputs(jobs)
    return jobs


def _row_settings(row: dict[str, Any], preset_name: str, flags: dict[str, Any],
                  point: dict[str, Any]) -> tuple[Settings | None, str | None]:
    try:
        changes = {}
        for key, value in row.items():
            if key not in JOB_COLUMNS:
                field = setting_name(key, "column")
                changes[field] = parse_value(field, value)
        return preset(preset_name).replace(**flags).replace(**changes).replace(**point), None
    except SettingsError as exc:
        return None, str(exc)


def check_template(template: str, settings: Settings) -> None:
    """The template names only known fields, can be filled in and ends in an image format."""
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in TEMPLATE_NAMES and name not in FIELD_NAMES:
            raise OutputError(f"--template names {{{name}}}: use {', '.join('{' + n + '}' for n in TEMPLATE_NAMES)} "
                              f"or a setting such as {{style_weight}}{closest(name, [*TEMPLATE_NAMES, *FIELD_NAMES])}")
    try:
        _fill(template, Path("c.png"), (Path("s.png"),), "default", 1, settings.to_dict())
    except (ValueError, IndexError, KeyError) as exc:
        raise OutputError(f"--template {template!r} cannot be filled in ({exc})") from None
    output_format(template)


def default_template(grid_names: Sequence[str]) -> str:
    """:data:`DEFAULT_TEMPLATE`, with ``-name=value`` for each grid setting so grid points differ."""
    stem = DEFAULT_TEMPLATE.removesuffix(".png")
    return stem + "".join(f"-{n}={{{n}}}" for n in grid_names) + ".png"


def _fill(template: str, content: Path, styles: tuple[Path, ...], preset_name: str, index: int,
          fields: dict[str, Any]) -> str:
    shown = {k: "+".join(map(_show, v)) if isinstance(v, list) else _show(v) for k, v in fields.items()}
    return template.format(**shown, content=content.stem, style="+".join(s.stem for s in styles),
                           preset=preset_name, index=index)


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_outputs(jobs: Sequence[Job]) -> None:
    """No two jobs write one file, no job writes over an input, and every output can be written."""
    inputs = {p.resolve() for job in jobs for p in (job.content, *job.styles)}
    seen: dict[Path, Job] = {}
    for job in jobs:
        target = job.output.resolve()
        if target in seen:
            raise OutputError(f"jobs {seen[target].index} and {job.index} would both write {job.output}; "
                              f"put what differs between them in --template (e.g. {{index}} or a grid setting)")
        if target in inputs:
            raise OutputError(f"job {job.index} would write {job.output}, which is an input")
        seen[target] = job
        if job.output.parent.is_dir():  # else the folder is made once the whole batch is checked
            check_output(job.output)


def make_folders(jobs: Sequence[Job]) -> None:
    """The output folders, once the batch has been checked; each output checked again inside them."""
    for job in jobs:
        if not job.output.parent.is_dir():
            try:
                job.output.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot make the output folder {job.output.parent}: {exc.strerror}") from None
            check_output(job.output)


__all__ = ["Job", "make_folders", "make_jobs", "parse_grid", "read_manifest", "setting_name"]
