"""``painterly batch``: its options, the jobs they ask for (:mod:`painterly.batch.jobs`), the run on a
pool of workers (:mod:`painterly.batch.run`) and its progress line."""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from ..batch.jobs import (
    DEFAULT_TEMPLATE,
    MAX_EXIT,
    Job,
    default_template,
    find_images,
    make_folders,
    make_jobs,
    parse_grid,
    read_manifest,
)
from ..batch.run import run_batch
from ..engine.settings import FIELD_NAMES, preset
from ..errors import OutputError, SettingsError
from ..workers.local import open_pool
from .options import Parser, add_pool_options, add_settings_options, check_workers, machine_from_args
from .progress import BatchBar, clock


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="painterly batch",
        description="Paint many pictures: the rows of a manifest, or every content image in every style. "
        "Rerun the same command after a stop: finished pictures are skipped.",
    )
    parser.add_argument("manifest", nargs="?", help="CSV or JSON lines: content, style, [output, preset, settings]")
    parser.add_argument("--contents", nargs="+", metavar="DIR|GLOB", help="photos: folders, globs or files")
    parser.add_argument("--styles", nargs="+", metavar="GLOB", help="artworks; every photo is painted in each")
    parser.add_argument("-o", "--output", metavar="DIR", help="folder for the results (made if missing)")
    parser.add_argument("--template", help=f"output file names (default {DEFAULT_TEMPLATE}, plus each grid "
                        "setting); names: {content} {style} {preset} {index} and any setting")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                        help="paint each job once per value (repeat for a cross product)")
    add_pool_options(parser, preset_help="starting settings for every row",
                     workers_help="jobs at once: local processes (default 1), or Ray actors (default one per GPU, "
                     "else one per node)", ray_help="run on a Ray cluster")
    parser.add_argument("--results", metavar="FILE.jsonl", help="results file (default DIR/results.jsonl)")
    add_settings_options(parser)
    return parser


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    """The jobs the command line asks for, every batch-wide mistake found."""
    flags = {f: getattr(args, f) for f in FIELD_NAMES if getattr(args, f) is not None}
    base = preset(args.preset).replace(**flags)
    if not args.output:
        raise SettingsError("say where the results go with -o DIR")
    if args.manifest and (args.contents or args.styles):
        raise SettingsError("give a manifest or --contents/--styles, not both")
    if args.manifest:
        rows = read_manifest(args.manifest)
    elif args.contents and args.styles:
        contents, styles = find_images(args.contents, "--contents"), find_images(args.styles, "--styles")
        rows = [{"content": str(c), "style": [str(s)]} for c in contents for s in styles]
    else:
        raise SettingsError("give a manifest (CSV or JSON lines) or both --contents and --styles")
    grid = parse_grid(args.grid)
    for point in itertools.product(*[values for _, values in grid]):
        base.replace(**dict(zip([n for n, _ in grid], point)))  # a bad grid value is everyone's problem
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"-o {out_dir} is a file; it must be a folder")
    template = args.template or default_template([n for n, _ in grid])
    return make_jobs(rows, flags, args.preset, out_dir, template, grid)


def batch_main(argv: list[str]) -> int:
    """``painterly batch ...``; returns the number of failed jobs (at most :data:`MAX_EXIT`)."""
    args = build_parser().parse_args(argv)
    machine = machine_from_args(args)
    check_workers(args)
    jobs = plan_jobs(args)
    results = Path(args.results) if args.results else Path(args.output) / "results.jsonl"
    pool = open_pool(args.workers, machine.threads or None, args.ray or None)
    make_folders(jobs)
    if not results.resolve().parent.is_dir():
        raise OutputError(f"the folder for --results does not exist: {results.parent}")
    bar = BatchBar(sys.stderr, enabled=not args.quiet)
    try:
        summary = run_batch(jobs, pool, results, on_progress=bar, machine=machine)
    except KeyboardInterrupt:
        bar.close()
        print(f"painterly: batch stopped; finished pictures are kept in {args.output}: run the same command "
              f"again to go on", file=sys.stderr)
        return 130
    bar.close()
    for failure in summary.failures:
        print(f"painterly: job {failure.job} ({failure.output}) failed: {failure.error}", file=sys.stderr)
    if not args.quiet:
        print(f"painterly: batch done: {summary.painted} painted, {summary.skipped} already done, "
              f"{summary.failed} failed in {clock(summary.seconds)}; results in {results}", file=sys.stderr)
    return min(summary.failed, MAX_EXIT)


