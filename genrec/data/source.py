"""Where a dataset comes from, as a setting: a format and a path (or the embedded demo).

Configs of every script name datasets this way, so one YAML entry means the same thing to
fine-tuning, the fallback trainer and the evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genrec.data.dataset import SequenceDataset
from genrec.errors import ConfigError


@dataclass
class DatasetSource:
    """``format``: lcrec, recbole, p5, dealrec, amazon2018, csv, native, or demo.

    For ``demo`` the ``path`` is ignored and ``name`` picks the category of the embedded
    demo data (see :mod:`genrec.data.demo`). ``options`` go to the reader (e.g. the column
    mapping of the csv reader).
    """

    format: str                      # lcrec | recbole | p5 | dealrec | amazon2018 | csv | native | demo
    path: str = ""                   # the dataset's folder or file (ignored for demo)
    name: str | None = None          # dataset name (demo: electronics, kitchen or outdoors)
    on_unknown_item: str = "error"   # error | drop: sequence items the catalog lacks
    options: dict = field(default_factory=dict)  # reader options, e.g. the csv column mapping

    def load(self) -> SequenceDataset:
        if self.format == "demo":
            from genrec.data.demo import demo_datasets

            datasets = demo_datasets()
            if self.name not in datasets:
                raise ConfigError(f"demo dataset {self.name!r} unknown; choose from {sorted(datasets)}")
            return datasets[self.name]
        if not self.path:
            raise ConfigError(f"dataset of format {self.format!r} needs a path")
        from genrec.data.readers import read_dataset

        return read_dataset(self.format, self.path, on_unknown_item=self.on_unknown_item,
                            name=self.name, **self.options)
