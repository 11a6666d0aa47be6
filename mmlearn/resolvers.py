"""Config resolvers the entry points need before Hydra composes (registered on import)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def eval_root(run_dir: str | None, otherwise: str) -> str:
    """A fine-tuned run is evaluated into its own directory; a base model under the log directory."""
    return f"{run_dir}/eval" if run_dir else otherwise


def run_decoder(run_dir: str) -> str | None:
    """The decoder a run validated and tested with, by its class (`ScoreDecoder`: score); None when the
    run's config cannot be read (evaluate.py then says why)."""
    try:
        target = OmegaConf.load(Path(run_dir) / "config.yaml").decoding._target_
    except Exception:  # naming a directory must not fail before the real check
        return None
    return target.rsplit(".", 1)[-1].removesuffix("Decoder").lower()


def eval_name(
    split: str, decoding: str, shots: int, shots_per_class: int | None, run_dir=None, overrides=()
) -> str:
    """What an evaluation directory holds, e.g. `test-score-2shot`: the split, the decoder (with run_dir,
    the run's unless the command line chooses one) and the in-context examples."""
    chosen = any(str(o).lstrip("+").split("=")[0] == "decoding" for o in overrides)
    if run_dir and not chosen:
        decoding = run_decoder(run_dir) or decoding
    parts = [split, decoding]
    if shots:
        parts.append(f"{shots}shot")
    if shots_per_class:
        parts.append(f"{shots_per_class}shot-per-class")
    return "-".join(parts)


OmegaConf.register_new_resolver("mmlearn.eval_root", eval_root, replace=True)
OmegaConf.register_new_resolver("mmlearn.eval_name", eval_name, replace=True)
