"""The API key: with the variable named by `api_key_env` set, a request needs `Authorization: Bearer
<key>`. The key is read from the environment at each check and never logged or echoed."""

from __future__ import annotations

import hmac
import os

from mmlearn.serving.requests import RequestError


def check_bearer(authorization: str | None, api_key_env: str | None) -> None:
    expected = os.environ.get(api_key_env) if api_key_env else None
    if not expected:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise RequestError(
            401,
            "Authorization",
            f"missing or wrong API key: send 'Authorization: Bearer <key>' (the server's {api_key_env})",
            "invalid_api_key",
        )
