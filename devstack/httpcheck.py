"""Small HTTP(S) probes for health endpoints, using only the standard library."""

import base64
import ssl
import urllib.error
import urllib.request
from pathlib import Path


def get(
    url: str,
    *,
    basic_auth: tuple[str, str] | None = None,
    ca_file: Path | None = None,
    client_cert: tuple[Path, Path] | None = None,
    verify: bool = True,
    timeout: float = 3.0,
) -> tuple[int, str]:
    """GET `url`; return (status, body), or (0, reason) when nothing answered."""
    request = urllib.request.Request(url)  # noqa: S310 - URLs are built by devstack, http(s) only
    if basic_auth is not None:
        token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if not verify:
            # Controller-manager and scheduler serve self-signed certs made at their start.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if client_cert is not None:
            context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return 0, str(getattr(error, "reason", error))
