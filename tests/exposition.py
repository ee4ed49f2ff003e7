"""Reading a Prometheus text exposition, for the tests and the benchmarks.

Parsing goes through `prometheus_client.parser`, the reference client's own reader, so
escaped label values, `+Inf` buckets and `# HELP` text are read the way Prometheus reads
them. The parser names a counter's family without `_total` (OpenMetrics style); the names
here are the exposed ones, the ones PromQL selects.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def samples(text: str, name: str, labels: Mapping[str, str] | None = None) -> list[Sample]:
    """The samples named `name` whose labels include `labels`."""
    wanted = (labels or {}).items()
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and wanted <= sample.labels.items()
    ]


def metric_sum(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of the samples named `name` whose labels include `labels` (0 when there are none:
    a labelled counter has no series before its first increment)."""
    return sum(sample.value for sample in samples(text, name, labels))


def families(text: str) -> dict[str, str]:
    """Exposed family name → type (`c_total` for a counter, `h` for a histogram)."""
    return {
        _exposed(family.name, family.type): family.type
        for family in text_string_to_metric_families(text)
    }


def series_names(text: str) -> set[str]:
    """Every name a query can select: the families' and their samples' (NAME_bucket, ...)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(_exposed(family.name, family.type))
        names.update(sample.name for sample in family.samples)
    return names


def _exposed(name: str, kind: str) -> str:
    return f"{name}_total" if kind == "counter" else name
