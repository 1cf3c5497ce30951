"""Who made a result: deterministic UIDs, software versions and the IHE AIR algorithm items."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest
from pydicom.dataset import Dataset

from pipeline.outputs import identity as identity_module
from pipeline.outputs.identity import Algorithm, ResultIdentity, package_version
from pipeline.uids import derived_uid

SHA = {name: name[0] * 8 + "0123456789abcdef" * 3 for name in ("unet", "classifier", "localiser", "radiomics")}


@pytest.fixture
def pinned_version(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fixed package version, so that UIDs derived from it can be compared with known values."""
    monkeypatch.setattr(identity_module, "package_version", lambda: "1.2.3")
    return "1.2.3"


def _analysed(**sha: str | None) -> ResultIdentity:
    return ResultIdentity(source_series_uid="1.2.826.0.1.3680043.8.498.1", analysed=True,
                          **{f"{name}_sha256": value for name, value in sha.items()})


def test_package_version_is_the_installed_distributions() -> None:
    assert package_version() == version("spinenode")


def test_package_version_of_an_uninstalled_tree_is_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(identity_module, "version", missing)
    assert package_version() == "0.0.0"


def test_an_algorithm_with_weights_is_versioned_by_their_checksum(pinned_version: str) -> None:
    algorithm = Algorithm("spinenode improved U-Net", "Lesion segmentation", "0123456789abcdef" + "f" * 48)
    assert algorithm.software_version == "sha256 0123456789abcdef"
    assert algorithm.device_uid == derived_uid("spinenode-algorithm", "spinenode improved U-Net",
                                               "0123456789abcdef" + "f" * 48)


def test_a_code_only_algorithm_is_versioned_by_the_package(pinned_version: str) -> None:
    algorithm = Algorithm("spinenode region growing", "Lesion segmentation by region growing")
    assert algorithm.software_version == "spinenode 1.2.3"
    assert algorithm.device_uid == derived_uid("spinenode-algorithm", "spinenode region growing", "1.2.3")


def test_device_uid_changes_with_the_weights_and_the_name_only(pinned_version: str) -> None:
    base = Algorithm("model", "one description", "a" * 64)
    assert Algorithm("model", "another description", "a" * 64).device_uid == base.device_uid
    assert Algorithm("model", "one description", "b" * 64).device_uid != base.device_uid
    assert Algorithm("other model", "one description", "a" * 64).device_uid != base.device_uid


def test_contributing_equipment_is_an_air_processing_algorithm_item(pinned_version: str) -> None:
    algorithm = Algorithm("spinenode 3D classifier", "Metastasis or primary bone malignancy", "c" * 64)
    item = algorithm.contributing_equipment()
    (purpose,) = item.PurposeOfReferenceCodeSequence
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning) == (
        "Newcode1", "99IHE", "Processing Algorithm")
    assert item.Manufacturer == "spinenode project"
    assert item.ManufacturerModelName == "spinenode 3D classifier"
    assert item.SoftwareVersions == "sha256 " + "c" * 16
    assert item.DeviceUID == algorithm.device_uid
    assert item.ContributionDescription == "Metastasis or primary bone malignancy"


def test_an_abstention_names_only_the_input_checks() -> None:
    identity = ResultIdentity(source_series_uid="1.2.3", unet_sha256=SHA["unet"])
    assert identity.algorithms == (Algorithm("spinenode input checks", "Series checked and not analysed"),)


def test_an_analysis_names_each_method_that_contributed_in_pipeline_order() -> None:
    identity = _analysed(unet=SHA["unet"], classifier=SHA["classifier"], localiser=SHA["localiser"],
                         radiomics=SHA["radiomics"])
    assert identity.algorithms == (
        Algorithm("spinenode spine localiser", "Vertebral body localisation", SHA["localiser"]),
        Algorithm("spinenode region growing", "Lesion segmentation by region growing"),
        Algorithm("spinenode improved U-Net", "Lesion segmentation", SHA["unet"]),
        Algorithm("spinenode radiomics signature", "Rad-score and its probability of metastasis", SHA["radiomics"]),
        Algorithm("spinenode 3D classifier", "Metastasis or primary bone malignancy", SHA["classifier"]),
    )


def test_methods_without_weights_are_left_out() -> None:
    """Region growing always contributes; a model that did not run (no checksum) is not named."""
    assert [a.model_name for a in _analysed().algorithms] == ["spinenode region growing"]
    assert [a.model_name for a in _analysed(unet=SHA["unet"]).algorithms] == [
        "spinenode region growing", "spinenode improved U-Net"]
    assert [a.model_name for a in _analysed(localiser=SHA["localiser"], classifier=SHA["classifier"]).algorithms] == [
        "spinenode spine localiser", "spinenode region growing", "spinenode 3D classifier"]
    assert [a.model_name for a in _analysed(radiomics=SHA["radiomics"]).algorithms] == [
        "spinenode region growing", "spinenode radiomics signature"]


def test_software_versions_name_the_package_revision_and_each_models_checksum(pinned_version: str) -> None:
    identity = _analysed(unet=SHA["unet"], classifier=SHA["classifier"], localiser=SHA["localiser"],
                         radiomics=SHA["radiomics"])
    assert identity.software_versions == (
        "spinenode 1.2.3 outputs r10", "unet sha256 uuuuuuuu01234567", "classifier sha256 cccccccc01234567",
        "spine localiser sha256 llllllll01234567", "radiomics sha256 rrrrrrrr01234567")
    assert identity.model_version == "|".join(identity.software_versions)
    assert _analysed().software_versions == ("spinenode 1.2.3 outputs r10",)
    assert _analysed().model_version == "spinenode 1.2.3 outputs r10"


