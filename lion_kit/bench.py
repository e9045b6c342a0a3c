"""Benchmarks behind `python -m lion_kit bench ...`: numbers for the README come from here."""
from __future__ import annotations


def run(what: str, a) -> dict:
    if what == "render":
        from .synth import bench_render
        return bench_render(a.size, a.image_size)
    raise NotImplementedError(what)
