"""Exact resume after SIGINT / SIGTERM / SIGKILL, atomic artifacts, multi-process training, sweeps.

Every interruption happens at a place the test names (LION_KIT_FAULT, lion_kit/runs.py's
`fault_point`), never after a timer: a test that races a running process fails by chance."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lion_kit.train import train

ARGS = ["--preset", "smoke", "--method", "lion", "--epochs", "3", "--iters", "12", "--batch-size", "8",
        "--unlabeled-batch-size", "8", "--delta-neg", "0.12", "--lr", "0.002"]
KW = dict(method="lion", epochs=3, iters=12, batch_size=8, unlabeled_batch_size=8, delta_neg=0.12, lr=0.002)


def _start(out, *extra, fault=None):
    env = {**os.environ, "LION_KIT_FAULT": fault} if fault else None
    return subprocess.Popen([sys.executable, "-m", "lion_kit", "train", *ARGS, *extra, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    train("smoke", out=str(out), workers=0, **KW)
    return out


def _same_run(a, b):
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    assert (a / "relabels.csv").read_text() == (b / "relabels.csv").read_text()
    ha, hb = np.load(a / "history.npz"), np.load(b / "history.npz")
    for k in ha.files:
        assert np.array_equal(ha[k], hb[k]), k


@pytest.mark.parametrize("sig,workers", [("INT", 0), ("TERM", 1), ("INT", 2)])
def test_stop_mid_epoch_then_resume_is_exact_with_any_worker_count(reference, tmp_path, sig, workers):
    """The reference ran uninterrupted with 0 workers: augmentation is a function of the draw,
    so neither the worker count nor the interruption changes a byte."""
    out = tmp_path / "run"
    p = _start(out, "--workers", str(workers), fault=f"iter:2:4={sig}")  # a third into epoch 2
    log = p.communicate(timeout=300)[0]
    assert p.returncode == 130, log
    assert "checkpoint written" in log and "epoch 2, iteration 4" in log and "--resume" in log
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    with pytest.raises(FileExistsError, match="already holds a run"):
        train("smoke", out=str(out), workers=0, **KW)
    train("smoke", out=str(out), workers=(workers + 1) % 3, resume=True, **KW)  # resumed with another count
    _same_run(reference, out)


def _whole(out):
    """Every final artifact in `out` reads back completely."""
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line)
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert ck["epoch"] == len(ck["metrics"])
    if (out / "history.npz").exists():
        with np.load(out / "history.npz") as h:
            assert all(h[k].shape[0] >= 1 for k in h.files)
    return ck


@pytest.mark.parametrize("fault,epochs_saved,stale", [
    ("write:history.npz@1=KILL", 1, 1),   # epoch 1's checkpoint written, its artifacts half done
    ("write:last.pt@2=KILL", 1, 1),       # inside epoch 2's checkpoint write: epoch 1's stays
    ("iter:2:5=KILL", 1, 0),              # mid-epoch, between two iterations
])
def test_sigkill_anywhere_leaves_whole_files_and_resume_is_exact(reference, tmp_path, capsys, fault, epochs_saved, stale):
    out = tmp_path / "run"
    p = _start(out, "--workers", "2", fault=fault)
    log = p.communicate(timeout=300)[0]
    assert p.returncode == -signal.SIGKILL, log
    assert len(list(out.glob(".*.tmp*"))) == stale  # SIGKILL between a temporary and its rename
    assert _whole(out)["epoch"] == epochs_saved
    train("smoke", out=str(out), workers=2, resume=True, **KW)
    said = capsys.readouterr().out
    assert (f"removed {stale} stale temporary file(s)" in said) == bool(stale), said
    assert not list(out.glob(".*.tmp*"))
    _same_run(reference, out)


def test_overwrite_also_removes_stale_temporaries(reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / ".last.pt.tmp4242").write_bytes(b"half a checkpoint")
    train("smoke", out=str(out), workers=0, overwrite=True, **{**KW, "epochs": 1, "iters": 2})
    assert "removed 1 stale temporary file(s)" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp*"))


def test_resume_refuses_a_different_configuration(reference):
    with pytest.raises(ValueError, match="configuration differs.*lr"):
        train("smoke", out=str(reference), workers=0, resume=True, **{**KW, "lr": 0.1})


def test_split_file_errors(tmp_path):
    from lion_kit.config import resolve
    from lion_kit.train import Trainer
    with pytest.raises(FileNotFoundError, match="split file not found"):
        Trainer(resolve("smoke", None, dict(out=str(tmp_path / "a"), split_file=str(tmp_path / "nope.txt"))))
    with pytest.raises(ValueError, match="no paper split for 123"):
        Trainer(resolve("smoke", None, dict(out=str(tmp_path / "b"), n_labeled=123)))


@pytest.mark.skipif(sys.platform != "linux", reason="gloo on Linux")
def test_torchrun_two_processes_agree_and_write_once(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lion_kit", "train", *ARGS, "--epochs", "2", "--iters", "6", "--workers", "0", "--relabel-epoch", "1",
           "--delta-neg", "0.14", "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2 and s["ranks_agree"] is True
    assert s["rank_fingerprints"][0][0] > 0  # the complementary bank was written to, identically on both ranks
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # written once, not per rank
    assert r.stdout.count("epoch 2/2") == 1  # only rank 0 reports


def test_sweep_reports_failures_and_keeps_going(tmp_path):
    from lion_kit import sweep
    jobs = sweep.make_grid(["supervised"], [100], [0], root=str(tmp_path), preset="smoke", epochs=1, iters=2)
    bad = sweep.make_grid(["lion"], [100], [0], root=str(tmp_path), preset="smoke", epochs=1, iters=2, batch_size=5000)
    df = sweep.run_grid(jobs + bad, progress=False)
    assert df.set_index("variant")["status"].to_dict() == {"supervised": "done", "lion": "failed"}
    failed = df[df.status == "failed"].iloc[0]
    assert "cannot fill a batch of 5000" in failed["error"] and Path(failed["log"]).read_text()
    with pytest.raises(ValueError, match="unknown variant"):
        sweep.make_grid(["lion-typo"])


def test_a_cell_whose_checkpoint_has_another_configuration_is_trained_again_and_logged(tmp_path):
    from lion_kit import sweep
    jobs = sweep.make_grid(["supervised"], [100], [0], root=str(tmp_path), preset="smoke", epochs=1, iters=2)
    out = Path(jobs[0]["out"])
    train("smoke", out=str(out), method="supervised", n_labeled=100, epochs=1, iters=3)  # other iters
    df = sweep.run_grid(jobs, progress=False)
    assert df["status"].tolist() == ["done"]
    log = (out / "log.txt").read_text()
    assert "not resumed, training from the start" in log and "configuration differs" in log and "epoch 1/1" in log
    assert json.loads((out / "config.json").read_text())["iters"] == 2


def test_sweep_parallel_workers_and_submitit_local(tmp_path):
    from lion_kit import sweep
    jobs = sweep.make_grid(["supervised", "fixmatch"], [100], [0], root=str(tmp_path / "pool"), preset="smoke", epochs=1, iters=2)
    df = sweep.run_grid(jobs, workers=2, progress=False)
    assert set(df["status"]) == {"done"}
    pytest.importorskip("submitit")
    jobs = sweep.make_grid(["supervised"], [100], [1], root=str(tmp_path / "slurm"), preset="smoke", epochs=1, iters=2)
    df = sweep.run_grid(jobs, executor="submitit-local", slurm={"timeout_min": 10}, progress=False)
    assert set(df["status"]) == {"done"}
    assert (Path(jobs[0]["out"]) / "summary.json").exists()


@pytest.mark.parametrize("flag,value,expected", [
    ("--delta-neg", "2", "delta_neg=2.0; expected a value in [0, 1]"),
    ("--ema", "1", "ema=1.0; expected a value in [0, 1)"),
    ("--lr", "0", "lr=0.0; expected a number > 0"),
    ("--iters", "0", "iters=0; expected an integer >= 1"),
    ("--w-u", "-0.5", "w_u=-0.5; expected a number >= 0"),
    ("--weight-momentum", "1.5", "weight_momentum=1.5; expected a value in [0, 1)"),
])
def test_out_of_range_values_are_refused_before_a_run(tmp_path, flag, value, expected):
    r = subprocess.run([sys.executable, "-m", "lion_kit", "train", "--preset", "smoke", flag, value,
                        "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {expected}"
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_commands_print_one_error_line_on_bad_input(tmp_path, folder_root):

    no_neutral = tmp_path / "fer"
    shutil.copytree(folder_root, no_neutral)
    shutil.rmtree(no_neutral / "train" / "neutral")
    r = subprocess.run([sys.executable, "-m", "lion_kit", "splits", "--dataset", "folder", "--data-root", str(no_neutral),
                        "--counts", "1,1,1,1,1,1,1", "--out", str(tmp_path / "s.txt")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "neutral" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_nonfinite_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import torch
    from lion_kit import losses
    out = tmp_path / "nan"
    real = losses.labeled_loss
    calls = {"n": 0}

    def poisoned(*a):
        calls["n"] += 1
        v = real(*a)
        return v * float("nan") if calls["n"] == KW["iters"] + 5 else v  # iteration 5 of epoch 2

    monkeypatch.setattr(losses, "labeled_loss", poisoned)
    with pytest.raises(FloatingPointError, match=r"iteration 17 \(epoch 2\): loss = nan, L_x = nan.*last.pt \(end of epoch 1\)"):
        train("smoke", out=str(out), workers=0, **KW)
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["epoch"] == 1 and ck["iter_in_epoch"] == 0  # the last good checkpoint, untouched
    bad = torch.load(out / "nonfinite.pt", weights_only=False)
    assert bad["iteration"] == 17 and len(bad["labeled_positions"]) == KW["batch_size"]
    assert all(torch.isfinite(v).all() for v in bad["model"].values() if v.is_floating_point())


def test_resume_from_a_truncated_checkpoint_names_it_and_overwrites_nothing(reference, tmp_path):

    out = tmp_path / "cut"
    shutil.copytree(reference, out)
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    with pytest.raises(ValueError, match=r"cannot resume: .*last.pt is truncated or not a lion_kit checkpoint.*best.pt exists"):
        train("smoke", out=str(out), workers=0, resume=True, **KW)
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before


def test_a_second_process_on_the_same_folder_is_refused(tmp_path):
    from lion_kit.train import lock_run_dir
    out = tmp_path / "busy"
    held = lock_run_dir(out)  # as a running training process holds it
    r = subprocess.run([sys.executable, "-m", "lion_kit", "train", *ARGS, "--out", str(out), "--overwrite"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "in use by a running training process (pid" in r.stderr
    with pytest.raises(FileExistsError, match="this process"):  # a second notebook cell, say
        train("smoke", out=str(out), workers=0, overwrite=True, **{**KW, "epochs": 1, "iters": 2})
    held.close()  # the first run ends: the folder is free again
    train("smoke", out=str(out), workers=0, **{**KW, "epochs": 1, "iters": 2})
    assert (out / "summary.json").exists()
    train("smoke", out=str(out), workers=0, overwrite=True, **{**KW, "epochs": 1, "iters": 2})  # released on return


def test_a_refused_start_releases_the_folder(tmp_path, reference):
    """A run that fails to start (here: the folder holds a run) must not keep the folder locked
    in a long-lived process such as a notebook kernel: the retry with --overwrite goes through."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train("smoke", out=str(out), workers=0, **{**KW, "epochs": 1, "iters": 2})
    train("smoke", out=str(out), workers=0, overwrite=True, **{**KW, "epochs": 1, "iters": 2})
    assert (out / "summary.json").exists()


