"""Experiment configs: one ``get_config(arg)`` module per experiment family (``configs/mnist.py``)."""
