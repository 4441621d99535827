"""``painterly batch``: jobs, resume, bad rows, bad batches, local workers and a real Ray cluster.

Every job is tiny (48 px, two steps, the network cut at block2). The driver's logic is tested with
the in-process pool (no process start-up); local worker processes and Ray actors each get a few
whole-batch tests. The Ray cluster is one real local cluster for the whole session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from painterly.batch.jobs import make_jobs, parse_grid, read_manifest
from painterly.batch.run import run_batch
from painterly.cli.progress import BatchBar
from painterly.errors import SettingsError
from painterly.output import metadata
from painterly.output.record import input_digests
from painterly.workers.local import InlinePool, LocalPool

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content"
STYLES = DATA / "styles"


def results_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_status(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def pixels(path: Path) -> bytes:
    with Image.open(path) as img:
        return img.convert("RGB").tobytes()


@pytest.fixture
def two_photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        (folder / name).write_bytes((CONTENT / name).read_bytes())
    (folder / "notes.txt").write_text("not an image: a folder's other files are left out\n")
    return folder


# -- jobs, without running anything ------------------------------------------------------------

def test_cross_product_grid_and_template(tmp_path: Path, two_photos: Path, fast_changes: dict) -> None:
    rows = [{"content": str(c), "style": [str(s)]} for c in sorted(two_photos.glob("*.png"))
            for s in (STYLES / "great_wave.png", STYLES / "starry_night.png")]
    grid = parse_grid(["style-weight=1e-2,3e-2"])
    jobs = make_jobs(rows, fast_changes, "tutorial", tmp_path / "out", "{content}-{style}-{style_weight}.png", grid)
    assert [j.output.name for j in jobs[:3]] == [
        "chelsea-great_wave-0.01.png", "chelsea-great_wave-0.03.png", "chelsea-starry_night-0.01.png"]
    assert len(jobs) == 8 and all(j.settings is not None and j.settings.size == 48 for j in jobs)
    assert jobs[1].settings.style_weight == 0.03 and jobs[1].preset == "tutorial"
    assert jobs[0].settings.steps == 2  # the flags for all rows beat the preset (tutorial: 1000 steps)


def test_manifest_rows_columns_and_bad_values(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("content,style,steps,--style-layers,preset\n"
                        f"{CONTENT / 'chelsea.png'},a.png;b.png,3,block1_conv1 block2_conv1,\n"
                        "c.png,d.png,three,,quality\n")
    rows = read_manifest(manifest)
    assert rows[0]["style"] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]  # relative to the manifest
    jobs = make_jobs(rows, {"size": 64}, "tutorial", tmp_path, "{index}.png")
    assert jobs[0].settings.steps == 3 and jobs[0].settings.style_layers == ("block1_conv1", "block2_conv1")
    assert jobs[0].settings.size == 64 and jobs[0].error is None
    assert jobs[1].settings is None and jobs[1].error == "steps must be a whole number, got 'three'"
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text(json.dumps({"content": "c.png", "styles": ["s.png"], "style_layers": ["block1_conv1"],
                                 "output": "x.jpg", "preset": "nope"}) + "\n")
    job, = make_jobs(read_manifest(jsonl), {}, "tutorial", tmp_path / "o", "{index}.png")
    assert job.output == tmp_path / "o" / "x.jpg" and "unknown preset 'nope'" in job.error


# -- item 8: a bad batch is one line before any work -------------------------------------------

def _bad_manifests(tmp: Path) -> dict[str, Path]:
    files = {"no_style_column": "content,steps\nc.png,3\n", "unknown_setting": "content,style,styel_weight\nc,s,1\n",
             "empty_cell": "content,style\nc.png,\n", "bad_json.jsonl": '{"content": "c", "style": "s"}\n{oops\n',
             "header_only": "content,style\n", "machine_column": "content,style,device\nc,s,cpu\n"}
    paths = {}
    for name, text in files.items():
        path = tmp / (name if "." in name else f"{name}.csv")
        path.write_text(text)
        paths[name] = path
    return paths


@pytest.mark.parametrize("case, expected", [
    ("no_style_column", "has no 'style' column"),
    ("unknown_setting", "column 'styel_weight' is not a setting (did you mean 'style_weight'?)"),
    ("machine_column", "column 'device' is a machine setting, the same for the whole batch: give it as --device"),
    ("bad_machine_flag", "tile_size must be a multiple of 16"),
    ("empty_cell", "row 1 has no 'style' value"),
    ("bad_json.jsonl", "line 2 is not valid JSON"),
    ("header_only", "has no jobs"),
    ("missing_manifest", "manifest not found"),
    ("empty_folder", "--contents {tmp}/empty matches no image files"),
    ("glob_matching_nothing", "--styles {tmp}/*.jpeg matches no image files"),
    ("same_file_twice", "jobs 1 and 2 would both write"),
    ("unknown_grid_name", "--grid name 'styleweight' is not a setting (did you mean 'style_weight'?)"),
    ("bad_grid_value", "style_weight must be a number, got 'lots'"),
    ("bad_template", "--template names {photo}"),
    ("template_format", "cannot write '.gif' files"),
    ("unreachable_ray", "cannot reach the Ray cluster at 127.0.0.1:9"),
    ("bad_ray_address", "--ray takes auto or host:port"),
    ("no_output", "say where the results go with -o DIR"),
    ("both_sources", "not both"),
    ("zero_workers", "--workers must be at least 1, got 0"),
    ("unknown_flag_value", "unknown preset 'drafty' (did you mean 'draft'?)"),
])
def test_bad_batch_is_one_line_before_any_work(cli, tmp_path: Path, two_photos: Path, case: str,
                                               expected: str) -> None:
    manifests = _bad_manifests(tmp_path)
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    photos = ["--contents", str(two_photos), "--styles", str(STYLES / "great_wave.png")]
    argv = {
        "missing_manifest": [str(tmp_path / "nope.csv")],
        "empty_folder": ["--contents", str(tmp_path / "empty"), "--styles", str(STYLES / "great_wave.png")],
        "glob_matching_nothing": ["--contents", str(two_photos), "--styles", str(tmp_path / "*.jpeg")],
        "same_file_twice": [*photos, "--template", "{style}.png"],
        "unknown_grid_name": [*photos, "--grid", "styleweight=1,2"],
        "bad_grid_value": [*photos, "--grid", "style_weight=1,lots"],
        "bad_template": [*photos, "--template", "{photo}.png"],
        "template_format": [*photos, "--template", "{content}.gif"],
        "unreachable_ray": [*photos, "--ray", "127.0.0.1:9"],
        "bad_ray_address": [*photos, "--ray", "head-node"],
        "both_sources": [str(manifests["header_only"]), *photos],
        "zero_workers": [*photos, "--workers", "0"],
        "bad_machine_flag": [*photos, "--tile-size", "100"],
        "unknown_flag_value": [*photos, "--preset", "drafty"],
    }.get(case, [str(manifests[case])] if case in manifests else photos)
    argv = [*argv, *([] if case == "no_output" else ["-o", str(out)])]
    code, stdout, stderr = cli(["batch", *argv])
    assert code == 1
    assert stderr.count("\n") == 1 and stderr.startswith("painterly: error: ")
    assert expected.replace("{tmp}", str(tmp_path)) in stderr
    assert not out.exists()  # nothing made, not even the folder


def test_missing_ray_names_the_extra(cli, tmp_path: Path, two_photos: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    code, _, stderr = cli(["batch", "--contents", str(two_photos), "--styles", str(STYLES / "great_wave.png"),
                           "-o", str(tmp_path / "out"), "--ray", "auto"])
    assert code == 1 and "pip install 'painterly[ray]'" in stderr and stderr.count("\n") == 1


# -- the driver, in this process ---------------------------------------------------------------

def _jobs(tmp_path: Path, fast_changes: dict, rows: list[dict], template: str = "{content}-{style}.png"):
    return make_jobs(rows, fast_changes, "tutorial", tmp_path / "out", template)


def test_bad_rows_fail_alone_and_resume_skips_done(tmp_path: Path, fast_changes: dict, broken) -> None:
    good = {"content": str(CONTENT / "chelsea.png"), "style": [str(STYLES / "great_wave.png")]}
    rows = [good,
            {"content": str(broken["missing"]), "style": [str(STYLES / "great_wave.png")]},
            {"content": str(CONTENT / "coffee.png"), "style": [str(broken["truncated_png"])]},
            {"content": str(CONTENT / "coffee.png"), "style": [str(STYLES / "starry_night.png")], "steps": "x"},
            {"content": str(CONTENT / "coffee.png"), "style": [str(STYLES / "great_wave.png"),
                                                               str(STYLES / "starry_night.png")]}]
    jobs = _jobs(tmp_path, fast_changes, rows)
    (tmp_path / "out").mkdir()
    results = tmp_path / "out" / "results.jsonl"
    events = []
    summary = run_batch(jobs, InlinePool(), results, on_progress=events.append)
    assert (summary.painted, summary.failed) == (2, 3)
    lines = {r["job"]: r for r in results_of(results)}
    assert lines[2]["status"] == "failed" and lines[2]["error"] == f"image not found: {broken['missing']}"
    assert "truncated or corrupt" in lines[3]["error"] and str(broken["truncated_png"]) in lines[3]["error"]
    assert lines[4]["error"] == "steps must be a whole number, got 'x'"
    assert lines[1]["status"] == lines[5]["status"] == "done" and lines[1]["best_loss"] > 0
    assert lines[1]["seconds"] > 0 and lines[1]["attempts"] == 1
    record = metadata.read(jobs[0].output)
    assert record["inputs"] == input_digests(CONTENT / "chelsea.png", [STYLES / "great_wave.png"])
    assert record["content"] == str((CONTENT / "chelsea.png").resolve()) and record["preset"] == "tutorial"
    assert events[-1].painted == 2 and events[-1].failed == 3 and events[-1].images_per_hour > 0
    assert any(e.eta is not None for e in events)

    done_before = {j.index: j.output.stat().st_mtime_ns for j in jobs if j.output.exists()}
    summary = run_batch(jobs, InlinePool(), results)
    assert (summary.painted, summary.skipped, summary.failed) == (0, 2, 3)
    assert {j.index: j.output.stat().st_mtime_ns for j in jobs if j.output.exists()} == done_before

    changed = _jobs(tmp_path, {**fast_changes, "style_weight": 2.0}, rows[:1])
    assert run_batch(changed, InlinePool(), results).painted == 1  # other settings: not the same work


def test_one_engine_per_worker_reuses_network_and_style_targets(tmp_path: Path, fast_changes: dict) -> None:
    rows = [{"content": str(CONTENT / name), "style": [str(STYLES / "great_wave.png")]}
            for name in ("chelsea.png", "coffee.png")]
    jobs = _jobs(tmp_path, fast_changes, rows)
    (tmp_path / "out").mkdir()
    pool = InlinePool()
    run_batch(jobs[:1], pool, tmp_path / "r.jsonl")
    engine = pool.painter.engine
    targets = dict(engine.style_cache)
    run_batch(jobs[1:], pool, tmp_path / "r.jsonl")
    assert len(engine.networks) == 1 and targets and engine.style_cache.keys() == targets.keys()


def test_lost_job_is_retried_then_failed(tmp_path: Path, fast_changes: dict) -> None:
    class Flaky(InlinePool):
        """Loses every job's first try, and job 2 always."""

        def __init__(self) -> None:
            super().__init__()
            self.tries: dict[int, int] = {}

        def submit(self, work) -> None:
            self.tries[work.job] = self.tries.get(work.job, 0) + 1
            if self.tries[work.job] == 1 or work.job == 2:
                self.events.append(("lost", work.job, "worker process died (exit code -9)", None))
            else:
                super().submit(work)

    rows = [{"content": str(CONTENT / name), "style": [str(STYLES / "great_wave.png")]}
            for name in ("chelsea.png", "coffee.png")]
    jobs = _jobs(tmp_path, fast_changes, rows)
    (tmp_path / "out").mkdir()
    summary = run_batch(jobs, Flaky(), tmp_path / "r.jsonl")
    lines = {r["job"]: r for r in results_of(tmp_path / "r.jsonl")}
    assert lines[1]["status"] == "done" and lines[1]["attempts"] == 2
    assert lines[2]["status"] == "failed" and lines[2]["attempts"] == 3 and "3 times" in lines[2]["error"]
    assert summary.failed == 1


