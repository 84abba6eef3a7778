"""Evaluation metrics; `segmentation`: confusion-matrix mIoU with an ignore label."""