def test_a_killed_trainer_frees_its_folder_while_its_forked_workers_live_on(tmp_path):
    """DataLoader workers are forked and notice their parent's death only seconds later; the lock
    must not pass to them (the CI failure flock caused), so a resume right after SIGKILL works."""
    from lion_kit.runs import lock_run_dir
    out = tmp_path / "run"
    code = ("import os, sys, time\nfrom pathlib import Path\nfrom lion_kit.runs import lock_run_dir\n"
            f"lock = lock_run_dir(Path({str(out)!r}))\n"
            "if os.fork() == 0:\n    time.sleep(15); os._exit(0)\n"
            "print('ready', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    with pytest.raises(FileExistsError, match="in use"):
        lock_run_dir(out)
    p.kill()
    p.wait()
    lock_run_dir(out).close()  # the forked child still has the file open, and holds nothing


def test_sigterm_stops_the_whole_grid_not_only_the_running_cell(tmp_path):
    keep, runs = tmp_path / "keep", tmp_path / "runs"
    args = [sys.executable, "-m", "lion_kit", "results", "run", "--preset", "smoke", "--set", "epochs=3",
            "--set", "iters=30", "--variants", "supervised", "--budgets", "100", "--seeds", "0,1",
            "--split-seeds", "", "--keep", str(keep), "--runs", str(runs)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "LION_KIT_FAULT": "iter:2:10=TERM"})
    first = runs / "supervised" / "n100_s0"
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 130, out
    # what the next `results run` does with the running cell, said as it is
    assert ("interrupted: cell supervised/n100_s0 stopped at epoch 2, iteration 10 with its checkpoint written; "
            "the next `results run` continues it from there") in out, out
    assert (first / "last.pt").exists() and not (first / "summary.json").exists()  # checkpoint written, cell unfinished
    assert not (runs / "supervised" / "n100_s1").exists() and not keep.exists()  # the next cell never started
    stopped_at = torch.load(first / "last.pt", map_location="cpu", weights_only=False)["epoch"]
    # run again: the interrupted cell continues from its checkpoint (not from epoch 1), its log keeps both parts
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    log = (first / "log.txt").read_text()
    assert "not resumed" not in log and log.count("epoch 1/3") == 1 and "epoch 3/3" in log, log
    kept = [json.loads(x) for x in (keep / "supervised" / "n100_s0" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in kept] == [1, 2, 3] and stopped_at >= 1
    assert (keep / "supervised" / "n100_s1" / "summary.json").is_file()


def test_sigterm_to_a_parallel_grid_stops_its_workers_and_starts_no_other_cell(tmp_path):
    """`results run --workers 2` stopped by SIGTERM (here sent by a worker to the grid at a named
    iteration): the running cells write checkpoints, the queued ones never start — a bare
    ProcessPoolExecutor would let its workers run them — and the next run continues."""
    keep, runs = tmp_path / "keep", tmp_path / "runs"
    args = [sys.executable, "-m", "lion_kit", "results", "run", "--preset", "smoke", "--set", "epochs=3",
            "--set", "iters=30", "--variants", "supervised", "--budgets", "100", "--seeds", "0,1,2,3",
            "--split-seeds", "", "--workers", "2", "--keep", str(keep), "--runs", str(runs)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "LION_KIT_FAULT": "iter:2:10=TERM:parent"})
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 130, out
    stopped = re.findall(r"cell supervised/(n100_s\d) stopped at epoch (\d), iteration \d+ with its checkpoint written", out)
    assert stopped, out
    for cell, epoch in stopped:
        assert torch.load(runs / "supervised" / cell / "last.pt", map_location="cpu", weights_only=False)["epoch"] >= 1
    assert not (runs / "supervised" / "n100_s2").exists() and not (runs / "supervised" / "n100_s3").exists(), out
    assert not keep.exists()
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "4 cells: 0 reused, 4 trained" in again.stdout, again.stdout + again.stderr
    for cell, _ in stopped:  # continued from its checkpoint: epoch 1 was trained once
        assert (runs / "supervised" / cell / "log.txt").read_text().count("epoch 1/3") == 1
    assert sorted(c.name for c in (keep / "supervised").iterdir()) == ["n100_s0", "n100_s1", "n100_s2", "n100_s3"]


