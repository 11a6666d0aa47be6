"""`caption.py`: one caption per image of a dataset, written to a captions CSV (`id,text`) that a reader's
`data.captions_file` reads (seed 003's two-stage pipeline: a VLM describes, a text model classifies)."""

from mmlearn.captions.run import caption
from mmlearn.captions.task import ImageDescription

__all__ = ["ImageDescription", "caption"]
