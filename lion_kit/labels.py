"""Class names and the mappings between datasets' label orders.

The kit has one canonical order, RAF-DB's (basic, 0-based). Every dataset is mapped into it
when loaded, so that models, split files and plots never disagree about what class 3 is.
"""
from __future__ import annotations

CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
NUM_CLASSES = len(CLASSES)
NEUTRAL = CLASSES.index("neutral")
# RAF-DB basic, per class in the order above (LION_SPEC.md section 1); SynthFER renders the same counts
RAFDB_TRAIN_COUNTS = (1290, 281, 717, 4772, 1982, 705, 2524)
RAFDB_TEST_COUNTS = (329, 74, 160, 1185, 478, 162, 680)
CONTEMPT = "contempt"  # AffectNet/CK+ only; mapped to index 7 when explicitly opted in

# Source orders, index -> name in *their* vocabulary.
FER2013_ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
AFFECTNET_ORDER = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
RAFDB_ORDER = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")  # 1-based in files

# Common spellings found in folder trees and label files, -> canonical name.
ALIASES = {
    "surprise": "surprise", "surprised": "surprise", "surprize": "surprise",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "disgust": "disgust", "disgusted": "disgust",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness", "happ": "happiness",
    "sadness": "sadness", "sad": "sadness",
    "anger": "anger", "angry": "anger", "mad": "anger",
    "neutral": "neutral", "calm": "neutral", "neutrality": "neutral",
    "contempt": CONTEMPT, "contemptuous": CONTEMPT,
}


def class_names(include_contempt: bool = False) -> tuple[str, ...]:
    """The canonical class names; contempt (index 7) only when asked for."""
    return CLASSES + ((CONTEMPT,) if include_contempt else ())


def class_index(name: str, include_contempt: bool = False) -> int:
    """Canonical index of a class name or common alias (case-insensitive).

    Contempt has no RAF-DB counterpart, so it is an error unless `include_contempt` is set.
    """
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    canon = ALIASES.get(key)
    if canon is None:
        known = sorted(set(ALIASES))
        raise ValueError(f"unknown expression class {name!r}; known names: {', '.join(known)}")
    if canon == CONTEMPT and not include_contempt:
        raise ValueError(
            f"class {name!r} is contempt, which RAF-DB's 7 classes do not include; "
            "pass include_contempt=True to keep it as class 7")
    return class_names(include_contempt).index(canon)


def _order_map(order: tuple[str, ...], include_contempt: bool) -> dict[int, int]:
    out = {}
    for i, n in enumerate(order):
        if ALIASES[n] == CONTEMPT and not include_contempt:
            continue
        out[i] = class_index(n, include_contempt)
    return out


def fer2013_to_canonical() -> dict[int, int]:
    """FER2013 index (0 angry ... 6 neutral) -> canonical index."""
    return _order_map(FER2013_ORDER, False)


def affectnet_to_canonical(include_contempt: bool = False) -> dict[int, int]:
    """AffectNet index (0 neutral ... 7 contempt) -> canonical index; contempt dropped by default."""
    return _order_map(AFFECTNET_ORDER, include_contempt)


def canonical_to(order_name: str) -> dict[int, int]:
    """Canonical index -> index in another dataset's order ('fer2013', 'affectnet', 'rafdb')."""
    forward = {"fer2013": fer2013_to_canonical(), "affectnet": affectnet_to_canonical(True),
               "rafdb": {i: i for i in range(NUM_CLASSES)}}
    if order_name not in forward:
        raise ValueError(f"unknown label order {order_name!r}; expected one of {sorted(forward)}")
    return {v: k for k, v in forward[order_name].items()}
