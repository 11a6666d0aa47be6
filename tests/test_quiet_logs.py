"""A short training run logs each line once, without library notices that do not concern it, and with one
line of validation metrics per epoch in train.log (what a SLURM log shows of the run's progress)."""

import re
from collections import Counter

from tests.conftest import run_script

SHORT = [
    "experiment=demo",
    "logger=csv",
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]
NOT_ABOUT_THE_RUN = ["💡 Tip", "gemm_4bit_forward", "is_gradient_checkpointing"]


def test_a_short_run_logs_once_quietly_and_each_validation_epoch(tmp_path):
    out = run_script("train.py", *SHORT, f"hydra.run.dir={tmp_path}", timeout=600)
    log = (tmp_path / "train.log").read_text()
    console = out.stdout + out.stderr
    for notice in NOT_ABOUT_THE_RUN:
        assert notice not in console and notice not in log, notice
    messages = [line.split("] - ", 1)[-1] for line in out.stdout.splitlines() if "] - " in line]
    messages += [line.removeprefix("INFO: ") for line in out.stderr.splitlines() if line.startswith("INFO: ")]
    assert messages and not [m for m, n in Counter(messages).items() if n > 1]
    epochs = re.findall(r"\[mmlearn\.callbacks\]\[INFO\] - epoch (\d+) step \d+: (.*)", log)
    assert [int(epoch) for epoch, _ in epochs] == [0, 1]
    assert all(
        "val/f1_macro=" in m and "val/parse_failure_rate=" in m and "val/f1/" not in m for _, m in epochs
    )
