"""Keeping credentials out of everything a run writes: config.yaml, logged hyperparameters.

A config may pull a credential in through `${oc.env:WANDB_API_KEY}`; resolving it for config.yaml would
write the key to disk and to every logger. Any resolved string that contains the value of a credential
variable gets that value replaced by `<NAME>`.
"""

from __future__ import annotations

import os
import re

CREDENTIAL_NAMES = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
CREDENTIAL_PATTERN = re.compile(r"(TOKEN|API_KEY|SECRET|SECRET_KEY|ACCESS_KEY|PASSWORD)$")
SHORTEST_SECRET = 8  # shorter values ("1", "true") would blank out unrelated config values


def credential_values(env=None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {
        value: name
        for name, value in env.items()
        if (name in CREDENTIAL_NAMES or CREDENTIAL_PATTERN.search(name)) and len(value) >= SHORTEST_SECRET
    }


def redact_secrets(node, env=None):
    """A copy of a plain container (OmegaConf.to_container output) with credential values replaced."""
    secrets = credential_values(env)
    if not secrets:
        return node

    def redact(value):
        if isinstance(value, dict):
            return {k: redact(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(redact(v) for v in value)
        if isinstance(value, str):
            for secret, name in secrets.items():
                value = value.replace(secret, f"<{name}>")
        return value

    return redact(node)
