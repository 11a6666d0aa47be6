"""Tasks: one prompt template, one target format and one parser per kind of problem."""

from mmlearn.tasks.classification import ClassificationTask, MultiClassTask, MultiLabelTask, Parsed

__all__ = ["ClassificationTask", "MultiClassTask", "MultiLabelTask", "Parsed"]
