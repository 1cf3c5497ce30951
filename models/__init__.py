"""Network definitions, their input/output conventions, the radiomics signature, the shipped weights
(weights/) and their model cards (cards/). Imports nothing of this project: training lives in
``training``, the analysis that runs the networks in ``pipeline``."""
