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
OUTPUT_REVISION = 3
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSIS - research use only, models trained on synthetic phantoms"


def package_version() -> str:
    try:
        return version("spinenode")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True, kw_only=True)
class ResultIdentity:
    source_series_uid: str
    unet_sha256: str | None = None
    classifier_sha256: str | None = None
    localiser_sha256: str | None = None

    @property
    def software_versions(self) -> tuple[str, ...]:
        versions = [f"spinenode {package_version()} outputs r{OUTPUT_REVISION}"]
        if self.unet_sha256:
            versions.append(f"unet sha256 {self.unet_sha256[:16]}")
        if self.classifier_sha256:
            versions.append(f"classifier sha256 {self.classifier_sha256[:16]}")
        if self.localiser_sha256:
            versions.append(f"spine localiser sha256 {self.localiser_sha256[:16]}")
        return tuple(versions)

    @property
    def model_version(self) -> str:
        return "|".join(self.software_versions)

    def uid(self, kind: str, part: str) -> str:
        """``kind`` names the output (seg, sr, key, abstention), ``part`` series or instance."""
        return derived_uid("spinenode-result", kind, part, self.source_series_uid, self.model_version)

    def pin(self, ds: Dataset, kind: str, reference: Dataset) -> None:
        """Replace highdicom's clock and random values by ones derived from the input: the
        study's date and time, and a UID from the same parts as the output's own UIDs."""
        pin_generated_values(ds, uid_parts=(kind, self.source_series_uid, self.model_version),
                             date=reference.get("StudyDate", "") or "19700101",
                             time=reference.get("StudyTime", "") or "000000")