def test_stopped_batch_leaves_whole_files_and_goes_on(tmp_path: Path, fast_changes: dict) -> None:
    rows = [{"content": str(CONTENT / name), "style": [str(STYLES / "great_wave.png")]}
            for name in ("chelsea.png", "coffee.png", "astronaut.png")]
    jobs = _jobs(tmp_path, fast_changes, rows)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".{jobs[1].output.stem}.part.abc123.png"
    stale.write_bytes(b"half a png")  # what a batch killed while writing leaves

    def stop_after_first(event) -> None:
        if event.painted == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(jobs, InlinePool(), out / "r.jsonl", on_progress=stop_after_first)
    assert jobs[0].output.exists() and not jobs[1].output.exists() and not stale.exists()
    summary = run_batch(jobs, InlinePool(), out / "r.jsonl")
    assert (summary.skipped, summary.painted) == (1, 2)
    assert not list(out.glob(".*part*"))


def test_batch_bar(fast_changes: dict) -> None:
    import io

    from painterly.batch.run import BatchProgress, Outcome

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    event = BatchProgress(total=8, painted=3, skipped=1, failed=0, running={5: (7, 20), 6: (0, 20)},
                          elapsed=60.0, images_per_hour=180.0, eta=125.0, finished=Outcome(4, "x.png", "done"))
    plain, tty = io.StringIO(), Tty()
    BatchBar(plain)(event)
    BatchBar(tty)(event)
    assert plain.getvalue() == "batch [##########----------] 4/8 jobs (1 skipped, 0 failed), 180 images/h, ETA 2:05\n"
    assert tty.getvalue().startswith("\rbatch [#") and "| job 5: step 7/20" in tty.getvalue()
    assert "job 6" not in tty.getvalue()  # not started yet


