"""FER2013, FERPlus and AffectNet as distributed, built from synthetic faces; evaluation across datasets."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from lion_kit import synth
from lion_kit.data import draw_split, load_dataset
from lion_kit.labels import AFFECTNET_ORDER, FER2013_ORDER, class_index

USAGE = ["Training"] * 60 + ["PublicTest"] * 20 + ["PrivateTest"] * 20


def _faces(n):
    d = synth.load_split(synth.SynthConfig(size="tiny", image_size=48), "train")
    gray = np.asarray([np.asarray(Image.fromarray(im).convert("L")) for im in d["images"][:n]])
    return gray, d["observed"][:n], d["soft"][:n]


@pytest.fixture(scope="module")
def fer_root(tmp_path_factory):
    """fer2013.csv and FERPlus's fer2013new.csv for 100 faces; 3 faces with a non-face majority."""
    root = tmp_path_factory.mktemp("fer")
    gray, observed, soft = _faces(100)
    fer_index = {class_index(n): i for i, n in enumerate(FER2013_ORDER)}
    with open(root / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for g, y, u in zip(gray, observed, USAGE):
            w.writerow([fer_index[int(y)], " ".join(map(str, g.reshape(-1))), u])
    cols = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
    with open(root / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name"] + cols)
        for i, (s, u) in enumerate(zip(soft, USAGE)):
            votes = [int(round(10 * s[class_index(c)])) for c in cols[:7]] + [0, 0, 0]
            if i in (1, 2, 70):
                votes = [1, 0, 0, 0, 0, 0, 0, 0, 2, 7] if i != 2 else [0, 1, 0, 0, 0, 0, 0, 0, 9, 0]
            w.writerow([u, f"fer{i:07d}.png"] + votes)
    return root


def test_fer2013_csv_loads_in_canonical_order(fer_root):
    _, observed, _ = _faces(100)
    tr, va, te = (load_dataset("fer2013", s, root=fer_root) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (60, 20, 20)
    assert tr.targets == [int(y) for y in observed[:60]]  # FER2013 order mapped back to canonical
    assert tr.raw(0).shape == (3, 48, 48) and tr.ids[0] == "fer2013/0" and va.ids[0] == "fer2013/60"
    with pytest.raises(ValueError, match="expected one of"):
        load_dataset("fer2013", "dev", root=fer_root)


def test_ferplus_keeps_votes_drops_non_faces_and_uses_the_majority_as_truth(fer_root):
    _, observed, soft = _faces(100)
    tr = load_dataset("ferplus", "train", root=fer_root)
    assert len(tr) == 58 and tr.dropped == 2  # rows 1 and 2: majority not-a-face / unknown
    assert "fer2013/1" not in tr.ids and "fer2013/0" in tr.ids
    i = tr.ids.index("fer2013/3")
    assert tr.targets[i] == observed[3]  # the training label: FER2013's single annotator
    assert tr.true_targets[i] == int(np.argmax(np.round(10 * soft[3])))  # the ten annotators' majority
    assert tr.soft_labels.shape == (58, 7) and np.allclose(tr.soft_labels.sum(1), 1)
    assert load_dataset("ferplus", "val", root=fer_root).dropped == 1


def test_fer_errors_name_file_line_and_field(fer_root, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (fer_root / "fer2013.csv").read_text().splitlines()
    (bad / "fer2013.csv").write_text("\n".join([lines[0], "9," + lines[1].split(",", 1)[1]] + lines[2:]) + "\n")
    with pytest.raises(ValueError, match=r"fer2013.csv, line 2: emotion '9'; expected 0..6"):
        load_dataset("fer2013", "train", root=bad)
    (bad / "fer2013.csv").write_text("emotion,pixels\n0,1 2 3\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['Usage'\]"):
        load_dataset("fer2013", "train", root=bad)
    (bad / "fer2013.csv").write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    with pytest.raises(ValueError, match="line 2: pixels must be 2304"):
        load_dataset("fer2013", "train", root=bad)
    (bad / "fer2013.csv").write_text((fer_root / "fer2013.csv").read_text())
    (bad / "fer2013new.csv").write_text("\n".join((fer_root / "fer2013new.csv").read_text().splitlines()[:50]) + "\n")
    with pytest.raises(ValueError, match="has 49 rows but fer2013.csv has 100"):
        load_dataset("ferplus", "train", root=bad)
    with pytest.raises(FileNotFoundError, match="fer2013.csv not found"):
        load_dataset("fer2013", "train", root=tmp_path)


@pytest.fixture(scope="module")
def affectnet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("affectnet")
    gray, observed, _ = _faces(60)
    (root / "images").mkdir()
    aff = {class_index(n, True): i for i, n in enumerate(AFFECTNET_ORDER)}
    for split, rows in (("train", range(0, 40)), ("val", range(40, 60))):
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "expression"])
            for i in rows:
                Image.fromarray(gray[i]).save(root / "images" / f"{i}.jpg")
                e = aff[int(observed[i])]
                if i == 5:
                    e = 7   # contempt
                if i == 6:
                    e = 9   # uncertain
                w.writerow([f"images/{i}.jpg", e])
    return root


def test_affectnet_csv_loads_drops_none_classes_and_contempt_is_opt_in(affectnet_root):
    _, observed, _ = _faces(60)
    tr = load_dataset("affectnet", "train", root=affectnet_root)
    assert len(tr) == 38 and tr.dropped == 2 and tr.classes[-1] == "neutral"
    assert tr.targets[tr.ids.index("images/0.jpg")] == observed[0]
    withc = load_dataset("affectnet", "train", root=affectnet_root, include_contempt=True)
    assert len(withc) == 39 and withc.targets[withc.ids.index("images/5.jpg")] == 7 and withc.dropped == 1
    assert load_dataset("affectnet", "val", root=affectnet_root).raw(0).size == (48, 48)


def test_a_budget_a_class_cannot_meet_says_so_and_counts_draw_explicitly(affectnet_root):
    tr = load_dataset("affectnet", "train", root=affectnet_root)
    with pytest.raises(ValueError, match=r"split asks for 15 labels of class '\w+' but affectnet has only \d+; pass explicit.*--counts"):
        draw_split(tr, n_labeled=100)
    have = np.bincount(tr.targets, minlength=7)
    counts = [min(1, int(h)) for h in have]
    idx = draw_split(tr, counts=counts, seed=5)
    assert np.bincount(np.asarray(tr.targets)[idx], minlength=7).tolist() == counts


def test_train_runs_on_fer2013_with_counts(fer_root, tmp_path):
    from lion_kit.train import train
    s = train("smoke", out=str(tmp_path / "r"), dataset="fer2013", data_root=str(fer_root), image_size=32,
              counts="2,1,1,2,2,1,2", epochs=1, iters=2, batch_size=4, unlabeled_batch_size=4, method="lion")
    assert s["n_labeled"] == 11 and s["dataset"] == "fer2013"


def test_eval_across_datasets_and_predict(fer_root, affectnet_root, tmp_path):
    import json
    import subprocess
    import sys
    from lion_kit.train import train
    run = tmp_path / "run"
    train("smoke", out=str(run), epochs=1, iters=2, method="supervised")
    r = subprocess.run([sys.executable, "-m", "lion_kit", "eval", "--run", str(run), "--dataset", "affectnet",
                        "--data-root", str(affectnet_root), "--split", "val"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    [res_file] = (run / "eval").glob("affectnet_*_val_last.json")
    res = json.loads(res_file.read_text())
    assert res["faces"] == 20 and 0 <= res["acc"] <= 1 and res["trained_on"] == "synthfer"
    counts = {row["class"]: row["test_faces"] for row in res["per_class"]}
    for row in res["per_class"]:  # a class with no faces is reported absent, not as 0 accuracy
        assert (row["accuracy"] == "absent") == (counts[row["class"]] == 0)
    assert sorted(res["absent"]) == sorted(c for c, n in counts.items() if n == 0)
    imgs = tmp_path / "mine"
    imgs.mkdir()
    import shutil
    shutil.copy(affectnet_root / "images" / "0.jpg", imgs / "a.jpg")
    shutil.copy(affectnet_root / "images" / "1.jpg", imgs / "b.png")
    (imgs / "broken.jpg").write_bytes(b"not an image")
    r = subprocess.run([sys.executable, "-m", "lion_kit", "predict", "--run", str(run), str(imgs), "--out", str(tmp_path / "p.csv")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "broken.jpg" in r.stderr and "2 image(s); 1 unreadable" in r.stdout
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("path,predicted,p_surprise") and len(lines) == 3
    p = np.array([float(v) for v in lines[1].split(",")[2:]])
    assert abs(p.sum() - 1) < 1e-3
    # the same data evaluated again: replaced, and said so
    r = subprocess.run([sys.executable, "-m", "lion_kit", "eval", "--run", str(run), "--dataset", "affectnet",
                        "--data-root", str(affectnet_root), "--split", "val"], capture_output=True, text=True)
    assert r.returncode == 0 and "held an evaluation of the same data" in r.stdout, r.stdout + r.stderr
    assert len(list((run / "eval").glob("affectnet_*_val_last.json"))) == 1
    r = subprocess.run([sys.executable, "-m", "lion_kit", "eval", "--run", str(tmp_path / "nope"), "--dataset", "synthfer"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "config.json missing" in r.stderr


def test_two_folder_datasets_evaluated_on_one_run_are_both_kept(folder_root, tmp_path):
    """Two data folders, even of the same name, never share an evaluation file."""
    import shutil
    from lion_kit.evaluate import evaluate_run
    from lion_kit.train import train
    run = tmp_path / "run"
    train("smoke", out=str(run), epochs=1, iters=2, method="supervised")
    other = tmp_path / "elsewhere" / folder_root.name
    shutil.copytree(folder_root, other)
    for p in list((other / "test").rglob("*.png"))[::2]:  # another test set: half the faces
        p.unlink()
    a = evaluate_run(run, "folder", folder_root, "test")
    b = evaluate_run(run, "folder", other, "test")
    assert a["file"] != b["file"] and (a["faces"], b["faces"]) == (40, 20)
    kept = sorted((run / "eval").glob("folder_*_test_last.json"))
    assert len(kept) == 2 and sorted(json.loads(f.read_text())["faces"] for f in kept) == [20, 40]
