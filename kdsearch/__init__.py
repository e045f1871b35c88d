"""kdsearch: hyperparameter search for knowledge distillation, guided by confidence preservation.

Everything kdsearch installs lives under this one name: ``kdsearch.distill`` (one
distillation run), ``kdsearch.search`` (studies, workers, storage), ``kdsearch.service``
(the REST API and the ``kdsearch`` command) and ``kdsearch.migrations`` (the database
schema). In a source checkout those four are the top-level folders of the same names;
``kdsearch/`` links to them, and the wheel carries them inside ``kdsearch/``.
"""

from __future__ import annotations

__version__ = "0.1.0"
