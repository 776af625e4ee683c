"""The Soul-1M curation pipeline behind `soul data`: raw videos in, manifest + shards out.

Stages live in `stages`, the row schema in `records`, thresholds in `config`, the local and Ray
engines in `runner`; `annotate()` is the entry point the CLI calls.
"""

from soul.curation.config import CurationConfig, load_config
from soul.curation.records import COLUMNS, PIPELINE_VERSION, SCHEMA
from soul.curation.runner import annotate

__all__ = ["COLUMNS", "PIPELINE_VERSION", "SCHEMA", "CurationConfig", "annotate", "load_config"]
