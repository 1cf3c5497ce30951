"""Training data for the 3D classifier: one lesion cube and one label per study.

The cube is made exactly as the node makes it (``pipeline.cube.classifier_cube``: normal marrow
from region growing, CE parameter maps, 64 mm window around the lesion), around the largest
lesion of the reference mask. Sources: phantom studies (single-phase and dynamic mixed), or a
site's folder of DICOM series + SEG with a label file (CSV ``study_instance_uid,label``, label
``metastasis`` or ``primary``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.cube import classifier_cube
from pipeline.lesions import largest_component
from pipeline.parameter_maps import with_marrow_reference
from pipeline.volume import Volume
from training.errors import TrainingDataError
from training.node_segmentation import MASKS, reference_lesions
from training.parallel import map_studies

LABELS = {"primary": 0, "metastasis": 1}


@dataclass
class CubeSet:
    """Cubes float16 (N, 5, slices, 64, 64), labels (N,) 1 = metastasis, dynamic (N,) bool."""

    cubes: torch.Tensor
    labels: torch.Tensor
    dynamic: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> CubeSet:
        t = torch.as_tensor(idx, dtype=torch.long)
        return CubeSet(self.cubes[t], self.labels[t], self.dynamic[t], [self.names[i] for i in idx])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, cubes=self.cubes.numpy(), labels=self.labels.numpy(), dynamic=self.dynamic.numpy(),
                 names=np.array(self.names))

    @classmethod
    def concat(cls, parts: list[CubeSet]) -> CubeSet:
        return cls(torch.cat([p.cubes for p in parts]), torch.cat([p.labels for p in parts]),
                   torch.cat([p.dynamic for p in parts]), [n for p in parts for n in p.names])

    @classmethod
    def load(cls, path: Path) -> CubeSet:
        d = np.load(path, allow_pickle=False)
        return cls(torch.from_numpy(d["cubes"]), torch.from_numpy(d["labels"]), torch.from_numpy(d["dynamic"]),
                   [str(n) for n in d["names"]])

    @classmethod
    def build(cls, items: Iterable[tuple[str, Volume, np.ndarray, int]], total: int | None = None,
              desc: str = "cubes") -> CubeSet:
        cubes, labels, dynamic, names = [], [], [], []
        for name, volume, mask, label in tqdm(items, total=total, desc=desc, unit="study"):
            cubes.append(torch.from_numpy(volume_cube(volume, largest_component(mask))).half())
            labels.append(label)
            dynamic.append(volume.phases > 1)
            names.append(name)
        return cls(torch.stack(cubes), torch.tensor(labels), torch.tensor(dynamic), names)


def volume_cube(volume: Volume, lesion: np.ndarray) -> np.ndarray:
    """The cube around ``lesion`` (the lesion classified), as the node makes it."""
    image, marrow, maps = with_marrow_reference(volume)
    return classifier_cube(image, maps, marrow, lesion, volume.spacing)


def phantom_items(seeds: Iterable[int], dynamic_fraction: float = 0.4,
                  phases: int | None = None) -> Iterable[tuple[str, Volume, np.ndarray, int]]:
    """Phantom studies; ``phases`` fixes the phase count, else a share are dynamic (3-8 phases)."""
    from phantom import generate_study

    for seed in seeds:
        n = phase_count(np.random.default_rng([seed, 77]), phases, dynamic_fraction)
        study = generate_study(seed, phases=n)
        yield f"phantom-{seed}", study.volume(), study.mask, study.label


def phase_count(rng: np.random.Generator, phases: int | None, dynamic_fraction: float) -> int:
    """``phases`` when fixed, else 3-8 for a ``dynamic_fraction`` share of the studies and 1 for the rest."""
    if phases is not None:
        return phases
    return int(rng.integers(3, 9)) if rng.random() < dynamic_fraction else 1


def randomised_items(seeds: Iterable[int], phases: int | None = 1, dynamic_fraction: float = 0.0
                     ) -> Iterable[tuple[str, Volume, np.ndarray, int]]:
    """Domain-randomised studies (``phantom.randomised``) as the node would load them: ``phases``
    fixed (1, or 3-8), or with ``phases=None`` a ``dynamic_fraction`` share dynamic (3-8 phases,
    12 s apart as the protocol's 10-14 s)."""
    from phantom.randomised import SLICE_MM, generate_randomised

    for seed in seeds:
        n = phase_count(np.random.default_rng([seed, 78]), phases, dynamic_fraction)
        r = generate_randomised(seed, phases=n)
        nz, px = r.pixels.shape[1], float(r.meta["pixel_mm"])
        volume = Volume(pixels=r.pixels.astype(np.float32),
                        positions=np.array([[0.0, 0.0, SLICE_MM * k] for k in range(nz)]),
                        orientation=(1, 0, 0, 0, 1, 0), spacing=(SLICE_MM, px, px),
                        sop_instance_uids=tuple(tuple(str(p * nz + k) for k in range(nz)) for p in range(n)),
                        study_uid="phantom", series_uid=f"randomised-{seed}",
                        phase_times_s=tuple(12.0 * p for p in range(n)) if n > 1 else ())
        yield f"randomised-{seed}", volume, r.mask, r.label


# the share of dynamic studies a look gets when the caller fixes neither the phases nor the share:
# the randomised look had no dynamic studies before 2026-12-01 and its training sets stay single-phase
DYNAMIC_FRACTION = {"classic": 0.4, "randomised": 0.0}


def look_items(look: str, seeds: Iterable[int], phases: int | None = None, dynamic_fraction: float | None = None
               ) -> Iterable[tuple[str, Volume, np.ndarray, int]]:
    """``classic`` or ``randomised`` studies: ``phases`` fixed, else ``dynamic_fraction`` of them
    dynamic (3-8 phases; default :data:`DYNAMIC_FRACTION` of the look)."""
    fraction = DYNAMIC_FRACTION.get(look, DYNAMIC_FRACTION["classic"]) if dynamic_fraction is None \
        else dynamic_fraction
    if look == "randomised":
        return randomised_items(seeds, phases, fraction)
    return phantom_items(seeds, fraction, phases)


def radiomics_probability(volume: Volume, lesion: np.ndarray) -> float:
    """P(metastasis) of the shipped radiomics signature (single-phase or dynamic, as the series) for
    one lesion mask."""
    from models.radiomics_signature import Signature
    from pipeline.analysis import SIGNATURES
    from training.train_radiomics import lesion_features

    signature = Signature.load(SIGNATURES / f"radiomics_{'dynamic' if volume.phases > 1 else 'single'}.json")
    return float(signature.probability(lesion_features(volume, lesion)))


Made = tuple[str, np.ndarray, int, bool, float | None]


def _cube_of(args: tuple[str, int, int | None, float | None, str, bool]) -> Made | None:
    """One study's (name, cube, label, dynamic, radiomics P or None): the lesion segmented once
    (by the node on ``masks="node"``) serves both the cube and, when asked, the radiomics model."""
    look, seed, phases, fraction, masks, with_radiomics = args
    name, volume, mask, label = next(iter(look_items(look, [seed], phases, fraction)))
    lesion = reference_lesions(volume, mask, masks)
    if lesion is None:
        return None
    cube = volume_cube(volume, lesion).astype(np.float16)
    rad = radiomics_probability(volume, lesion) if with_radiomics else None
    return name, cube, label, volume.phases > 1, rad


def phantom_cubes(look: str, seeds: range, *, phases: int | None = None, dynamic_fraction: float | None = None,
                  processes: int = 1, desc: str = "cubes", masks: str = "truth") -> CubeSet:
    """The cubes of ``look``'s studies, made in ``processes`` worker processes (one thread each),
    around the ground truth's largest lesion or (``masks="node"``) the node's own; a study where
    the node finds no lesion is left out (it gets an abstention, never a class), and said so."""
    return _made(look, seeds, phases, dynamic_fraction, processes, desc, masks, False)[0]


def scored_phantom_cubes(look: str, seeds: range, *, phases: int | None = None, dynamic_fraction: float | None = None,
                         processes: int = 1, desc: str = "cubes", masks: str = "truth"
                         ) -> tuple[CubeSet, np.ndarray]:
    """:func:`phantom_cubes` and, for the same studies and the same lesions, the radiomics model's
    P(metastasis) (:func:`radiomics_probability`): held-out studies are segmented once for both."""
    cubes, rad = _made(look, seeds, phases, dynamic_fraction, processes, desc, masks, True)
    return cubes, np.array(rad, dtype=np.float64)


def _made(look: str, seeds: range, phases: int | None, dynamic_fraction: float | None, processes: int, desc: str,
          masks: str, with_radiomics: bool) -> tuple[CubeSet, list[float | None]]:
    if masks not in MASKS:
        raise TrainingDataError(f"masks must be one of {MASKS}, not {masks!r}")
    jobs = [(look, seed, phases, dynamic_fraction, masks, with_radiomics) for seed in seeds]
    made = map_studies(_cube_of, jobs, processes, desc)
    parts = [p for p in made if p is not None]
    if len(parts) < len(made):
        print(f"{desc}: {len(made) - len(parts)} of {len(made)} studies left out, the node found no lesion")
    if not parts:
        raise TrainingDataError(f"{desc}: no study has a lesion to centre a cube on")
    cubes = CubeSet(torch.stack([torch.from_numpy(p[1]) for p in parts]), torch.tensor([p[2] for p in parts]),
                    torch.tensor([p[3] for p in parts]), [p[0] for p in parts])
    return cubes, [p[4] for p in parts]


def read_labels(path: Path) -> dict[str, int]:
    """``study_instance_uid,label`` rows (a header row is allowed) -> {study UID: 0 or 1}."""
    out: dict[str, int] = {}
    with Path(path).open(newline="") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].strip().lower() in ("", "study_instance_uid") or row[0].startswith("#"):
                continue
            if len(row) < 2 or row[1].strip().lower() not in LABELS:
                raise TrainingDataError(f"{path}:{n}: expected 'study_instance_uid,label' with label one of "
                                        f"{sorted(LABELS)}, got {row!r}")
            out[row[0].strip()] = LABELS[row[1].strip().lower()]
    return out


def site_items(root: Path, labels_file: Path) -> list[tuple[str, Volume, np.ndarray, int]]:
    """A site's labelled series (see ``training.seg_data.labelled_folder``) with their study label;
    series whose study has no label are skipped, and said so."""
    from training.seg_data import labelled_folder

    labels = read_labels(labels_file)
    items, unlabelled = [], 0
    for name, volume, mask in labelled_folder(root):
        if volume.study_uid not in labels:
            unlabelled += 1
            continue
        items.append((name, volume, mask, labels[volume.study_uid]))
    if unlabelled:
        print(f"{unlabelled} labelled series skipped: their study is not in {labels_file}")
    if not items:
        raise TrainingDataError(f"no series under {root} has a SEG and a study label in {labels_file}")
    return items
