"""A tabular knowledge-distillation benchmark: a grid of configs evaluated once, replayed.

``grid.py`` names the grid and the study it belongs to, ``make_table.py`` evaluates it
(``table.json.gz``), ``simulator.py`` answers a kdsearch sampler and pruner from the table,
and ``compare.py`` races the samplers and pruners over many seeds.
"""