# -- local worker processes --------------------------------------------------------------------

def test_local_workers_through_the_command_line(cli, tmp_path: Path, two_photos: Path, fast_args) -> None:
    out = tmp_path / "out"
    argv = ["batch", "--contents", str(two_photos), str(tmp_path / "gone.png"),
            "--styles", str(STYLES / "great_wave.png"), str(STYLES / "starry_night.png"), "-o", str(out),
            "--workers", "2", "--preset", "tutorial", *fast_args]
    code, _, stderr = cli(argv)
    assert code == 2, stderr  # the exit code counts the failed jobs: the missing photo in both styles
    assert f"failed: image not found: {tmp_path / 'gone.png'}" in stderr
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["chelsea-great_wave-tutorial.png", "chelsea-starry_night-tutorial.png",
                     "coffee-great_wave-tutorial.png", "coffee-starry_night-tutorial.png"]
    assert by_status(results_of(out / "results.jsonl")) == {"done": 4, "failed": 2}
    assert "6/6 jobs" in stderr and "images/h" in stderr and "4 painted" in stderr
    # the same picture as one painterly command makes
    code, _, _ = cli([CONTENT / "chelsea.png", STYLES / "great_wave.png", "-o", tmp_path / "one.png", "-q",
                      "--preset", "tutorial", *fast_args])
    assert code == 0 and pixels(tmp_path / "one.png") == pixels(out / "chelsea-great_wave-tutorial.png")
    code, _, stderr = cli(argv)
    assert code == 2 and "0 painted, 4 already done, 2 failed" in stderr


