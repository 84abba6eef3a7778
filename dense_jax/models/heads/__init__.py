"""Prediction heads shared by the model families (one file each): detection's rpn, box, mask, keypoint."""
