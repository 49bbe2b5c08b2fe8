"""Who the command line acts for: the default owner of an allocation.

``user:NAME@HOST``, as ``mcslabel allocate`` records it and ``mcslabel
relabel --level`` checks it. NAME is :func:`getpass.getuser` (the first of
``$LOGNAME``, ``$USER``, ``$LNAME``, ``$USERNAME``, else the password entry of
the real uid), HOST the kernel's node name (what :func:`socket.gethostname`
returns on Linux): spelled out here so that the marker path does not import
``getpass`` or ``socket`` (start-up time).
"""

from __future__ import annotations

import os


def current_user() -> str:
    """:func:`getpass.getuser`, ``unknown`` when the uid has no password entry."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if user := os.environ.get(name):
            return user
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "unknown"


def default_owner() -> str:
    """``user:NAME@HOST``: the owner a command records or checks when given none."""
    return f"user:{current_user()}@{os.uname().nodename}"


__all__ = ["current_user", "default_owner"]
