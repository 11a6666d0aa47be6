"""Lightning internals: where the fit loop decides to validate, and the console handler it installs.

Checked with lightning 2.6.6 (`make test-newest` reruns the tests on the newest release).
"""

from __future__ import annotations

import logging

import lightning

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def validation_follows(trainer) -> bool:
    """Whether the fit loop validates right after the current training batch (`on_train_batch_end`):
    `trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)`, the loop's own
    decision (validation interval, epoch multiple, time interval, early stop, last batch). No public
    API gives it, and re-deriving it misses cases the loop adds (2.6 added time-based intervals).

    Fallback (either name gone): True, with a warning once. The resume checkpoint then skips its
    step-interval saves and keeps saving after every validation and on SIGTERM: fewer checkpoints,
    never one between a step and its validation (a resume would skip that validation)."""
    fit_loop = trainer.fit_loop
    decide = getattr(fit_loop.epoch_loop, "_should_check_val_fx", None)
    if decide is None or not hasattr(fit_loop, "_data_fetcher"):
        _warn_once(
            f"lightning {lightning.__version__} moved the fit loop's _should_check_val_fx/_data_fetcher: "
            "last.ckpt is saved after each validation and on SIGTERM only (callbacks.resume_checkpoint."
            "every_n_train_steps is not applied)"
        )
        return True
    fetcher = fit_loop._data_fetcher
    return fetcher is not None and bool(decide(fetcher))


def console_handler() -> logging.Handler | None:
    """`lightning._console`: the handler `import lightning` puts on the `lightning` logger (2.x), which
    doubles every Lightning line once Hydra has configured the root logger. Fallback: None (nothing
    is removed; Lightning's lines may show twice)."""
    handler = getattr(lightning, "_console", None)
    return handler if isinstance(handler, logging.Handler) else None
