"""Scans: what a doctor uploaded, kept unchanged, and the slices the detector and the viewer read.

- `Scan`: one upload = one scan (a DICOM series, a NIfTI volume or an image file), owned by a user.
- `ScanFile`: each original file's bytes, stored unchanged, with its SHA-256 (a zip is stored as the zip).
- `ScanSlice`: one 2-D slice in display order: `image` is the 8-bit PNG after the project's windowing
  rule (`inference.ml.imaging.to_uint8` over the whole volume; this is what the detector and the default
  view use), and for sources that are not 8-bit `image16`, a 16-bit PNG of the native values so a viewer can
  set its own window: native value = png16 * Scan.pixel_scale + Scan.pixel_offset.

Verdicts live on the inference jobs (`inference.InferenceJob`, `scan.jobs`), not here.
"""
import uuid

from django.conf import settings
from django.db import models


def _scan_prefix(scan) -> str:
    return f"scans/{scan.uid.hex}"


def scan_file_path(instance: "ScanFile", filename: str) -> str:
    return f"{_scan_prefix(instance.scan)}/original/{instance.position:04d}-{filename}"


def scan_slice_path(instance: "ScanSlice", filename: str) -> str:
    return f"{_scan_prefix(instance.scan)}/slices/{filename}"


class Scan(models.Model):
    class Kind(models.TextChoices):
        DICOM = "dicom", "DICOM"
        NIFTI = "nifti", "NIfTI"
        IMAGE = "image", "Image (PNG, JPEG, TIFF)"

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="scans")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # What the doctor called it: the file name, or "<first file> (+N more)" for several files.
    original_name = models.CharField(max_length=255)
    # SHA-256 of the uploaded bytes: of the file itself for one file; for several files, of the
    # sorted, concatenated hex digests of the files (order-independent). Same bytes again = same scan.
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    # modality, series_description, study_date, slice_thickness, patient_age, patient_sex, ...
    # Never the patient's name or ID (see scans.ingest.SAFE_METADATA_KEYS).
    metadata = models.JSONField(default=dict, blank=True)
    n_slices = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    pixel_dtype = models.CharField(max_length=16, help_text="numpy dtype of the decoded source pixels")
    # For sources that are not 8-bit: native = png16 * pixel_scale + pixel_offset (image16 of each slice),
    # and the window (low, high) that made the 8-bit slices. Null for 8-bit sources.
    pixel_scale = models.FloatField(null=True, blank=True)
    pixel_offset = models.FloatField(null=True, blank=True)
    window_low = models.FloatField(null=True, blank=True)
    window_high = models.FloatField(null=True, blank=True)
    # When the latest comparison with the PACS's copy of the series was queued or attempted (metadata
    # "pacs_compare" says how it went); the periodic recheck (PACS_RECHECK_HOURS) schedules by it.
    pacs_checked_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "sha256"], name="scan_unique_owner_sha256"),
        ]
        indexes = [models.Index(fields=["owner", "-created_at"], name="scan_owner_created")]

    def __str__(self) -> str:
        return f"Scan {self.pk} ({self.original_name})"

    @property
    def has_native_pixels(self) -> bool:
        return self.pixel_scale is not None


class ScanFile(models.Model):
    """One original file as uploaded, byte for byte."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="files")
    position = models.PositiveIntegerField(help_text="order in the upload")
    file = models.FileField(upload_to=scan_file_path, max_length=500)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()

    class Meta:
        ordering = ["scan", "position"]
        constraints = [models.UniqueConstraint(fields=["scan", "position"], name="scanfile_unique_position")]

    def __str__(self) -> str:
        return self.original_name


class ScanSlice(models.Model):
    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="slices")
    index = models.PositiveIntegerField(help_text="0-based, in display order")
    image = models.FileField(upload_to=scan_slice_path, max_length=500, help_text="8-bit PNG, windowed")
    image16 = models.FileField(
        upload_to=scan_slice_path, max_length=500, blank=True, help_text="16-bit PNG of native values, if not 8-bit"
    )

    class Meta:
        ordering = ["scan", "index"]
        constraints = [models.UniqueConstraint(fields=["scan", "index"], name="scanslice_unique_index")]

    def __str__(self) -> str:
        return f"{self.scan_id}:{self.index}"


class DicomInstance(models.Model):
    """One DICOM instance of a stored scan: its SOP Instance UID and the digest of its pixels
    (``inference.ml.imaging.instance_fingerprints``), to find other stored copies of the same images and whether
    their pixels are the same (``scans.selectors.scan_copies``)."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="instances")
    sop_instance_uid = models.CharField(max_length=64, db_index=True)
    pixels_sha256 = models.CharField(max_length=64)
    first_slice = models.PositiveIntegerField(help_text="the scan's 0-based slice index of its first frame")
    n_frames = models.PositiveIntegerField(default=1)
    lossy = models.BooleanField(default=False, help_text="lossily compressed at some point (imaging.is_lossy): other "
                                "pixels in another copy are then no evidence of an edit")

    class Meta:
        ordering = ["scan", "first_slice"]

    def __str__(self) -> str:
        return f"{self.scan_id}:{self.sop_instance_uid}"