def test_result_uids_are_derived_from_kind_part_series_and_model_version(pinned_version: str) -> None:
    """The derivation is part of the contract: a re-run with the same models after an upgrade of
    nothing else must give exactly the UIDs already in PACS."""
    identity = _analysed(unet=SHA["unet"])
    assert identity.uid("sr", "series") == derived_uid("spinenode-result", "sr", "series",
                                                       "1.2.826.0.1.3680043.8.498.1", identity.model_version)


def test_result_uids_are_deterministic_and_change_with_every_input(pinned_version: str) -> None:
    identity = _analysed(unet=SHA["unet"])
    uid = identity.uid("seg", "instance")
    assert uid == _analysed(unet=SHA["unet"]).uid("seg", "instance")
    others = {identity.uid("sr", "instance"), identity.uid("seg", "series"),
              _analysed(unet=SHA["classifier"]).uid("seg", "instance"),
              _analysed(unet=SHA["unet"], radiomics=SHA["radiomics"]).uid("seg", "instance"),
              ResultIdentity(source_series_uid="1.2.3.4", unet_sha256=SHA["unet"]).uid("seg", "instance")}
    assert uid not in others and len(others) == 5


def test_algorithms_are_appended_after_the_existing_contributing_equipment() -> None:
    ds = Dataset()
    highdicom_item = Dataset()
    highdicom_item.Manufacturer = "highdicom"
    ds.ContributingEquipmentSequence = [highdicom_item]
    identity = _analysed(unet=SHA["unet"])
    identity.add_algorithms(ds)
    assert [item.Manufacturer for item in ds.ContributingEquipmentSequence] == ["highdicom"] + [
        "spinenode project"] * 2
    assert [item.ManufacturerModelName for item in ds.ContributingEquipmentSequence[1:]] == [
        "spinenode region growing", "spinenode improved U-Net"]


def test_algorithms_start_a_new_contributing_equipment_sequence() -> None:
    ds = Dataset()
    ResultIdentity(source_series_uid="1.2.3").add_algorithms(ds)
    assert [item.ManufacturerModelName for item in ds.ContributingEquipmentSequence] == ["spinenode input checks"]


def _generated() -> Dataset:
    """What highdicom stamps from the clock and a random generator."""
    ds = Dataset()
    ds.ContentDate, ds.ContentTime = "20991231", "235959.123"
    ds.InstanceCreationDate, ds.InstanceCreationTime = "20991231", "235959"
    item = Dataset()
    item.ContributionDateTime = "20991231235959"
    ds.ContributingEquipmentSequence = [item]
    organisation = Dataset()
    organisation.DimensionOrganizationUID = "1.2.3.999"
    ds.DimensionOrganizationSequence = [organisation]
    return ds


def test_pin_uses_the_studys_date_and_time() -> None:
    reference = Dataset()
    reference.StudyDate, reference.StudyTime = "20240102", "101112.5"
    ds = _generated()
    _analysed().pin(ds, "seg", reference)
    assert (ds.ContentDate, ds.ContentTime) == ("20240102", "101112.5")
    assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == ("20240102", "101112.5")
    assert ds.ContributingEquipmentSequence[0].ContributionDateTime == "20240102101112"


@pytest.mark.parametrize("empty", [None, ""])
def test_pin_without_a_study_date_and_time_uses_the_epoch(empty: str | None) -> None:
    reference = Dataset()
    if empty is not None:
        reference.StudyDate, reference.StudyTime = empty, empty
    ds = _generated()
    _analysed().pin(ds, "seg", reference)
    assert (ds.ContentDate, ds.ContentTime) == ("19700101", "000000")
    assert ds.ContributingEquipmentSequence[0].ContributionDateTime == "19700101000000"


def test_pinned_dimension_organisation_uid_comes_from_the_outputs_own_parts(pinned_version: str) -> None:
    def pinned(identity: ResultIdentity, kind: str) -> str:
        ds = _generated()
        identity.pin(ds, kind, Dataset())
        return str(ds.DimensionOrganizationSequence[0].DimensionOrganizationUID)

    identity = _analysed(unet=SHA["unet"])
    uid = pinned(identity, "seg")
    assert uid == derived_uid("dimension-organization", "seg", "1.2.826.0.1.3680043.8.498.1",
                              identity.model_version)
    assert uid == pinned(_analysed(unet=SHA["unet"]), "seg")
    assert uid != pinned(identity, "key") and uid != pinned(_analysed(), "seg")


def test_derived_uids_are_pinned_name_based_uuids_under_2_25() -> None:
    """The same parts give the same UID on every machine and release (results sent again must
    replace, not duplicate): the values are pinned, and each is a version-5, RFC 4122 variant UUID."""
    assert derived_uid("spinenode", "seg", 1.5) == "2.25.306871725706583412185760920004817915101"
    assert derived_uid("a") == "2.25.269290709893686617521543778921997392973"
    value = int(derived_uid("a").removeprefix("2.25."))
    assert (value >> 76) & 0xF == 5 and (value >> 62) & 0x3 == 0b10
    assert derived_uid("a", "b") != derived_uid("a\x1fb", "") != derived_uid("ab")


def test_a_derived_uid_needs_a_part() -> None:
    with pytest.raises(ValueError, match="^derived_uid needs at least one part to derive from$"):
        derived_uid()
