"""Importers of public pretrained weights (torchvision state dicts) into dense_jax variables."""
