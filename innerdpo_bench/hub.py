"""Whether the HuggingFace hub can be reached, found out in seconds instead of waited for.

Without a network, huggingface_hub and datasets retry each request five times with backoff (45 s before
`innerdpo eval` could say the hub is unreachable, six warnings on `queue add`). `offline()` asks once per
process: one TCP connection to the hub (or to the proxy that would carry it), given PROBE_TIMEOUT_S. When it cannot
be made, it switches this process and every subprocess it starts to offline mode (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE,
TRANSFORMERS_OFFLINE), so what is in the local hub cache still loads and anything else fails at once with the
libraries' own "offline" error. A user's HF_HUB_OFFLINE=1 is taken as the answer without a probe.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULT_ENDPOINT = "https://huggingface.co"


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _target() -> tuple[str, int]:
    """(host, port) a hub request connects to first: the HTTPS proxy if one is set, else HF_ENDPOINT's host."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)


def reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether one TCP connection to the hub (`_target`) opens within `timeout_s`, name lookup included (run in a
    thread, so a resolver that hangs costs `timeout_s`, not its own minutes)."""
    host, port = _target()
    opened: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            opened.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, name="hub-probe", daemon=True)
    probe.start()
    probe.join(timeout_s)
    return bool(opened)


@functools.cache
def offline_reason() -> str | None:
    """Why the hub is off limits for this process, or None when it is not: HF_HUB_OFFLINE set by the user, or the
    probe (`reachable`) failed, in which case offline mode is switched on here (module docstring). Asked once per
    process."""
    if _true(os.environ.get("HF_HUB_OFFLINE")):
        return "HF_HUB_OFFLINE is set: only the local hub cache is used"
    if reachable():
        return None
    for name in OFFLINE_VARIABLES:
        os.environ[name] = "1"
    # Libraries read these variables when imported: tell the ones already loaded.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    config = sys.modules.get("datasets.config")
    if config is not None:
        config.HF_HUB_OFFLINE = True
        if hasattr(config, "HF_DATASETS_OFFLINE"):
            config.HF_DATASETS_OFFLINE = True
    host, port = _target()
    return f"the HuggingFace hub ({host}:{port}) cannot be reached, so only the local hub cache is used"


def offline() -> bool:
    """Whether hub requests must not be made (`offline_reason`)."""
    return offline_reason() is not None