def test_local_worker_that_dies_has_its_job_retried(tmp_path: Path, fast_changes: dict) -> None:
    rows = [{"content": str(CONTENT / name), "style": [str(STYLES / "great_wave.png")]}
            for name in ("chelsea.png", "coffee.png", "astronaut.png")]
    jobs = _jobs(tmp_path, fast_changes, rows)
    (tmp_path / "out").mkdir()
    pool = LocalPool(1, threads=1)
    killed = []

    def kill_once(event) -> None:
        if event.painted == 1 and not killed and pool.busy:
            process = pool.workers[next(iter(pool.busy))].process
            os.kill(process.pid, signal.SIGKILL)
            killed.append(process.pid)

    summary = run_batch(jobs, pool, tmp_path / "r.jsonl", on_progress=kill_once)
    assert killed and summary.painted == 3 and all(j.output.exists() for j in jobs)
    assert max(r["attempts"] for r in results_of(tmp_path / "r.jsonl")) == 2


@pytest.mark.slow
def test_killed_batch_process_reruns_without_redoing(tmp_path: Path, fast_args) -> None:
    """SIGKILL the whole command mid-batch: every file left is whole, the rerun redoes nothing."""
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "painterly", "batch", "--contents", str(CONTENT), "--styles",
            str(STYLES / "great_wave.png"), str(STYLES / "starry_night.png"), "-o", str(out), "-q",
            "--preset", "tutorial", *fast_args]
    process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("[!.]*.png"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("[!.]*.png")}
    assert 2 <= len(first) < 8
    for name in first:
        assert metadata.read(out / name)["settings"]["steps"] == 2  # whole files, record and all
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.glob("[!.]*.png"))) == 8 and not list(out.glob(".*part*"))
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in first.items())
    assert by_status(results_of(out / "results.jsonl")[-8:])["skipped"] == len(first)


