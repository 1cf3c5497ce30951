"""Training and evaluation of the shipped models: data sets (phantoms or a site's labelled DICOM),
training loops, cross-validation and the ``evaluate-seg`` / ``train-*`` commands.

It sits beside the node's path: it may import ``models``, ``pipeline`` and ``phantom``; the node's
runtime modules never import it (the CLI, the composition root, does, lazily).
"""
