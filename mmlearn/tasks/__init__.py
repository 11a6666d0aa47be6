"""Tasks: one prompt template, one target format, one parser and one set of metrics per kind of problem."""

from mmlearn.tasks.base import Parsed, Task
from mmlearn.tasks.classification import ClassificationTask, MultiClassTask, MultiLabelTask

__all__ = ["ClassificationTask", "MultiClassTask", "MultiLabelTask", "Parsed", "Task"]
