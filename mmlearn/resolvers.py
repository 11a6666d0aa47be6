"""Config resolvers the entry points need before Hydra composes (registered on import)."""

from __future__ import annotations

from omegaconf import OmegaConf


def eval_root(run_dir: str | None, otherwise: str) -> str:
    """A fine-tuned run is evaluated into its own directory; a base model under the log directory."""
    return f"{run_dir}/eval" if run_dir else otherwise


OmegaConf.register_new_resolver("mmlearn.eval_root", eval_root, replace=True)
