"""The SynthFER face-recognition trunk: identity set, pretraining, lookup by name."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lion_kit import pretrain as P
from lion_kit import synth
from lion_kit.model import LionNet, load_pretrained

TINY = dict(identities=6, faces=4, heldout=1, image_size=32, epochs=4, batch_size=8, lr=2e-3)


def test_identity_set_shares_identity_within_a_person_and_varies_the_rest():
    cfg = P.PretrainConfig(**TINY)
    d = P.identity_set(cfg)
    assert d["images"].shape == (6 * 5, 32, 32, 3)
    assert d["person"].tolist() == np.repeat(np.arange(6), 5).tolist()
    assert d["heldout"].sum() == 6 and d["heldout"][4] and not d["heldout"][:4].any()
    # a person's identity generator gives every face the same identity draws; the face's own
    # stream (pose, expression, lighting) differs
    au = np.zeros(len(synth.AUS))
    same = [synth.render_face(au, np.random.default_rng(7), 32, 0.0, identity=np.random.default_rng([0, 2, 1]))
            for _ in range(2)]
    other = synth.render_face(au, np.random.default_rng(7), 32, 0.0, identity=np.random.default_rng([0, 2, 2]))
    assert np.array_equal(same[0], same[1]) and not np.array_equal(same[0], other)
    assert not np.array_equal(d["images"][0], d["images"][1])
    # the identity streams are keyed apart from the expression set's (seed, split 0/1, index)
    assert P.identity_set(cfg)["images"].tobytes() == d["images"].tobytes()  # cached, deterministic


def test_pretrain_learns_identities_and_its_trunk_loads(tmp_path):
    cfg = P.PretrainConfig(**TINY)
    path = P.pretrain(cfg, tmp_path / cfg.filename(), workers=0, log=lambda *a: None)
    assert path.name == f"synthfer-faces-{cfg.key()}.pt"
    ck = torch.load(path, weights_only=True)
    assert ck["hash"] == cfg.key() and ck["config"]["identities"] == 6
    hist = ck["metrics"]["history"]
    assert hist[-1]["loss"] < hist[0]["loss"] - 0.2  # identity loss falls
    assert 0 <= ck["metrics"]["heldout_identity_acc"] <= 1
    assert all(v.dtype == torch.float16 for k, v in ck["state_dict"].items() if v.is_floating_point())
    assert not any(k.startswith("fc.") for k in ck["state_dict"])  # no expression head: trunk only
    m = LionNet()
    rep = load_pretrained(m, path)
    assert rep["tensors"] == len(ck["state_dict"]) and not rep["head_loaded"]
    assert torch.equal(m.trunk[0].weight, ck["state_dict"]["conv1.weight"].float())


def test_pretrained_names_resolve(tmp_path, monkeypatch):
    assert P.resolve(None) is None and P.resolve("none") is None and P.resolve("None") is None
    assert P.resolve(str(tmp_path / "w.pth")) == str(tmp_path / "w.pth")
    monkeypatch.setattr(P, "WEIGHTS_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="python -m lion_kit pretrain"):
        P.resolve(P.NAME, build=False)
    cached = P.cache_path(P.PretrainConfig())
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}}, cached)
    try:
        assert P.resolve(P.NAME, build=False) == str(cached)
    finally:
        cached.unlink()


def test_shipped_trunk_matches_the_default_config():
    """The repository's weights/ file is the default PretrainConfig's (its hash names it)."""
    cfg = P.PretrainConfig()
    f = P.WEIGHTS_DIR / cfg.filename()
    assert f.is_file(), f"{f} missing: `python -m lion_kit pretrain --out {f}` rebuilds it"
    ck = torch.load(f, weights_only=True)
    assert ck["hash"] == cfg.key() and ck["config"] == json.loads(json.dumps(ck["config"]))
    assert ck["metrics"]["heldout_identity_acc"] > 20 / cfg.identities  # far above chance
    assert f.stat().st_size < 25 * 2**20


def test_pretrain_cli_rejects_bad_values(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lion_kit", "pretrain", "--identities", "1", "--out", str(tmp_path / "x.pt")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "identities" in r.stderr


def test_imagenet_weights_come_from_the_torch_cache_or_a_clear_error(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict",
                        lambda self, **kw: (_ for _ in ()).throw(OSError("network is unreachable")))
    with pytest.raises(FileNotFoundError, match=f"not cached and could not be downloaded.*put it at {cached}"):
        P.resolve("imagenet")
    r = torchvision.models.resnet18(weights=None)
    cached.parent.mkdir(parents=True)
    torch.save(r.state_dict(), cached)  # what torchvision's download leaves in the cache
    assert P.resolve("imagenet") == str(cached)
    m = LionNet()
    rep = load_pretrained(m, P.resolve("imagenet"))
    assert not rep["head_loaded"]  # the 1000-way ImageNet head does not fit 7 classes
    torch.testing.assert_close(m.trunk[0].weight, r.conv1.weight)
