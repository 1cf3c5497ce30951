"""Who made a result and its deterministic UIDs.

Every UID of an output is derived from the source series UID, the kind of output and the model
version (package version plus the weights' checksums), so the same input with the same models
always gives the same Series and SOP Instance UIDs (a re-run or re-send never duplicates in
PACS), and new model versions give new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from pipeline.reproducible import pin_generated_values
from pipeline.uids import derived_uid

MANUFACTURER = "spinenode project"
MODEL_NAME = "spinenode"
# What the objects contain, as a revision: any change to SEG, SR or key image content bumps it, so
# new content gets new UIDs (a PACS that keeps the first copy of a UID never hides it).
# 2: the SR codes "indeterminate" with reasons when the plausibility checks fail; the key image's
#    time of secondary capture is pinned like the other generated dates and times.
# 3: the vertebral body comes from the spine localiser (its checksum among the software versions),
#    the U-Net's lesions are those in the body, and a dynamic series' kinetics is checked.
# 4: IHE AIR Processing Algorithm items (Contributing Equipment) on every output; the SR gives each
#    lesion a planar outline with its long and short axes (TID 1410); SEG segments have colours.
# 5: the SR's image library lists the images the reported lesions lie on (those measured), not
#    every image of the series; "image unlike training" (UNLIKE_TRAINING) is an indeterminate reason;
#    the maximum diameter is exact for flat lesions of more than 3,000 voxels (was subsampled).
# 6: the SR's Algorithm Version is the release and revision, the models' checksums are Algorithm
#    Parameters (the version held them all and was cut at 64 characters).
# 7: region growing (code only, so versioned here) seeds 3 mm inside the body and takes its threshold
#    from the grown lesion's level: its SEG segment, and the SR where its lesion is reported, change.
# 8: the SR reports the overlap coefficient of U-Net and region growing (OVERLAP_UNET_RG), which
#    the segmentation-agreement check now uses instead of the Dice, so findings may change.
# 9: the U-Net's probability is the mean over the image and its left-right mirror image
#    (``pipeline.segmentation.MASK_VERSION`` 2): the U-Net's SEG segment, the measurements and the
#    classifier's input change, and with them the classifier's calibration.
# 10: region growing on a dynamic series grows on the enhancement (peak minus pre-contrast), and a
#     region that leaks out of the body there is confined, not dropped: its SEG segment, the
#     segmentation-agreement check and so the finding may change; a lesion covering a fifth of the
#     vertebral body passes the "lesion in the body" check, so the finding may change.
OUTPUT_REVISION = 10
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSIS - research use only, models trained on synthetic phantoms"


# IHE Radiology AI Results (AIR) Rev 1.1, 6.5.3.1: the Purpose of Reference of a Contributing
# Equipment item that names an algorithm. The supplement (Trial Implementation) has no final code
# yet and writes it as Newcode1 in its own scheme, as MONAI Deploy's writers do.
PROCESSING_ALGORITHM = Code("Newcode1", "99IHE", "Processing Algorithm")


def package_version() -> str:
    try:
        return version("spinenode")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class Algorithm:
    """One method that contributed to a result. ``checksum``: SHA-256 of its weights or signature
    file (None for a method that is code only, which is then versioned by the package)."""

    model_name: str
    description: str
    checksum: str | None = None

    @property
    def software_version(self) -> str:
        return f"sha256 {self.checksum[:16]}" if self.checksum else f"spinenode {package_version()}"

    @property
    def device_uid(self) -> str:
        """Changes whenever the model changes: derived from the weights' checksum (or, for code
        only, the package version)."""
        return derived_uid("spinenode-algorithm", self.model_name, self.checksum or package_version())

    def contributing_equipment(self) -> Dataset:
        """The AIR Processing Algorithm item of the Contributing Equipment Sequence."""
        purpose = Dataset()
        purpose.CodeValue = PROCESSING_ALGORITHM.value
        purpose.CodingSchemeDesignator = PROCESSING_ALGORITHM.scheme_designator
        purpose.CodeMeaning = PROCESSING_ALGORITHM.meaning
        item = Dataset()
        item.PurposeOfReferenceCodeSequence = [purpose]
        item.Manufacturer = MANUFACTURER
        item.ManufacturerModelName = self.model_name
        item.SoftwareVersions = self.software_version
        item.DeviceUID = self.device_uid
        item.ContributionDescription = self.description
        return item


@dataclass(frozen=True, kw_only=True)
class ResultIdentity:
    source_series_uid: str
    unet_sha256: str | None = None
    classifier_sha256: str | None = None
    localiser_sha256: str | None = None
    radiomics_sha256: str | None = None
    analysed: bool = False  # False: an abstention (only the input checks contributed)

    @property
    def algorithms(self) -> tuple[Algorithm, ...]:
        """The methods that contributed, each named once (IHE AIR: one item per algorithm)."""
        if not self.analysed:
            return (Algorithm("spinenode input checks", "Series checked and not analysed"),)
        found = [Algorithm("spinenode spine localiser", "Vertebral body localisation", self.localiser_sha256)
                 if self.localiser_sha256 else None,
                 Algorithm("spinenode region growing", "Lesion segmentation by region growing"),
                 Algorithm("spinenode improved U-Net", "Lesion segmentation", self.unet_sha256)
                 if self.unet_sha256 else None,
                 Algorithm("spinenode radiomics signature", "Rad-score and its probability of metastasis",
                           self.radiomics_sha256) if self.radiomics_sha256 else None,
                 Algorithm("spinenode 3D classifier", "Metastasis or primary bone malignancy",
                           self.classifier_sha256) if self.classifier_sha256 else None]
        return tuple(a for a in found if a is not None)

    @property
    def software_versions(self) -> tuple[str, ...]:
        versions = [f"spinenode {package_version()} outputs r{OUTPUT_REVISION}"]
        if self.unet_sha256:
            versions.append(f"unet sha256 {self.unet_sha256[:16]}")
        if self.classifier_sha256:
            versions.append(f"classifier sha256 {self.classifier_sha256[:16]}")
        if self.localiser_sha256:
            versions.append(f"spine localiser sha256 {self.localiser_sha256[:16]}")
        if self.radiomics_sha256:
            versions.append(f"radiomics sha256 {self.radiomics_sha256[:16]}")
        return tuple(versions)

    @property
    def model_version(self) -> str:
        return "|".join(self.software_versions)

    def uid(self, kind: str, part: str) -> str:
        """``kind`` names the output (seg, sr, key, abstention), ``part`` series or instance."""
        return derived_uid("spinenode-result", kind, part, self.source_series_uid, self.model_version)

    def add_algorithms(self, ds: Dataset) -> None:
        """Append an AIR Processing Algorithm item per contributing method to ``ds``'s
        Contributing Equipment Sequence (after highdicom's own items)."""
        ds.ContributingEquipmentSequence = [*ds.get("ContributingEquipmentSequence", []),
                                            *(a.contributing_equipment() for a in self.algorithms)]

    def pin(self, ds: Dataset, kind: str, reference: Dataset) -> None:
        """Replace highdicom's clock and random values by ones derived from the input: the
        study's date and time, and a UID from the same parts as the output's own UIDs."""
        pin_generated_values(ds, uid_parts=(kind, self.source_series_uid, self.model_version),
                             date=reference.get("StudyDate", "") or "19700101",
                             time=reference.get("StudyTime", "") or "000000")
