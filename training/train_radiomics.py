"""`spinenode train-radiomics`: features over phantom lesions, the signature, its 10-fold CV.

Per study: CE parameter maps (``pipeline.parameter_maps``, marrow reference from region growing
as in the node), radiomics over the largest lesion on each map, the class label. The lesion is the
ground truth's largest (``--masks truth``) or the one the node itself would measure (``--masks
node``: ``pipeline.analysis.analyse`` with the shipped U-Net, so the signature learns the masks it
will see; a study where the node finds no lesion is left out, as the node gives it no Rad-score).
Features are cached (``--cache``) so that fitting and CV can be repeated cheaply.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from phantom import generate_study
from pipeline.lesions import largest_component
from pipeline.parameter_maps import with_marrow_reference
from pipeline.radiomics import extract
from pipeline.volume import Volume
from training.errors import TrainingError
from training.node_segmentation import MASKS, reference_lesions
from training.parallel import map_studies
from training.signature import cross_validate, fit

RANDOMISED_SEED = 70000


def lesion_features(volume: Volume, mask: np.ndarray) -> dict[str, float]:
    """Every feature of the largest lesion of ``mask`` on each map of ``volume``."""
    _, _, maps = with_marrow_reference(volume)
    return extract(maps.available(), largest_component(mask), volume.spacing)


def study_features(seed: int, phases: int) -> tuple[dict[str, float], int]:
    study = generate_study(seed, phases=phases)
    return lesion_features(study.volume(), study.mask), study.label


def _row(job: tuple[str, int, int, str]) -> tuple[dict[str, float] | None, int]:
    from training.classifier_data import look_items

    look, seed, phases, masks = job
    _, volume, truth, label = next(iter(look_items(look, [seed], phases)))
    lesion = reference_lesions(volume, truth, masks)
    return (None if lesion is None else lesion_features(volume, lesion)), label


def build_table(seeds: range, phases: int, cache: Path | None, randomised: range = range(0), *,
                masks: str = "truth", processes: int = 1) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features of the classic look's ``seeds`` and (single-phase only) the randomised look's
    ``randomised`` seeds, on ``masks`` (``truth`` or ``node``), in ``processes`` processes."""
    if masks not in MASKS:
        raise TrainingError(f"masks must be one of {MASKS}, not {masks!r}")
    if cache is not None and cache.exists():
        data = np.load(cache, allow_pickle=False)
        return data["x"], data["y"], [str(n) for n in data["names"]]
    jobs = [("classic", seed, phases, masks) for seed in seeds]
    jobs += [("randomised", seed, 1, masks) for seed in randomised]
    found = map_studies(_row, jobs, processes, f"radiomics ({masks} masks)")
    rows = [feats for feats, _ in found if feats is not None]
    labels = [label for feats, label in found if feats is not None]
    if len(rows) < len(found):
        print(f"{len(found) - len(rows)} of {len(found)} studies left out: the node found no lesion in them")
    if not rows:
        raise TrainingError("no study has a lesion to extract features from")
    names = sorted(rows[0])
    x = np.array([[r.get(n, np.nan) for n in names] for r in rows], dtype=np.float64)
    y = np.array(labels, dtype=int)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, x=x, y=y, names=np.array(names))
    return x, y, names


def train(studies: int, seed: int, phases: int, out: Path, cache: Path | None, figure: Path | None,
          randomised_studies: int = 0, *, masks: str = "truth", processes: int = 1) -> dict:
    """``randomised_studies`` (single-phase only) adds domain-randomised studies, seeds 70000-...;
    ``masks``: the lesion measured, ``truth`` or ``node`` (see the module's docstring)."""
    mode = "single" if phases == 1 else "dynamic"
    if randomised_studies and phases != 1:
        raise TrainingError("randomised studies are added to the single-phase signature only: "
                            "--randomised-studies needs --phases 1")
    randomised = range(RANDOMISED_SEED, RANDOMISED_SEED + randomised_studies)
    x, y, names = build_table(range(seed, seed + studies), phases, cache, randomised, masks=masks,
                              processes=processes)
    cv = cross_validate(x, y, names, mode)
    signature = fit(x, y, names, mode)
    data = f"classic phantom seeds {seed}-{seed + studies - 1}, phases {phases}"
    if randomised_studies:
        data += f"; randomised phantom seeds {randomised.start}-{randomised.stop - 1}"
    data += "; lesions as the node segments them (shipped U-Net)" if masks == "node" else "; ground-truth lesions"
    signature.training = {"data": data,
                          "studies": int(len(y)), "metastases": int(y.sum()), "features_extracted": len(names),
                          "cv10": cv["metrics"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    signature.save(out)
    if figure is not None:
        _figure(signature, figure)
    print(json.dumps({"mode": mode, "features": signature.features, "cv10": cv["metrics"]}, indent=2))
    return {"signature": signature, "cv": cv}


def _figure(signature, path: Path) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(signature.coefficients)
    fig, ax = plt.subplots(figsize=(13, 0.45 * len(order) + 1.8))
    ax.barh([signature.features[i] for i in order], [signature.coefficients[i] for i in order],
            color=["tab:blue" if signature.coefficients[i] < 0 else "tab:red" for i in order])
    ax.set_xlabel("LASSO coefficient (standardised feature; positive favours metastasis)")
    ax.set_title(f"Radiomics signature ({signature.mode}-phase phantoms, not for diagnosis)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
