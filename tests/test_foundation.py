"""Packaging, labels, SynthFER, datasets and splits."""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lion_kit import labels, synth
from lion_kit.data import (draw_split, load_dataset, paper_counts, read_split_file,
                           strong_transform, weak_transform, write_split_file)

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- packaging

def _names(reqs):
    return {re.split(r"[<>=!~ \[]", r.strip(), maxsplit=1)[0].lower(): r.replace(" ", "") for r in reqs}


def test_environment_yml_matches_pyproject():
    import tomllib
    import yaml
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(proj["dependencies"] + proj["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    assert _names(pip) == wanted


def test_torch_pins_admit_the_local_wheels():
    import tomllib
    deps = _names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    from packaging.specifiers import SpecifierSet
    assert "2.14.1" in SpecifierSet(deps["torch"][len("torch"):])
    assert "0.29.1" in SpecifierSet(deps["torchvision"][len("torchvision"):])


# ---------------------------------------------------------------- labels

def test_the_package_has_no_import_cycle():
    """Every import between lion_kit's modules, lazy ones inside functions included, points one
    way: a module can be read without first reading the ones that import it."""
    import ast
    mods = {p.stem: p for p in (ROOT / "lion_kit").glob("*.py")}
    deps = {}
    for name, path in mods.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lion_kit"):
                parts = node.module.split(".")
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lion_kit.")}
        deps[name] = found & set(mods) - {name}
    state = {}  # depth-first search: 1 on the current path, 2 done

    def visit(m, path):
        state[m] = 1
        for d in sorted(deps[m]):
            assert state.get(d) != 1, "import cycle: " + " -> ".join(path + [d])
            if d not in state:
                visit(d, path + [d])
        state[m] = 2
    for m in sorted(mods):
        if m not in state:
            visit(m, [m])
    assert deps["viz"].isdisjoint({"results", "report"}) and deps["gridplots"].isdisjoint({"results", "report"})


def test_label_orders_map_onto_rafdb():
    assert labels.CLASSES[3] == "happiness" and labels.NEUTRAL == 6
    fer = labels.fer2013_to_canonical()
    assert [labels.CLASSES[fer[i]] for i in range(7)] == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    aff = labels.affectnet_to_canonical()
    assert 7 not in aff and labels.CLASSES[aff[0]] == "neutral" and labels.CLASSES[aff[6]] == "anger"
    assert labels.affectnet_to_canonical(include_contempt=True)[7] == 7
    back = labels.canonical_to("fer2013")
    assert all(back[fer[i]] == i for i in range(7))
    for alias, canon in [("Angry", 5), ("surprised", 0), ("FEARFUL", 1), ("disgusted", 2), ("happy", 3), ("sad", 4)]:
        assert labels.class_index(alias) == canon


def test_unknown_class_lists_known_names_and_contempt_needs_opt_in():
    with pytest.raises(ValueError, match="known names: .*angry"):
        labels.class_index("bored")
    with pytest.raises(ValueError, match="include_contempt"):
        labels.class_index("contempt")
    assert labels.class_index("contempt", include_contempt=True) == 7


# ---------------------------------------------------------------- SynthFER

def test_synthfer_is_deterministic_and_seed_dependent():
    cfg = synth.SynthConfig(size="tiny", image_size=32)
    a = synth.render_split(cfg, "test", workers=1)
    b = synth.render_split(cfg, "test", workers=2)
    assert a["images"].tobytes() == b["images"].tobytes()
    c = synth.render_split(synth.SynthConfig(size="tiny", image_size=32, seed=1), "test", workers=1)
    assert a["images"].tobytes() != c["images"].tobytes()


def test_synthfer_labels_priors_soft_and_observed():
    cfg = synth.SynthConfig()  # the full default: labels only, no pixels
    lab = synth.sample_labels(cfg, "train")
    assert len(lab["true"]) == 12271 and len(synth.sample_labels(cfg, "test")["true"]) == 3068
    prior = np.asarray(synth.RAFDB_TRAIN_COUNTS) / 12271
    assert np.abs(np.bincount(lab["true"], minlength=7) / 12271 - prior).max() < 0.03
    np.testing.assert_allclose(lab["soft"].sum(1), 1.0, atol=1e-5)
    # observed labels are draws from the (annotator-sharpened) soft labels: per class, the
    # observed frequency matches the mean vote probability of that class
    np.testing.assert_allclose(lab["vote"], lab["soft"] ** 2 / (lab["soft"] ** 2).sum(1, keepdims=True), rtol=1e-4)
    obs = np.bincount(lab["observed"], minlength=7) / 12271
    np.testing.assert_allclose(obs, lab["vote"].mean(0), atol=0.012)
    # and the votes are those of the soft labels: among faces whose soft label puts its top
    # mass q on the true class, the observed label is the true one about mean(vote) of the time
    hit = lab["observed"] == lab["true"]
    vt = lab["vote"][np.arange(12271), lab["true"]]
    assert abs(hit.mean() - vt.mean()) < 0.012
    agree = (lab["observed"] == lab["true"]).mean()
    assert 0.8 < agree < 0.97, agree  # ambiguous enough to matter, clean enough to learn
    blended = lab["blend"] > 0
    assert abs(blended.mean() - cfg.ambiguity) < 0.03
    noisy = synth.sample_labels(synth.SynthConfig(label_noise=0.5), "train")
    assert (noisy["observed"] == noisy["true"]).mean() < agree - 0.2


def test_synthfer_cache_round_trips(synth_cache):
    cfg = synth.SynthConfig(size="tiny", image_size=24)
    first = synth.load_split(cfg, "train")
    path = Path(synth_cache) / "synthfer" / cfg.key() / "train.npz"
    assert path.exists()
    again = synth.load_split(cfg, "train")
    assert np.array_equal(first["images"], again["images"]) and first["images"].shape == (280, 24, 24, 3)


def test_synthfer_rejects_bad_config():
    with pytest.raises(ValueError, match="ambiguity"):
        synth.SynthConfig(ambiguity=1.5)
    with pytest.raises(ValueError, match="size"):
        synth.SynthConfig(size="huge")
    with pytest.raises(TypeError, match="unknown synthfer option"):
        load_dataset("synthfer", "train", sizee="tiny")


def test_synthfer_dataset_items(tiny):
    img, y, i = tiny[5]
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32)
    assert y == tiny.targets[5] and i == 5
    assert tiny.classes == list(labels.CLASSES) and tiny.ids[5] == 5
    assert len(tiny.true_targets) == len(tiny) and tiny.soft_labels.shape == (len(tiny), 7)


def test_views_keep_shape_and_differ(tiny):
    img = tiny.raw(0)
    w, s = weak_transform(32, 2), strong_transform(32, 2)
    torch.manual_seed(0)
    a, b = w(img), s(img)
    assert a.shape == b.shape == (3, 32, 32) and a.dtype == torch.float32
    assert not torch.allclose(a, b)


# ---------------------------------------------------------------- RAF-DB and folders

def test_rafdb_layout_loads(rafdb_root):
    tr = load_dataset("rafdb", "train", root=rafdb_root)
    te = load_dataset("rafdb", "test", root=rafdb_root)
    assert len(tr) == 120 and len(te) == 42
    assert tr.ids[0] == "train_00001.jpg"
    img, y, i = tr[0]
    assert img.size == (40, 40) and img.mode == "RGB" and 0 <= y < 7


def test_rafdb_errors_name_file_and_line(rafdb_root, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(rafdb_root, bad)
    lf = bad / "EmoLabel" / "list_patition_label.txt"
    lines = lf.read_text().splitlines()
    lf.write_text("\n".join(lines[:3] + ["train_00004.jpg eight"] + lines[4:]))
    with pytest.raises(ValueError, match=r"list_patition_label.txt, line 4"):
        load_dataset("rafdb", "train", root=bad)
    lf.write_text("\n".join(lines[:2] + ["train_00003.jpg 9"]))
    with pytest.raises(ValueError, match=r"line 3: label 9 out of range"):
        load_dataset("rafdb", "train", root=bad)
    lf.write_text("\n".join(lines))
    (bad / "Image" / "aligned" / "train_00002_aligned.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="train_00002_aligned.jpg does not exist"):
        load_dataset("rafdb", "train", root=bad)
    with pytest.raises(FileNotFoundError, match="RAF-DB root not found"):
        load_dataset("rafdb", "train", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="original"):
        load_dataset("rafdb", "train", root=rafdb_root, images="original")


def test_corrupt_image_is_an_error_unless_skipped_and_reported(rafdb_root, tmp_path):
    bad = tmp_path / "corrupt"
    shutil.copytree(rafdb_root, bad)
    victim = bad / "Image" / "aligned" / "train_00007_aligned.jpg"
    victim.write_bytes(b"not a jpeg at all")
    ds = load_dataset("rafdb", "train", root=bad)
    with pytest.raises(OSError, match="train_00007_aligned.jpg"):
        ds[6]
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = load_dataset("rafdb", "train", root=bad, skip_corrupt=True)
    assert len(ds) == 119 and "train_00007_aligned.jpg" in ds.skipped[0]


def test_folder_tree_loads_with_canonical_labels(folder_root):
    ds = load_dataset("folder", "train", root=folder_root)
    assert len(ds) == 100
    modes = set()
    for k in range(3):
        img, y, _ = ds[k]
        modes.add(img.mode)
        folder = ds.ids[k].split("/")[0]
        assert y == labels.class_index(folder)
    assert modes == {"RGB"}


def test_folder_errors(folder_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="split folder 'val'"):
        load_dataset("folder", "val", root=folder_root)
    (tmp_path / "train" / "bored").mkdir(parents=True)
    with pytest.raises(ValueError, match="bored.*known names"):
        load_dataset("folder", "train", root=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'affect'"):
        load_dataset("affect", "train")


# ---------------------------------------------------------------- splits

def test_paper_counts_table():
    assert paper_counts(100) == [15, 10, 15, 15, 15, 15, 15]
    assert paper_counts(4000) == [625, 250, 625, 625, 625, 625, 625]
    assert sum(paper_counts(1000)) == 1000
    with pytest.raises(ValueError, match="no paper split for 123"):
        paper_counts(123)


def test_draw_split_round_trips_and_validates(tiny, tmp_path):
    idx = draw_split(tiny, counts=[3, 1, 2, 5, 4, 2, 5], seed=5)
    assert np.bincount(np.asarray(tiny.targets)[idx], minlength=7).tolist() == [3, 1, 2, 5, 4, 2, 5]
    assert idx == draw_split(tiny, counts=[3, 1, 2, 5, 4, 2, 5], seed=5)
    f = tmp_path / "s.txt"
    write_split_file(f, tiny, idx, seed=5)
    assert read_split_file(f, tiny) == idx
    assert "# counts: 3,1,2,5,4,2,5" in f.read_text()
    with pytest.raises(ValueError, match=r"class 'fear' but .* has only"):
        draw_split(tiny, counts=[1, 500, 1, 1, 1, 1, 1])
    other = load_dataset("synthfer", "train", size="tiny", seed=3)
    with pytest.raises(ValueError, match="is a split of"):
        read_split_file(f, other)
    f.write_text(f.read_text() + "99999\n")
    with pytest.raises(ValueError, match="not in synthfer"):
        read_split_file(f, tiny)


def test_shipped_split_files_match_the_default_synthfer():
    ds = load_dataset("synthfer", "train")  # labels only; pixels are rendered lazily
    for n in (100, 400, 1000, 2000, 4000):
        f = ROOT / "splits" / f"synthfer_{n}_seed5.txt"
        idx = read_split_file(f, ds)
        assert np.bincount(np.asarray(ds.targets)[idx], minlength=7).tolist() == paper_counts(n)
        assert idx == draw_split(ds, n, seed=5)


def test_cli_splits_and_grid(tmp_path):
    from lion_kit.cli import main
    out = tmp_path / "split.txt"
    main(["splits", "--dataset", "synthfer", "--synth-size", "small", "--n-labeled", "100", "--seed", "5", "--out", str(out)])
    assert len([l for l in out.read_text().splitlines() if not l.startswith("#")]) == 100
    main(["grid", "--synth-size", "tiny", "--image-size", "32", "--out", str(tmp_path / "g")])
    assert (tmp_path / "g" / "sample_grid.png").stat().st_size > 10_000
    import pandas as pd
    t = pd.read_csv(tmp_path / "g" / "class_table.csv")
    assert t["observed"].sum() == 280


def test_empty_data_roots_say_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RAF-DB label file not found: .*EmoLabel/list_patition_label.txt"):
        load_dataset("rafdb", "train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="split folder 'train' not found"):
        load_dataset("folder", "train", root=tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no class folders"):
        load_dataset("folder", "train", root=tmp_path)
    with pytest.raises(ValueError, match="rafdb needs root"):
        load_dataset("rafdb", "train")


def test_rendered_faces_are_byte_identical_to_the_pinned_renderer():
    """The renderer draws its parts in separate functions; the faces (and so every cached SynthFER
    and the shipped trunk's training data) must stay byte for byte what they were. Pixels depend
    on Pillow's rasteriser, so the pin is checked with the Pillow it was made with."""
    import hashlib

    import PIL
    from lion_kit import synth
    if PIL.__version__ != "13.0.0":
        pytest.skip(f"pinned with Pillow 13.0.0; this is {PIL.__version__}")
    h = hashlib.sha256()
    cfg = synth.SynthConfig(size="tiny", image_size=32)
    labels = synth.sample_labels(cfg, "train")
    for i in range(24):
        rng = np.random.default_rng([cfg.seed, 0, i])
        h.update(synth.render_face(synth.action_units(labels, i, rng), rng, 32, 0.3, 2).tobytes())
    rec = {}
    for i in range(8):  # the pretraining identities: one person's draws shared, geometry recorded
        rng = np.random.default_rng(i)
        h.update(synth.render_face(synth.PROTOTYPES[i % 7], rng, 32, 0.5, 2, identity=np.random.default_rng(i // 4),
                                   record=rec).tobytes())
        h.update(repr(sorted(rec.items())).encode())
    assert h.hexdigest() == "c9cdbd8b56dbfdf8316c17d6070fb69589a1b4fec0461c0e6d4aadf57e80c6f0"


def test_label_noise_flips_a_seeded_share_of_train_labels_and_leaves_test_alone(tiny, folder_root, tmp_path):
    from lion_kit.config import resolve
    from lion_kit.data import build_data, with_label_noise
    from lion_kit.results import same_config
    noisy = with_label_noise(tiny, 0.3, seed=5)
    old, new = np.asarray(tiny.targets), np.asarray(noisy.targets)
    flipped = old != new
    assert 0.2 < flipped.mean() < 0.4 and new.min() >= 0 and new.max() < 7  # every flip is to another class
    assert np.array_equal(new, with_label_noise(tiny, 0.3, seed=5).targets)
    assert not np.array_equal(new, with_label_noise(tiny, 0.3, seed=6).targets)
    assert noisy.true_targets == tiny.true_targets and tiny.targets == old.tolist()  # the original is not touched
    assert "label_noise=0.3" in noisy.signature
    # a dataset with no true class: its own labels stand in, so relabels can still be scored
    ds = load_dataset("folder", "train", root=folder_root)
    assert ds.true_targets is None and with_label_noise(ds, 0.5, 0).true_targets == ds.targets
    # through a run's configuration: the labeled split is drawn from the noisy labels, the test split is as loaded
    cfg = resolve("smoke", None, {"label_noise": 0.4, "n_labeled": 100})
    train, test, lab, _ = build_data(cfg)
    clean_train, clean_test, _, _ = build_data(resolve("smoke", None, {"n_labeled": 100}))
    assert test.targets == clean_test.targets
    given = np.asarray(train.targets)[lab] == np.asarray(train.true_targets)[lab]
    clean = np.asarray(clean_train.targets) == np.asarray(clean_train.true_targets)
    assert given.mean() < clean.mean() - 0.2
    # a run read back shows the labels it was given, not the clean ones
    import dataclasses
    import json
    from lion_kit import load_run
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    assert load_run(tmp_path).dataset("train").targets == train.targets
    with pytest.raises(ValueError, match="label_noise"):
        resolve("smoke", None, {"label_noise": 1.0})
    # cells kept before the option existed ran without noise, and still match a grid that asks for none
    want = {"label_noise": 0.0, "seed": 0}
    assert same_config({"seed": 0}, want) and not same_config({"seed": 0}, {**want, "label_noise": 0.3})


def test_selectivity_splits_open_sets_by_whether_the_given_label_was_right():
    from lion_kit.metrics import selectivity
    w = np.array([[1, 0, 0],        # given 0, true 0: closed
                  [.6, .4, 0],      # given 0, true 1 (wrong): open, 0.4 on the true class
                  [0, .5, .5],      # given 1, true 1: open on a right label, 0.5 on the true class
                  [0, 0, 1]])       # given 2, true 0 (wrong): closed
    s = selectivity(w, given=[0, 0, 1, 2], true=[0, 1, 1, 0])
    assert s == pytest.approx({"open_wrong": 0.5, "open_right": 0.5, "open_true_weight": 0.45})
    s = selectivity(w[:1], given=[0], true=[0])  # no wrong label, no open set: NaN, not 0
    assert np.isnan(s["open_wrong"]) and s["open_right"] == 0 and np.isnan(s["open_true_weight"])