def test_a_failed_write_names_the_file_removes_its_temporary_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    import lion_kit.runs as runs
    path = tmp_path / "last.pt"
    runs.atomic_write_bytes(path, b"the good checkpoint")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(runs.os, "fsync", full)
    with pytest.raises(OSError, match=r"cannot write .*last\.pt: No space left on device; .* GiB free there; "
                                      r"the previous file is kept") as e:
        runs.save_torch(path, {"x": torch.zeros(1000)})
    assert e.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"the good checkpoint" and [f.name for f in tmp_path.iterdir()] == ["last.pt"]


def test_best_pt_is_the_best_epochs_checkpoint_and_outlives_the_next_last_pt(reference, tmp_path):
    from lion_kit.runs import atomic_link, save_torch
    rows = [json.loads(r) for r in (reference / "metrics.jsonl").read_text().splitlines()]
    best_epoch = max(rows, key=lambda r: r["test_acc"])["epoch"]
    assert torch.load(reference / "best.pt", weights_only=False)["epoch"] == best_epoch
    # the link: best.pt keeps its bytes when last.pt is written again, and takes the disk once meanwhile
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_torch(last, {"epoch": 1})
    atomic_link(last, best)
    assert os.path.samefile(last, best)
    save_torch(last, {"epoch": 2})
    assert torch.load(best)["epoch"] == 1 and torch.load(last)["epoch"] == 2
    assert sorted(f.name for f in tmp_path.iterdir()) == ["best.pt", "last.pt"]
