"""Small helpers for the notebooks: parameter checks, config overrides, results files.

Notebooks record their results in a small JSON file (`results.json` in their output folder)
that tests and the README read back; no scrapbook.
"""
from __future__ import annotations

from pathlib import Path

from .config import METHODS, RULES, PRESETS as _PRESETS
from .data import DATASETS as _DATASETS
from .runs import write_json
from .synth import SIZES as _SIZES

# what the notebooks' parameter checks accept: the package's own names
PRESETS = tuple(_PRESETS)
DATASETS = tuple(_DATASETS)
SYNTH_SIZES = tuple(_SIZES)
__all__ = ["METHODS", "RULES", "PRESETS", "DATASETS", "SYNTH_SIZES", "check_params", "overrides", "save_results", "lion_run"]

# the parameters of notebooks 02 and 03, which look at one LION run
RUN_PARAMS = {"run_dir": ((str, type(None)), None), "out_dir": (str, None), "preset": (str, PRESETS),
              "n_labeled": (int, None), "lion_rules": (str, RULES), "epochs": ((int, type(None)), None),
              "iters": ((int, type(None)), None), "synth_size": ((str, type(None)), SYNTH_SIZES),
              "image_size": ((int, type(None)), None), "seed": (int, None), "interactive": (bool, None)}


def check_params(spec: dict, values: dict):
    """`spec`: name -> (type or tuple of types, allowed values or None). A wrong type or value
    is an error naming the parameter, what it got and what was expected."""
    for name, (types, allowed) in spec.items():
        v = values[name]
        if not isinstance(v, types):
            types = types if isinstance(types, tuple) else (types,)
            want = " or ".join(t.__name__ for t in types)
            hint = ""
            if list in types and isinstance(v, str):  # papermill -p passes "[100, 400]" as text
                hint = f" (papermill -p passes lists as text; use -y \"{name}: {v}\")"
            raise TypeError(f"notebook parameter {name}={v!r} has type {type(v).__name__}; expected {want}{hint}")
        if allowed is not None and v is not None:
            bad = [x for x in (v if isinstance(v, (list, tuple)) else [v]) if x not in allowed]
            if bad:
                raise ValueError(f"notebook parameter {name}={v!r}: {bad} not allowed; expected values in {list(allowed)}")


def overrides(**kw) -> dict:
    """Config overrides from notebook parameters, leaving out the ones set to None."""
    return {k: v for k, v in kw.items() if v is not None}


def lion_run(params: dict):
    """The run notebooks 02 and 03 look at: `run_dir` when given, else a quick LION run trained
    into `out_dir/run` from the notebook's parameters (checked first)."""
    from .runs import load_run
    from .train import train
    check_params(RUN_PARAMS, params)
    run_dir = params["run_dir"]
    if run_dir is None:
        run_dir = f"{params['out_dir']}/run"
        keys = ("lion_rules", "n_labeled", "epochs", "iters", "synth_size", "image_size", "seed")
        train(params["preset"], overwrite=True, **overrides(method="lion", out=run_dir, **{k: params[k] for k in keys}))
    run = load_run(run_dir)
    print(run.path, "|", run.config["method"], "|", len(run.metrics), "epochs")
    return run


def save_results(out_dir, results: dict) -> Path:
    path = Path(out_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, results)
    print(f"results written to {path}")
    return path
