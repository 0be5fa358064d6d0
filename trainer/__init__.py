"""Training side of Self-Retrieval, installed as ``selfretrieval_trainer``.

The folder is called ``trainer/`` but its import name is ``selfretrieval_trainer`` because a
distribution named ``trainer`` already exists on PyPI.
"""
