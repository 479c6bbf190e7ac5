"""``vostool bench`` end to end on small benchmark folders made in tmp_path (no ../shared needed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vostool.bench.metrics import statistics
from vostool.bench.reference import reference_f, reference_j
from vostool.bench.scoring import evaluate
from vostool.cli.bench import bench
from vostool.datasets import open_dataset
from vostool.errors import InputError
from vostool.io.masks import DAVIS_PALETTE, write_index_png

H, W = 48, 80


def _frame_ids(t: int, n_obj: int = 2) -> np.ndarray:
    ids = np.zeros((H, W), np.uint8)
    cv2.ellipse(ids, (20 + 2 * t, 20), (10, 7), 0, 0, 360, 1, -1)
    if n_obj > 1:
        cv2.rectangle(ids, (50, 25 - t), (70, 40 - t), 2, -1)
    return ids


def _prediction(t: int, n_obj: int = 2) -> np.ndarray:
    """A plausible imperfect prediction: shifted and with a missing corner."""
    ids = np.roll(_frame_ids(t, n_obj), 2 + t % 3, axis=1)
    ids[:6, :6] = 0
    return ids


def _make_davis17(root: Path, seqs: dict[str, int], *, void: bool = True, images: bool = True, split: str = "val") -> None:
    for name, n in seqs.items():
        ann = root / "Annotations" / "480p" / name
        ann.mkdir(parents=True)
        img = root / "JPEGImages" / "480p" / name
        if images:
            img.mkdir(parents=True)
        rng = np.random.default_rng(len(name))
        for t in range(n):
            ids = _frame_ids(t)
            if void:
                ids[H - 3 :, :] = 255
            write_index_png(ann / f"{t:05d}.png", ids)
            if images:
                rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
                rgb[_frame_ids(t) == 1] = (200, 40, 40)
                rgb[_frame_ids(t) == 2] = (40, 200, 40)
                cv2.imwrite(str(img / f"{t:05d}.jpg"), rgb[..., ::-1])
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / f"{split}.txt").write_text("\n".join(seqs) + "\n")


def _write_predictions(res: Path, seqs: dict[str, int], fn=_prediction) -> None:
    for name, n in seqs.items():
        (res / name).mkdir(parents=True, exist_ok=True)
        for t in range(n):
            write_index_png(res / name / f"{t:05d}.png", fn(t))


def _expected_rows(seqs: dict[str, int], n_obj: int = 2) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rows = []
    for name, n in seqs.items():
        for k in range(1, n_obj + 1):
            j = np.array([reference_j(_frame_ids(t, n_obj) == k, _prediction(t, n_obj) == k) for t in range(1, n - 1)])
            f = np.array([reference_f(_frame_ids(t, n_obj) == k, _prediction(t, n_obj) == k) for t in range(1, n - 1)])
            rows.append((f"{name}_{k}", j, f))
    return rows


SEQS = {"alpha": 7, "beta": 5}


@pytest.fixture()
def davis(tmp_path: Path) -> tuple[Path, Path]:
    root, res = tmp_path / "DAVIS", tmp_path / "res"
    _make_davis17(root, SEQS)
    _write_predictions(res, SEQS)
    return root, res


def test_eval_only_writes_official_csvs_equal_to_reference(davis: tuple[Path, Path], tmp_path: Path) -> None:
    root, res = davis
    out = tmp_path / "reports"
    r = CliRunner().invoke(bench, ["--eval-only", "--results", str(res), "--root", str(root), "-o", str(out), "--workers", "2", "-q"])
    assert r.exit_code == 0, r.output
    rows = _expected_rows(SEQS)
    stats = [(statistics(j), statistics(f)) for _, j, f in rows]
    jm, fm = np.mean([s[0].mean for s in stats]), np.mean([s[1].mean for s in stats])
    g = [
        (jm + fm) / 2,
        jm,
        np.mean([s[0].recall for s in stats]),
        np.mean([s[0].decay for s in stats]),
        fm,
        np.mean([s[1].recall for s in stats]),
        np.mean([s[1].decay for s in stats]),
    ]
    expected_global = "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n" + ",".join("%.3f" % v for v in g) + "\n"
    assert (out / "global_results-val.csv").read_text() == expected_global
    expected_seq = "Sequence,J-Mean,F-Mean\n" + "".join(
        f"{n},{'%.3f' % s[0].mean},{'%.3f' % s[1].mean}\n" for (n, _, _), s in zip(rows, stats)
    )
    assert (out / "per-sequence_results-val.csv").read_text() == expected_seq
    assert r.stdout == expected_global  # data on stdout, the table went to stderr
    data = json.loads((out / "results-val.json").read_text())
    assert data["global"]["J-Mean"] == float(jm)
    obj = data["sequences"][0]["objects"][1]
    assert obj["name"] == "alpha_2" and obj["frames"] == ["00001", "00002", "00003", "00004", "00005"]
    assert obj["J_per_frame"] == rows[1][1].tolist() and obj["F_per_frame"] == rows[1][2].tolist()
    assert data["sequences"][0]["score_fps"] > 0
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no partial files left


def test_workers_do_not_change_numbers(davis: tuple[Path, Path]) -> None:
    root, res = davis
    ds = open_dataset(root)
    a, b = evaluate(ds, res, workers=1), evaluate(ds, res, workers=2)
    assert a.global_metrics() == b.global_metrics()
    assert [(n, o.j.tolist(), o.f.tolist()) for n, o in a.object_rows()] == [(n, o.j.tolist(), o.f.tolist()) for n, o in b.object_rows()]


def test_missing_prediction_names_the_frame(davis: tuple[Path, Path]) -> None:
    root, res = davis
    (res / "beta" / "00002.png").unlink()
    r = CliRunner().invoke(bench, ["--eval-only", "--results", str(res), "--root", str(root), "--workers", "1", "-q"])
    assert isinstance(r.exception, InputError)
    assert "beta" in str(r.exception) and "00002" in str(r.exception)


def test_extra_object_id_is_an_error(davis: tuple[Path, Path]) -> None:
    root, res = davis
    bad = _prediction(3)
    bad[0, 0] = 3
    write_index_png(res / "alpha" / "00003.png", bad)
    with pytest.raises(InputError, match=r"alpha frame 00003.*object id 3.*2 object"):
        evaluate(open_dataset(root), res)


def test_size_mismatch_is_an_error_or_resized(davis: tuple[Path, Path], tmp_path: Path) -> None:
    root, res = davis
    small = tmp_path / "small"
    _write_predictions(small, SEQS, lambda t: cv2.resize(_prediction(t), (W // 2, H // 2), interpolation=cv2.INTER_NEAREST_EXACT))
    with pytest.raises(InputError, match=r"sequence alpha.*40x24.*80x48.*--resize"):
        evaluate(open_dataset(root), small)
    resized = evaluate(open_dataset(root), small, resize=True)
    up = tmp_path / "up"
    _write_predictions(
        up,
        SEQS,
        lambda t: cv2.resize(
            cv2.resize(_prediction(t), (W // 2, H // 2), interpolation=cv2.INTER_NEAREST_EXACT),
            (W, H),
            interpolation=cv2.INTER_NEAREST_EXACT,
        ),
    )
    assert resized.global_metrics() == evaluate(open_dataset(root), up).global_metrics()
    assert resized.global_metrics()["J-Mean"] < 1.0


def test_rgb_predictions_score_like_palette_ones(davis: tuple[Path, Path], tmp_path: Path) -> None:
    root, res = davis
    rgb = tmp_path / "rgb"
    for name, n in SEQS.items():
        (rgb / name).mkdir(parents=True)
        for t in range(n):
            Image.fromarray(DAVIS_PALETTE[_prediction(t)]).save(rgb / name / f"{t:05d}.png")
    ds = open_dataset(root)
    assert evaluate(ds, rgb).global_metrics() == evaluate(ds, res).global_metrics()


def test_long_sequence_decay_uses_the_last_quarter(tmp_path: Path) -> None:
    root, res = tmp_path / "D", tmp_path / "r"
    n = 302  # 300 scored frames
    ann, pred = root / "Annotations" / "480p" / "long", res / "long"
    ann.mkdir(parents=True)
    pred.mkdir(parents=True)
    gt = np.zeros((16, 16), np.uint8)
    gt[4:12, 4:12] = 1
    for t in range(n):
        write_index_png(ann / f"{t:05d}.png", gt)
        write_index_png(pred / f"{t:05d}.png", gt if t <= 225 else np.zeros_like(gt))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("long\n")
    g = evaluate(open_dataset(root), res).global_metrics()
    # Scored frames 1..300 -> values v[0..299]; v[i] = 1 for frame i + 1 <= 225, so the last bin
    # v[224:300] holds one 1 and 75 zeros, the first bin is all ones.
    assert g["J-Decay"] == 1.0 - 1 / 76
    assert g["F-Decay"] == 1.0 - 1 / 76
    assert g["J-Recall"] == 225 / 300


def _make_davis16(root: Path, seqs: dict[str, int], res: str = "480p") -> None:
    for name, n in seqs.items():
        ann = root / "Annotations" / res / name
        ann.mkdir(parents=True)
        for t in range(n):
            Image.fromarray(((_frame_ids(t, 1) == 1) * 255).astype(np.uint8), mode="L").save(ann / f"{t:05d}.png")
    # The original DAVIS 2016 release lists file pairs, one frame per line.
    (root / "ImageSets" / "1080p").mkdir(parents=True)
    lines = [f"/JPEGImages/1080p/{name}/{t:05d}.jpg /Annotations/1080p/{name}/{t:05d}.png" for name, n in seqs.items() for t in range(n)]
    (root / "ImageSets" / "1080p" / "val.txt").write_text("\n".join(lines) + "\n")


def test_davis16_binary_layout_reads_255_as_object_one(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS16"
    _make_davis16(root, SEQS)
    ds = open_dataset(root)
    assert ds.kind == "davis16" and [s.name for s in ds.sequences] == list(SEQS)
    palette, gray = tmp_path / "p", tmp_path / "g"
    _write_predictions(palette, SEQS, lambda t: _prediction(t, 1))
    for name, n in SEQS.items():
        (gray / name).mkdir(parents=True)
        for t in range(n):
            Image.fromarray((_prediction(t, 1) * 255).astype(np.uint8), mode="L").save(gray / name / f"{t:05d}.png")
    a, b = evaluate(ds, palette), evaluate(ds, gray)
    assert a.global_metrics() == b.global_metrics()
    expected = _expected_rows(SEQS, 1)
    assert [o.j.tolist() for _, o in a.object_rows()] == [j.tolist() for _, j, _ in expected]
    assert [o.f.tolist() for _, o in a.object_rows()] == [f.tolist() for _, _, f in expected]


def test_resolution_folders(tmp_path: Path) -> None:
    root = tmp_path / "D"
    _make_davis16(root, {"alpha": 4}, res="240p")
    assert open_dataset(root).resolution == "240p"
    with pytest.raises(InputError, match="available: 240p"):
        open_dataset(root, resolution="480p")
    _make_davis16(tmp_path / "E", {"alpha": 4}, res="480p")
    (tmp_path / "E" / "Annotations" / "1080p").mkdir()
    assert open_dataset(tmp_path / "E").resolution == "480p"


def test_split_listing_missing_sequences_is_an_error(davis: tuple[Path, Path]) -> None:
    root, _ = davis
    (root / "ImageSets" / "2017" / "val.txt").write_text("alpha\nbeta\ngamma\n")
    with pytest.raises(InputError, match="gamma"):
        open_dataset(root)
    assert [s.name for s in open_dataset(root, sequences=["beta"]).sequences] == ["beta"]


def test_davis_submission_zip(davis: tuple[Path, Path], tmp_path: Path) -> None:
    root, res = davis
    z = tmp_path / "sub.zip"
    r = CliRunner().invoke(bench, ["--eval-only", "--results", str(res), "--root", str(root), "--submission", str(z), "-q"])
    assert r.exit_code == 0, r.output
    names = zipfile.ZipFile(z).namelist()
    assert len(names) == 12 and "alpha/00000.png" in names and "beta/00004.png" in names


def _make_ytvos(root: Path) -> None:
    """Video v1: object 1 from frame 00000, object 2 given on 00010; annotations every 5th frame."""
    split = root / "valid"
    meta = {
        "videos": {
            "v1": {
                "objects": {
                    "1": {"category": "cat", "frames": [f"{t:05d}" for t in range(0, 30, 5)]},
                    "2": {"category": "dog", "frames": [f"{t:05d}" for t in range(10, 30, 5)]},
                }
            }
        }
    }
    split.mkdir(parents=True)
    (split / "meta.json").write_text(json.dumps(meta))
    ann, img = split / "Annotations" / "v1", split / "JPEGImages" / "v1"
    ann.mkdir(parents=True)
    img.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(30):
        ids = _frame_ids(t // 3)
        if t < 10:
            ids[ids == 2] = 0
        if t % 5 == 0:
            write_index_png(ann / f"{t:05d}.png", ids)
        rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(img / f"{t:05d}.jpg"), rgb)


def test_ytvos_objects_scored_after_their_first_frame_and_submission(tmp_path: Path) -> None:
    root = tmp_path / "ytvos"
    _make_ytvos(root)
    ds = open_dataset(root, split="valid")
    assert ds.kind == "ytvos" and ds.sequences[0].objects == {1: "00000", 2: "00010"}
    res = tmp_path / "res" / "v1"
    res.mkdir(parents=True)
    for t in range(0, 30, 5):
        write_index_png(res / f"{t:05d}.png", _frame_ids(t // 3))
    result = evaluate(ds, tmp_path / "res")
    objs = {o.object_id: o for o in result.sequences[0].objects}
    assert objs[1].frames == ["00005", "00010", "00015", "00020"]  # last annotated frame 00025 excluded
    assert objs[2].frames == ["00015", "00020"]
    assert objs[1].j[0] == 1.0 and objs[2].j.tolist() == [1.0, 1.0]
    z = tmp_path / "yt.zip"
    r = CliRunner().invoke(
        bench,
        [
            "--dataset",
            "ytvos",
            "--split",
            "valid",
            "--root",
            str(root),
            "--eval-only",
            "--results",
            str(tmp_path / "res"),
            "--submission",
            str(z),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    assert sorted(zipfile.ZipFile(z).namelist()) == [f"Annotations/v1/{t:05d}.png" for t in range(0, 30, 5)]


def test_run_flow_method_then_score(davis: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("torch")
    root, _ = davis
    res, out = tmp_path / "run", tmp_path / "rep"
    r = CliRunner().invoke(
        bench,
        [
            "--root",
            str(root),
            "--method",
            "flow",
            "--flow",
            "dis",
            "--device",
            "cpu",
            "--results",
            str(res),
            "-o",
            str(out),
            "--workers",
            "2",
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (res / "alpha").iterdir()) == [f"{t:05d}.png" for t in range(7)]
    data = json.loads((out / "results-val.json").read_text())
    assert data["method"] == "flow" and data["flow"] == "dis"
    seq = data["sequences"][0]
    assert seq["method"]["frames"] == 7 and seq["method"]["fps"] > 0 and "flow" in seq["method"]["timer"]["stages"]
    # Real propagation of clearly coloured objects on a small clip tracks them reasonably.
    assert 0.3 < data["global"]["J-Mean"] <= 1.0


def test_speed_plots(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "speed"
    r = CliRunner().invoke(
        bench,
        [
            "--speed",
            "--method",
            "flow",
            "--flow",
            "dis",
            "--device",
            "cpu",
            "--objects",
            "1,3",
            "--size",
            "64",
            "--frames",
            "6",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    data = json.loads((out / "speed.json").read_text())
    assert [(row["objects"], row["size"]) for row in data["rows"]] == [(1, [114, 64]), (3, [114, 64])]
    assert all(row["fps"] > 0 and row["stages"] for row in data["rows"])
    for name in ("speed_fps.png", "speed_stages.png"):
        img = Image.open(out / name)
        assert img.size[0] > 300
    assert r.stdout.splitlines()[0] == "method,objects,fps"


def test_usage_errors_are_one_line() -> None:
    r = CliRunner().invoke(bench, ["--eval-only", "--root", "."])
    assert isinstance(r.exception, InputError) and "--results" in str(r.exception)
    r = CliRunner().invoke(bench, ["--root", "."])
    assert isinstance(r.exception, InputError) and "--method" in str(r.exception)


def test_run_on_ytvos_gives_late_objects_and_submits_every_fifth_frame(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    root = tmp_path / "ytvos"
    _make_ytvos(root)
    res, z = tmp_path / "run", tmp_path / "yt.zip"
    r = CliRunner().invoke(
        bench,
        [
            "--root",
            str(root),
            "--split",
            "valid",
            "--method",
            "flow",
            "--flow",
            "dis",
            "--device",
            "cpu",
            "--results",
            str(res),
            "--submission",
            str(z),
            "--workers",
            "1",
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(list((res / "v1").glob("*.png"))) == 30
    ids = [np.unique(np.array(Image.open(res / "v1" / f"{t:05d}.png"))).tolist() for t in (0, 9, 10, 29)]
    assert 2 not in ids[0] and 2 not in ids[1] and 2 in ids[2] and 1 in ids[3]
    assert sorted(zipfile.ZipFile(z).namelist()) == [f"Annotations/v1/{t:05d}.png" for t in range(0, 30, 5)]


def test_speed_on_real_frames_of_a_dataset(davis: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("torch")
    root, _ = davis
    out = tmp_path / "speed"
    r = CliRunner().invoke(
        bench,
        [
            "--speed",
            "--root",
            str(root),
            "--method",
            "flow",
            "--flow",
            "dis",
            "--device",
            "cpu",
            "--objects",
            "1,2",
            "--size",
            "48",
            "--frames",
            "5",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "speed.json").read_text())["rows"]
    assert [(row["objects"], row["source"], row["size"]) for row in rows] == [
        (1, "davis17/alpha", [80, 48]),
        (2, "davis17/alpha", [80, 48]),
    ]


def test_root_cli_registers_bench() -> None:
    from vostool.cli import cli

    r = CliRunner().invoke(cli, ["bench", "--help"])
    assert r.exit_code == 0 and "--eval-only" in r.output and "--submission" in r.output


def test_binary_ids_of_each_annotation_style() -> None:
    from vostool.datasets import binary_ids

    gray = np.array([[0, 255], [255, 0]], np.uint8)
    assert binary_ids(gray).tolist() == [[0, 1], [1, 0]]
    assert binary_ids(np.array([[0, 1]], np.uint8)).tolist() == [[0, 1]]
    # A DAVIS 2017 palette annotation read as DAVIS 2016: union of the objects, void excluded.
    palette = np.array([[0, 1, 2, 255]], np.uint8)
    assert binary_ids(palette).tolist() == [[0, 1, 1, 0]]


@pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("pgrep"), reason="forked scoring processes: Linux (pgrep)")
def test_ctrl_c_while_scoring_in_processes(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole foreground group) while forked workers score: exit 130, no
    traceback from the parent or a worker, no worker left behind, no report written."""
    root, res = tmp_path / "DAVIS", tmp_path / "res"
    gt = np.zeros((1080, 1920), np.uint8)
    cv2.ellipse(gt, (900, 540), (450, 270), 0, 0, 360, 1, -1)
    write_index_png(tmp_path / "gt.png", gt)
    write_index_png(tmp_path / "pred.png", np.roll(gt, 5, axis=1))
    names = [f"s{i:02d}" for i in range(16)]
    for name in names:  # 16 x 150 1080p frames: seconds of work, every file a link to one PNG
        (root / "Annotations" / "480p" / name).mkdir(parents=True)
        (res / name).mkdir(parents=True)
        for t in range(150):
            (root / "Annotations" / "480p" / name / f"{t:05d}.png").symlink_to(tmp_path / "gt.png")
            (res / name / f"{t:05d}.png").symlink_to(tmp_path / "pred.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "vostool", "bench", "--eval-only", "--root", str(root), "--results", str(res), "-o", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "-q"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job inherits SIGINT ignored
    )
    children: list[str] = []
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and len(children) < 2:
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        children = found if len(found) >= 2 else children
    os.killpg(proc.pid, signal.SIGSTOP)  # hold the group, so Ctrl-C lands while the workers score

    def running(pid: str) -> bool:  # not exited, not a zombie
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"

    assert proc.poll() is None and len(children) == 2 and all(map(running, children)), "scoring finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and err.strip().splitlines() == ["vostool: aborted"], err
    assert not any(Path(f"/proc/{c}").exists() for c in children)
    assert not list(out.glob("*.csv")) and not list(out.glob("*.json"))
