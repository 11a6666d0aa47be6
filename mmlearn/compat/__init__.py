"""The only place where mmlearn touches another library's private or undocumented names.

One function (or, where torch offers no hook, one class) per internal, each saying what it wraps, the
versions it was checked against, and what happens when the internal is gone. `tests/test_compat.py`
fails naming the library and its version when one moves; `tests/test_no_private_names.py` fails when
any other module of `mmlearn/` uses a `_`-prefixed name of another library.
"""
