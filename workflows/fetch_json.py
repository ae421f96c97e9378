"""Fetch a URL and parse the JSON response."""

import json
import urllib.request


def run(url: str, timeout: float = 30.0, headers: dict | None = None) -> object:
    """Fetch a URL over HTTP(S) and parse the JSON response body.

    Returns the decoded JSON value. Raises for non-2xx responses and invalid JSON.
    """
    request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        charset = response.headers.get_content_charset() or "utf-8"
        return json.loads(response.read().decode(charset))
