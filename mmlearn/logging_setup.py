"""One line per message, and no notices that do not concern the run. Hydra sends the root logger to
stdout and `<run>/train.log`; the libraries' own switches do the rest: a handler removed, filters that
match one exact message."""

from __future__ import annotations

import logging
import warnings

from omegaconf import DictConfig


class DropMessage(logging.Filter):
    """Drops the records of one logger whose message starts with `prefix`."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def _drop(logger: str, prefix: str) -> None:
    target = logging.getLogger(logger)
    if not any(isinstance(f, DropMessage) and f.prefix == prefix for f in target.filters):
        target.addFilter(DropMessage(prefix))


def quiet_libraries(cfg: DictConfig) -> None:
    """Before the libraries are imported by the run. `lightning` adds its own console handler (`INFO:
    ...`) on import, on top of the root's: every Lightning line came twice; under Hydra it is removed."""
    # Lightning's advertisements for its cloud products (litlogger, litmodels)
    _drop("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud")
    if cfg.get("peft", {}).get("quantization") is None:
        # bitsandbytes, imported by peft, announces at import that its CPU 4-bit kernels are missing:
        # only a quantised run uses them
        _drop("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward")
    # peft reads transformers' deprecated alias when it wraps the model; nothing for a user to change
    warnings.filterwarnings(
        "ignore",
        message=r"`is_gradient_checkpointing` is deprecated",
        category=FutureWarning,
        module=r"transformers\.modeling_utils",
    )
    if logging.getLogger().handlers:
        from mmlearn.compat.lightning import console_handler

        console = console_handler()
        if console is not None:
            logging.getLogger("lightning").removeHandler(console)