# -- a real Ray cluster ------------------------------------------------------------------------

def test_ray_actor_resources() -> None:
    from painterly.workers.ray_pool import actor_resources

    assert actor_resources([2], 0, 2, None) == (2, 1, 0.0)
    assert actor_resources([16, 16], 0, None, None) == (2, 16, 0.0)  # one actor per node
    assert actor_resources([8, 8], 0, 3, None) == (3, 4, 0.0)  # 5 CPUs each would not fit 3 on 2 nodes
    assert actor_resources([32, 32], 4, None, None) == (4, 16, 1.0)  # one actor per GPU
    assert actor_resources([8], 1, 2, None) == (2, 4, 0.5)
    with pytest.raises(SettingsError, match="3 Ray workers of 4 threads do not fit"):
        actor_resources([4, 4], 0, 3, 4)
    with pytest.raises(SettingsError, match="too few for 3 workers"):
        actor_resources([1, 1], 0, 3, None)


def test_ray_batch_matches_local_and_survives_a_killed_actor(ray_cluster, cli, tmp_path: Path,
                                                             fast_changes: dict, fast_args) -> None:
    from painterly.workers.ray_pool import RayPool

    rows = [{"content": str(CONTENT / c), "style": [str(STYLES / s)]}
            for c in ("chelsea.png", "coffee.png", "astronaut.png") for s in ("great_wave.png", "starry_night.png")]
    # Long enough for its actor to be asked how far it is (every 0.5 s), on a fast machine too, while the other
    # paints the rest: with 150 steps, a clean-clone run on a quiet machine saw no step reported at all.
    rows[0]["steps"] = "600"
    jobs = _jobs(tmp_path, fast_changes, rows)
    (tmp_path / "out").mkdir()
    pool = RayPool(workers=2)
    assert pool.cpus == 1 and pool.gpus == 0  # two actors share the two CPUs
    killed, steps = [], set()

    def kill_one_mid_job(event) -> None:
        steps.update(s for s, _ in event.running.values())
        if event.finished is not None and not killed and pool.in_flight:
            actor, job = next(iter(pool.in_flight.values()))
            ray_cluster.kill(actor)
            killed.append(job)

    summary = run_batch(jobs, pool, tmp_path / "r.jsonl", on_progress=kill_one_mid_job)
    assert killed and summary.painted == 6 and all(j.output.exists() for j in jobs)
    lines = {r["job"]: r for r in results_of(tmp_path / "r.jsonl")}
    assert lines[killed[0]]["attempts"] == 2 and lines[killed[0]]["status"] == "done"
    assert max(steps) > 0  # the running jobs' steps reach the driver

    local = tmp_path / "local"
    local.mkdir()
    inline = _jobs(local, fast_changes, rows[1:3])
    (local / "out").mkdir()
    run_batch(inline, InlinePool(), local / "r.jsonl")
    for a, b in zip(inline, jobs[1:3]):
        assert pixels(a.output) == pixels(b.output)  # the same pictures, shipped as bytes both ways
        assert metadata.read(a.output)["inputs"] == metadata.read(b.output)["inputs"]

    code, _, stderr = cli(["batch", "--contents", str(CONTENT / "chelsea.png"), "--styles",
                           str(STYLES / "great_wave.png"), "-o", str(tmp_path / "cli"), "--ray", "auto",
                           "--preset", "tutorial", *fast_args])
    assert code == 0 and "1 painted" in stderr
