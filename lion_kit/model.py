"""LION's network: torchvision's ResNet-18 trunk with the paper's head.

head: global average pool -> dropout 0.5 -> L2-normalise -> feature f (512-d) -> linear 512->7.
The model returns ``(logits, f)``: the features feed the class prototypes.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

STEMS = ("imagenet", "small")


class LionNet(nn.Module):
    def __init__(self, num_classes: int = 7, stem: str = "imagenet", dropout: float = 0.5):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r}; expected one of {STEMS}")
        r = torchvision.models.resnet18(weights=None)
        if stem == "small":
            # For inputs of 32-64 px: a 3x3 stride-1 first conv and no max-pool keep enough
            # spatial resolution for the last stage (CIFAR-style ResNet stem).
            r.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            r.maxpool = nn.Identity()
        self.trunk = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512, num_classes)
        self.stem = stem

    def forward(self, x):
        h = self.trunk(x).mean((2, 3))
        f = F.normalize(self.dropout(h), dim=1)
        return self.fc(f), f


# torchvision names of the trunk, as face-recognition checkpoints store them
_TRUNK_NAMES = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def to_torchvision_keys(sd: dict) -> dict:
    """Our trunk.<i>.* keys <-> torchvision resnet names (conv1.*, layer1.*, ...)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("trunk."):
            i, rest = k[len("trunk."):].split(".", 1)
            out[f"{_TRUNK_NAMES[int(i)]}.{rest}"] = v
        else:
            out[k] = v
    return out


def from_torchvision_keys(sd: dict) -> dict:
    idx = {n: i for i, n in enumerate(_TRUNK_NAMES)}
    out = {}
    for k, v in sd.items():
        head = k.split(".", 1)[0]
        out[f"trunk.{idx[head]}.{k.split('.', 1)[1]}" if head in idx else k] = v
    return out


def load_pretrained(model: LionNet, path, strict_head: bool = False) -> dict:
    """Load trunk weights from a local file: ``{'state_dict': ...}`` (the paper's MS-Celeb
    face-recognition checkpoint, torchvision key names, optional ``module.`` prefix) or a plain
    state dict. The classifier ("fc.*") is skipped unless its shape fits. Any other missing or
    unexpected key is an error listing them. Returns a report of what was loaded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained file not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path} is not a PyTorch checkpoint: {e}") from e
    sd = ckpt.get("state_dict", ckpt.get("model", ckpt)) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(f"{path}: expected a state dict of tensors or {{'state_dict': ...}}")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if any(k.startswith("trunk.") for k in sd):
        sd = to_torchvision_keys(sd)
    own = to_torchvision_keys(model.state_dict())
    head = {k for k in sd if k.startswith("fc.")}
    fits_head = all(k in own and own[k].shape == sd[k].shape for k in head)
    if head and not (fits_head or strict_head):
        sd = {k: v for k, v in sd.items() if k not in head}
    missing = sorted(k for k in own if k not in sd and not k.startswith("fc."))
    unexpected = sorted(k for k in sd if k not in own)
    wrong = sorted(k for k in sd if k in own and own[k].shape != sd[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not fit LionNet(stem={model.stem!r}): missing keys {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}; unexpected keys {unexpected[:8]}"
                         f"{' ...' if len(unexpected) > 8 else ''}; wrong shapes {wrong[:8]}")
    model.load_state_dict(from_torchvision_keys(sd), strict=False)
    return {"file": str(path), "tensors": len(sd), "head_loaded": any(k.startswith("fc.") for k in sd)}


class EMA:
    """The evaluated model: an exponential moving average of the trained model's float state
    (parameters and BatchNorm statistics, as the authors average them), its integer buffers
    copied. It starts equal to the model and is never trained."""

    def __init__(self, model: nn.Module, decay: float):
        import copy
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        ema_sd, sd = self.module.state_dict(), model.state_dict()
        self._floats = ([ema_sd[k] for k in sd if sd[k].is_floating_point()],
                        [sd[k] for k in sd if sd[k].is_floating_point()])
        self._ints = [(ema_sd[k], sd[k]) for k in sd if not sd[k].is_floating_point()]

    @torch.no_grad()
    def update(self):
        torch._foreach_lerp_(self._floats[0], self._floats[1], 1 - self.decay)
        for e, m in self._ints:
            e.copy_(m)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, sd: dict):
        self.module.load_state_dict(sd)
