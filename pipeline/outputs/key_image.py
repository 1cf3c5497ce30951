"""The key image: a Secondary Capture of the slice with the largest lesion, outlines burned in,
"NOT FOR DIAGNOSIS" and a one-line summary, for viewers that do not display SEG."""

from __future__ import annotations

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from scipy import ndimage

from pipeline.outputs.colours import RG_RGB, UNET_RGB
from pipeline.outputs.identity import MANUFACTURER, ResultIdentity

KEY_SERIES_NUMBER = 9703
MIN_SIDE = 512


def render(image: np.ndarray, unet: np.ndarray | None, rg: np.ndarray, summary: str, headline: str = "") -> np.ndarray:
    """(rows, cols) slice and masks -> RGB uint8 with outlines and text, at least 512 px wide."""
    low, high = np.percentile(image, [1, 99.5])
    grey = (np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
    scale = max(1, int(np.ceil(MIN_SIDE / max(image.shape))))
    rgb = np.repeat(np.kron(grey, np.ones((scale, scale), dtype=np.uint8))[:, :, None], 3, axis=2)
    for mask, colour in ((rg, RG_RGB), (unet, UNET_RGB)):
        if mask is None:
            continue
        big = np.kron(mask.astype(np.uint8), np.ones((scale, scale), dtype=np.uint8)).astype(bool)
        rgb[big & ~ndimage.binary_erosion(big, iterations=2)] = colour
    canvas = Image.fromarray(rgb)
    draw = ImageDraw.Draw(canvas)
    big_px, small_px = max(14, canvas.width // 36), max(11, canvas.width // 50)
    font = ImageFont.load_default(size=big_px)
    small = ImageFont.load_default(size=small_px)
    draw.rectangle([0, 0, canvas.width, big_px + small_px + 16], fill=(0, 0, 0))
    draw.text((6, 4), "NOT FOR DIAGNOSIS", fill=(255, 255, 0), font=font)
    draw.text((6, big_px + 10), headline, fill=(255, 255, 255), font=small)
    draw.rectangle([0, canvas.height - 2 * small_px - 14, canvas.width, canvas.height], fill=(0, 0, 0))
    draw.text((6, canvas.height - 2 * small_px - 10), summary, fill=(255, 255, 255), font=small)
    legend = "red: U-Net   blue: region growing" if unet is not None else "blue: region growing"
    draw.text((6, canvas.height - small_px - 5), legend, fill=(200, 200, 200), font=small)
    return np.asarray(canvas)


def build_key_image(reference: Dataset, image: np.ndarray, unet: np.ndarray | None, rg: np.ndarray,
                    summary: str, *, identity: ResultIdentity, headline: str = "") -> hd.sc.SCImage:
    """``reference``: the source dataset of the slice shown (patient and study are copied);
    ``headline``: the study-level AI result, shown under the NOT FOR DIAGNOSIS banner."""
    pixels = render(image, unet, rg, summary, headline)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=identity.uid("key", "series"),
        series_number=KEY_SERIES_NUMBER,
        sop_instance_uid=identity.uid("key", "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "P"),
        series_description="AI key image (NOT FOR DIAGNOSIS)",
    )
    sc.BurnedInAnnotation = "YES"
    sc.BodyPartExamined = reference.get("BodyPartExamined") or "SPINE"  # not paired: no Laterality
    sc.ImageComments = " ".join(filter(None, ("NOT FOR DIAGNOSIS.", f"{headline}." if headline else "", summary)))
    sc.SoftwareVersions = list(identity.software_versions)  # type: ignore[assignment]
    identity.add_algorithms(sc)
    identity.pin(sc, "key", reference)
    return sc
