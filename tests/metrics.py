"""Reading a process's /metrics in tests."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def http_get(address: str, path: str) -> tuple[int, str]:
    """(status, body) of GET http://ADDRESS/PATH; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name` in a scrape, keyed by their labels (sorted by name)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def scraped(address: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name` in the /metrics of the process at `address`."""
    status, text = http_get(address, "/metrics")
    return samples(text, name) if status == 200 else {}
