"""Anti-aliased shapes on a slice stack, evaluated only inside their bounding boxes.

Coordinates are millimetres in the image plane (x along columns, towards the patient's left;
y along rows, towards posterior) and along the slice axis (z), with the origin at the centre of
the stack. Memberships are soft (0..1 over about one pixel) so edges show partial volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FloatArray = np.ndarray
Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Canvas:
    """Pixel-centre coordinates of a stack of ``nz`` slices of ``rows`` x ``columns`` pixels."""

    x: FloatArray  # (columns,)
    y: FloatArray  # (rows,)
    z: FloatArray  # (nz,)
    pixel_mm: float

    @classmethod
    def make(cls, rows: int, columns: int, nz: int, pixel_mm: float, slice_mm: float) -> Canvas:
        x = (np.arange(columns, dtype=np.float32) - (columns - 1) / 2) * pixel_mm
        y = (np.arange(rows, dtype=np.float32) - (rows - 1) / 2) * pixel_mm
        z = (np.arange(nz, dtype=np.float32) - (nz - 1) / 2) * slice_mm
        return cls(x=x, y=y, z=z, pixel_mm=pixel_mm)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.z), len(self.y), len(self.x))

    def box(self, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> Box | None:
        """Index slices covering a physical box (with a two-pixel margin), or None if outside."""
        m = 2 * self.pixel_mm
        ix = np.searchsorted(self.x, [x0 - m, x1 + m])
        iy = np.searchsorted(self.y, [y0 - m, y1 + m])
        iz = np.searchsorted(self.z, [z0 - 1e-3, z1 + 1e-3])
        if ix[0] >= ix[1] or iy[0] >= iy[1] or iz[0] >= iz[1]:
            return None
        return (slice(iz[0], iz[1]), slice(iy[0], iy[1]), slice(ix[0], ix[1]))


def _soft(distance_mm: FloatArray, pixel_mm: float) -> FloatArray:
    """Signed distance (negative inside) to a membership ramp one pixel wide."""
    return np.clip(0.5 - distance_mm / pixel_mm, 0.0, 1.0).astype(np.float32, copy=False)


def per_slice(value: float | FloatArray, nz: int) -> FloatArray:
    """A scalar or per-slice parameter as an array of shape (nz,)."""
    arr = np.asarray(value, dtype=np.float32)
    return np.broadcast_to(arr, (nz,)).astype(np.float32)


def ellipse(
    cv: Canvas,
    cx: float | FloatArray,
    cy: float | FloatArray,
    a: float | FloatArray,
    b: float | FloatArray,
    angle: float = 0.0,
) -> tuple[Box, FloatArray] | None:
    """An elliptical cross-section on every slice; centre and semi-axes may vary per slice."""
    nz = len(cv.z)
    cx, cy, a, b = (per_slice(v, nz) for v in (cx, cy, a, b))
    r = float(np.max(np.maximum(a, b)))
    box = cv.box(float(cx.min()) - r, float(cx.max()) + r, float(cy.min()) - r,
                 float(cy.max()) + r, float(cv.z[0]), float(cv.z[-1]))
    if box is None:
        return None
    zs = box[0]
    dx = cv.x[box[2]][None, None, :] - cx[zs, None, None]
    dy = cv.y[box[1]][None, :, None] - cy[zs, None, None]
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    aa = a[zs, None, None]
    bb = b[zs, None, None]
    u, v = dx / aa, dy / bb
    rho = np.sqrt(u * u + v * v) + 1e-6
    grad = np.sqrt((u / aa) ** 2 + (v / bb) ** 2) / rho + 1e-6
    return box, _soft((rho - 1.0) / grad, cv.pixel_mm)


def blob_distance(
    cv: Canvas, spheres: list[tuple[float, float, float, float, float, float]], margin: float
) -> tuple[Box, FloatArray] | None:
    """Approximate signed distance (mm) to a union of ellipsoids (cx, cy, cz, rx, ry, rz).

    Exact for spheres outside the union; inside it is the deepest penetration, which is
    what rim and septal enhancement need.
    """
    lo = np.array([min(s[i] - s[i + 3] for s in spheres) for i in range(3)]) - margin
    hi = np.array([max(s[i] + s[i + 3] for s in spheres) for i in range(3)]) + margin
    box = cv.box(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])
    if box is None:
        return None
    x = cv.x[box[2]][None, None, :]
    y = cv.y[box[1]][None, :, None]
    z = cv.z[box[0]][:, None, None]
    dist: FloatArray | None = None
    for cx, cy, cz, rx, ry, rz in spheres:
        r_mean = (rx * ry * rz) ** (1 / 3)
        u = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2)
        d = (u - 1.0) * r_mean
        dist = d if dist is None else np.minimum(dist, d)
    assert dist is not None
    return box, dist.astype(np.float32)


def membership(distance_mm: FloatArray, pixel_mm: float) -> FloatArray:
    return _soft(distance_mm, pixel_mm)


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int, int], cell: int, z_corr: float = 0.6
) -> FloatArray:
    """Zero-mean, unit-sd smooth noise: a coarse grid every ``cell`` pixels, bilinearly upsampled
    in-plane (two small matrix products) and correlated between neighbouring slices."""
    nz, rows, cols = shape
    gy, gx = rows // cell + 2, cols // cell + 2
    coarse = rng.standard_normal((nz, gy, gx)).astype(np.float32)
    for k in range(1, nz):  # AR(1) along z: shapes vary smoothly from slice to slice
        coarse[k] = z_corr * coarse[k - 1] + np.sqrt(1 - z_corr**2) * coarse[k]
    uy = _interp_matrix(rows, gy)
    ux = _interp_matrix(cols, gx)
    field = uy @ coarse @ ux.T
    field -= field.mean()
    field /= field.std() + 1e-6
    return field.astype(np.float32)


def _interp_matrix(n: int, m: int) -> FloatArray:
    """Linear interpolation from m coarse samples to n fine samples, as an (n, m) matrix."""
    pos = np.linspace(0, m - 1, n, dtype=np.float32)
    lo = np.clip(np.floor(pos).astype(int), 0, m - 2)
    frac = pos - lo
    mat = np.zeros((n, m), dtype=np.float32)
    mat[np.arange(n), lo] = 1 - frac
    mat[np.arange(n), lo + 1] = frac
    return mat
