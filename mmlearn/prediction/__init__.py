"""Batch prediction: `predict.py run_dir=<run> input=<file.csv|.jsonl|folder> output=<file>` answers
new data with a run exactly as `evaluate.py split=predict` does, resumably (mmlearn/prediction/partfile.py)."""

from mmlearn.prediction.inputs import read_input
from mmlearn.prediction.partfile import PartFile
from mmlearn.prediction.run import predict

__all__ = ["PartFile", "predict", "read_input"]
