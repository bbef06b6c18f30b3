"""Every reader on real files from ../shared/datasets, and clear errors on bad input."""
import shutil
import warnings

import cv2
import numpy as np
import pytest
import tifffile

from inference.ml.dataset.readers import SourceError, SourceWarning, read_source

from .conftest import BRAINIX, LGG, TCIA

CASE = "TCGA_CS_4941_19960909"


def _case_dir(tmp_path, layout_root="lgg"):
    root = tmp_path / layout_root / "kaggle_3m"
    root.mkdir(parents=True)
    (root / CASE).symlink_to(LGG / CASE)
    return tmp_path / layout_root


def test_kaggle3m_flair_only(tmp_path):
    slices = read_source(str(_case_dir(tmp_path)))
    n_files = len(list((LGG / CASE).glob("*_mask.tif")))
    assert len(slices) == n_files
    s = next(x for x in slices if x.meta["slice"] == 12)
    raw = tifffile.imread(LGG / CASE / f"{CASE}_12.tif")
    assert s.image.dtype == np.uint8 and np.array_equal(s.image, raw)  # 8-bit kept byte for byte
    assert s.patient_id == "TCGA_CS_4941" and s.source == "lgg"
    assert any(x.mask.any() for x in slices) and any(not x.mask.any() for x in slices)
    assert 0.0 <= min(x.position for x in slices) and max(x.position for x in slices) == 1.0


def _rgb_case(tmp_path):
    """One LGG slice as the public 3-channel TIFF (pre-contrast, FLAIR, post-contrast) with its mask; (root, rgb)."""
    case = tmp_path / "rgb" / "kaggle_3m" / CASE
    case.mkdir(parents=True)
    flair = tifffile.imread(LGG / CASE / f"{CASE}_12.tif")
    rgb = np.stack([flair // 2, flair, 255 - flair], axis=-1)
    tifffile.imwrite(case / f"{CASE}_12.tif", rgb, photometric="rgb")
    shutil.copy(LGG / CASE / f"{CASE}_12_mask.tif", case / f"{CASE}_12_mask.tif")
    return tmp_path / "rgb", rgb


def test_kaggle3m_rgb_uses_flair_channel(tmp_path):
    root, rgb = _rgb_case(tmp_path)
    (s,) = read_source(str(root))
    assert np.array_equal(s.image, rgb[..., 1])


def test_kaggle3m_orphan_mask_is_skipped_with_warning(tmp_path):
    root = tmp_path / "orph" / "kaggle_3m"
    root.mkdir(parents=True)
    (root / "TCGA_CS_5396_20010302").symlink_to(LGG / "TCGA_CS_5396_20010302")
    with pytest.warns(SourceWarning, match="TCGA_CS_5396_20010302_14_mask.tif: a mask without its image"):
        slices = read_source(str(tmp_path / "orph"))
    assert slices and all(s.meta["slice"] != 14 for s in slices)


def test_pairs_png_jpeg_tiff_and_mask_naming(tmp_path):
    img = tifffile.imread(LGG / CASE / f"{CASE}_14.tif")
    mask = tifffile.imread(LGG / CASE / f"{CASE}_14_mask.tif")
    assert mask.any()
    root = tmp_path / "pairs"
    (root / "patA").mkdir(parents=True)
    (root / "patB" / "masks").mkdir(parents=True)
    cv2.imwrite(str(root / "patA" / "s1.png"), img)
    cv2.imwrite(str(root / "patA" / "s1_seg.png"), mask)
    cv2.imwrite(str(root / "patA" / "s2.jpg"), img)
    cv2.imwrite(str(root / "patA" / "s2_seg.png"), mask)
    tifffile.imwrite(root / "patB" / "t1.tif", img)
    cv2.imwrite(str(root / "patB" / "masks" / "t1.png"), mask)
    slices = read_source(f"pairs:{root}", mask_pattern="{stem}_seg")
    by_file = {s.file: s for s in slices}
    assert set(by_file) == {"patA/s1.png", "patA/s2.jpg", "patB/t1.tif"}
    assert np.array_equal(by_file["patA/s1.png"].image, img)
    assert np.array_equal(by_file["patB/t1.tif"].mask, mask > 0)
    assert by_file["patB/t1.tif"].patient_id == "patB"
    assert np.abs(by_file["patA/s2.jpg"].image.astype(int) - img).mean() < 3  # JPEG, lossy


def test_pairs_16bit_png_is_windowed(tmp_path):
    img = (tifffile.imread(LGG / CASE / f"{CASE}_14.tif").astype(np.uint16) * 200)
    mask = tifffile.imread(LGG / CASE / f"{CASE}_14_mask.tif")
    cv2.imwrite(str(tmp_path / "a.png"), img)
    cv2.imwrite(str(tmp_path / "a_mask.png"), mask)
    (s,) = read_source(f"pairs:{tmp_path}")
    assert s.image.dtype == np.uint8 and s.image.max() == 255 and s.mask.sum() == (mask > 0).sum()


def test_dicom_series_with_mask_series():
    slices = read_source(str(BRAINIX))
    assert len(slices) == 22 and slices[0].image.shape == (288, 288) and slices[0].image.dtype == np.uint8
    assert sum(s.mask.any() for s in slices) == 8
    assert len({s.patient_id for s in slices}) == 1 and slices[0].file == "DICOM/FLAIR"


def test_nifti_volume_with_labels_skips_blank_slices(tmp_path):
    (tmp_path / "tcia").mkdir()
    (tmp_path / "tcia" / "03").symlink_to(TCIA / "03")
    slices = read_source(str(tmp_path / "tcia"))
    assert {s.patient_id for s in slices} == {"03"}
    assert len(slices) < 48  # two 24-slice volumes, blank padding dropped
    assert all(s.image.max() > 0 for s in slices)
    assert any(s.mask.any() for s in slices) and slices[0].image.shape == (256, 256)
    brainix = read_source(f"nifti:{BRAINIX}")
    assert len(brainix) == 22 and sum(s.mask.any() for s in brainix) == 8


def test_mismatched_image_and_mask_sizes(tmp_path):
    img = tifffile.imread(LGG / CASE / f"{CASE}_14.tif")
    cv2.imwrite(str(tmp_path / "a.png"), img)
    cv2.imwrite(str(tmp_path / "a_mask.png"), np.zeros((128, 128), np.uint8))
    with pytest.raises(SourceError, match="a.png: the image is 256 x 256 but its mask is 128 x 128; an image"), \
            pytest.warns(SourceWarning, match="lies directly in the corpus folder"):
        read_source(str(tmp_path))


def test_empty_corpus(tmp_path):
    with pytest.raises(SourceError, match="no image with a mask was found"):
        read_source(str(tmp_path))
    with pytest.raises(SourceError, match="no such file or folder"):
        read_source(str(tmp_path / "missing"))


def test_corrupt_files(tmp_path):
    case = tmp_path / "bad" / "kaggle_3m" / CASE
    case.mkdir(parents=True)
    data = (LGG / CASE / f"{CASE}_12.tif").read_bytes()
    (case / f"{CASE}_12.tif").write_bytes(data[: len(data) // 3])
    shutil.copy(LGG / CASE / f"{CASE}_12_mask.tif", case)
    with pytest.raises(SourceError, match=f"{CASE}_12.tif"):
        read_source(str(tmp_path / "bad"))
    png = tmp_path / "png" / "patient"
    png.mkdir(parents=True)
    (png / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    cv2.imwrite(str(png / "x_mask.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(SourceError, match="patient/x.png"):
        read_source(str(png.parent))


def test_every_problem_in_a_corpus_is_named_at_once(tmp_path):
    img = tifffile.imread(LGG / CASE / f"{CASE}_14.tif")
    mask = tifffile.imread(LGG / CASE / f"{CASE}_14_mask.tif")
    root = tmp_path / "c"
    for patient in ("p1", "p2", "p3"):
        (root / patient).mkdir(parents=True)
        cv2.imwrite(str(root / patient / "s1.png"), img)
        cv2.imwrite(str(root / patient / "s1_mask.png"), mask)
    (root / "p1" / "s1.png").write_bytes((root / "p1" / "s1.png").read_bytes()[:300])  # truncated
    cv2.imwrite(str(root / "p3" / "s1_mask.png"), cv2.resize(mask, (128, 128)))
    with pytest.raises(SourceError) as err:
        read_source(str(root))
    message = str(err.value)
    assert "2 problems in the corpus (nothing was built)" in message
    assert "p1/s1.png (mask p1/s1_mask.png): The PNG file is truncated" in message
    assert "p3/s1.png: the image is 256 x 256 but its mask is 128 x 128" in message
    assert "p2" not in message


def test_a_jpeg_mask_is_the_tumour_not_its_compression_ringing(tmp_path):
    img = tifffile.imread(LGG / CASE / f"{CASE}_14.tif")
    mask = tifffile.imread(LGG / CASE / f"{CASE}_14_mask.tif") > 0
    root = tmp_path / "jpeg" / "patA"
    root.mkdir(parents=True)
    cv2.imwrite(str(root / "s1.jpg"), img)
    cv2.imwrite(str(root / "s1_mask.jpg"), mask.astype(np.uint8) * 255)
    stored = cv2.imread(str(root / "s1_mask.jpg"), cv2.IMREAD_GRAYSCALE)
    assert (stored > 0).sum() > mask.sum() + 100  # what "non-zero" would have called tumour
    (s,) = read_source(str(tmp_path / "jpeg"))
    assert abs(int(s.mask.sum()) - int(mask.sum())) <= 0.01 * mask.sum()
    assert (s.mask ^ mask).sum() <= 0.02 * mask.sum()


def test_tumour_mask_rule():
    from inference.ml.dataset.readers import MAX_LABEL_VALUES, tumour_mask

    labels = np.array([[0, 1, 2], [4, 0, 0]], np.uint8)  # a label map: every label is tumour
    assert tumour_mask(labels).tolist() == [[False, True, True], [True, False, False]]
    assert tumour_mask(labels, lossy=True).tolist() == [[False, False, False], [True, False, False]]
    soft = np.linspace(0, 1, MAX_LABEL_VALUES + 5).reshape(1, -1)  # resampled: many values in 0..1
    assert tumour_mask(soft).tolist() == (soft > 0.5).tolist()
    assert not tumour_mask(np.zeros((4, 4))).any() and not tumour_mask(np.full((2, 2), np.nan)).any()


def test_pairs_position_in_the_stack(tmp_path):
    img = tifffile.imread(LGG / CASE / f"{CASE}_14.tif")
    mask = tifffile.imread(LGG / CASE / f"{CASE}_14_mask.tif")
    root = tmp_path / "pos"
    for patient, names in {"numbered": ["IM-0001-0003", "IM-0001-0010", "IM-0001-0024"],
                           "unnumbered": ["front", "middle", "back"], "two": ["a1", "a2"]}.items():
        (root / patient).mkdir(parents=True)
        for name in names:
            cv2.imwrite(str(root / patient / f"{name}.png"), img)
            cv2.imwrite(str(root / patient / f"{name}_mask.png"), mask)
    (root / "volume").mkdir()
    tifffile.imwrite(root / "volume" / "v.tif", np.stack([img] * 5))
    tifffile.imwrite(root / "volume" / "v_mask.tif", np.stack([mask] * 5))
    by = {(s.file, s.index): s.position for s in read_source(str(root))}
    assert by[("numbered/IM-0001-0003.png", 0)] == 0.0 and by[("numbered/IM-0001-0024.png", 0)] == 1.0
    assert by[("numbered/IM-0001-0010.png", 0)] == pytest.approx(7 / 21)
    assert by[("unnumbered/front.png", 0)] is None and by[("two/a1.png", 0)] is None  # no order to read
    assert [by[("volume/v.tif", i)] for i in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_nifti_brats_layout_every_sequence_with_its_label_volume(tmp_path):
    import nibabel as nib

    scan = nib.load(TCIA / "03" / "Pre_Scan_T1.nii.gz")
    tumour = np.asarray(nib.load(TCIA / "03" / "Pre_Mask.nii.gz").dataobj) > 0
    labels = np.where(tumour, 2, 0).astype(np.uint8)
    labels[tumour & (np.arange(tumour.shape[0])[:, None, None] % 2 == 0)] = 4  # BraTS labels 1, 2, 4
    labels[tumour & (np.arange(tumour.shape[1])[None, :, None] % 3 == 0)] = 1
    pixels = np.asarray(scan.dataobj)
    root = tmp_path / "brats"
    (root / "BraTS-03").mkdir(parents=True)
    for name, data in {"BraTS-03_t1ce": pixels, "BraTS-03_flair": pixels * 0.5, "BraTS-03_seg": labels,
                       "BraTS-03_dwi": pixels[:, :, :4], "BraTS-03_seg_edema": labels}.items():  # a map, not a scan
        nib.save(nib.Nifti1Image(data, scan.affine), root / "BraTS-03" / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(pixels, scan.affine), root / "P9_t2.nii.gz")  # flat: patient = the prefix
    nib.save(nib.Nifti1Image(labels, scan.affine), root / "P9_mask.nii.gz")
    nib.save(nib.Nifti1Image(pixels, scan.affine), root / "P90_t2.nii.gz")  # not P9's, though it starts with P9
    nib.save(nib.Nifti1Image(labels, scan.affine), root / "P90_mask.nii.gz")
    with pytest.warns(SourceWarning, match="BraTS-03_dwi.nii.gz: 4 slices .* skipped"):
        slices = read_source(str(root))
    volumes = {(s.patient_id, s.meta["volume"]) for s in slices}
    assert volumes == {("BraTS-03", "BraTS-03_t1ce.nii.gz"), ("BraTS-03", "BraTS-03_flair.nii.gz"),
                       ("P9", "P9_t2.nii.gz"), ("P90", "P90_t2.nii.gz")}
    assert len([s for s in slices if s.meta["volume"] == "P90_t2.nii.gz"]) == len(
        [s for s in slices if s.meta["volume"] == "P9_t2.nii.gz"])  # read once, with its own labels
    flair = read_source(str(root), sequences=["FLAIR"])  # one sequence: the others are not even read
    assert {s.meta["volume"] for s in flair} == {"BraTS-03_flair.nii.gz"}
    with pytest.raises(SourceError, match="no image of the sequences t2w with a mask"):
        read_source(str(root), sequences=["t2w"])
    reference = read_source(str(_tcia_patient(tmp_path, "03")))
    expected = {s.index: s.mask for s in reference if s.file.endswith("Pre_Scan_T1.nii.gz")}
    t1ce = [s for s in slices if s.meta["volume"] == "BraTS-03_t1ce.nii.gz"]
    assert len(t1ce) == len(expected) and any(s.mask.any() for s in t1ce)
    assert all(np.array_equal(s.mask, expected[s.index]) for s in t1ce)  # every label is tumour


def _tcia_patient(tmp_path, patient):
    root = tmp_path / "tcia-one"
    root.mkdir()
    (root / patient).symlink_to(TCIA / patient)
    return root


def test_sequences_choose_among_volumes_and_series(tmp_path):
    tcia = read_source(str(_tcia_patient(tmp_path, "03")), sequences=["t1"])
    assert tcia and all("_Scan_T1" in s.file for s in tcia)
    assert len(read_source(f"nifti:{BRAINIX}", sequences=["FLAIR"])) == 22
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom: BRAINIX's over-long LO values
        with pytest.raises(SourceError, match=r"\(ROI 22 slices of 288 x 288; T2 22 slices of 512 x 512\)"):
            read_source(str(BRAINIX), sequences=["T2"])
    flair_only = read_source(str(_case_dir(tmp_path)), sequences=["FLAIR"])  # the shared LGG TIFFs: one channel
    assert flair_only and all(s.meta["sequence"] == "flair" for s in flair_only)
    with pytest.raises(SourceError, match=r"one channel \(FLAIR only\); post-contrast needs the 3-channel TIFFs"):
        read_source(str(_case_dir(tmp_path / "again")), sequences=["t1ce"])
    with pytest.raises(SourceError, match="the LGG TIFFs hold pre-contrast, flair, post-contrast"):
        read_source(str(_case_dir(tmp_path / "thrice")), sequences=["dwi"])
    pairs = tmp_path / "pairs" / "p1"
    pairs.mkdir(parents=True)
    cv2.imwrite(str(pairs / "a.png"), np.zeros((32, 32), np.uint8))
    cv2.imwrite(str(pairs / "a_mask.png"), np.zeros((32, 32), np.uint8))
    with pytest.raises(SourceError, match="--sequences chooses among the volumes of a NIfTI or DICOM corpus"):
        read_source(str(pairs.parent), sequences=["flair"])


def test_kaggle3m_sequences_read_each_channel_of_the_3_channel_tiffs(tmp_path):
    root, rgb = _rgb_case(tmp_path)
    slices = read_source(str(root), sequences=["t1", "flair", "post-contrast"])
    by = {s.meta["sequence"]: s for s in slices}
    assert set(by) == {"pre-contrast", "flair", "post-contrast"} and len({s.key for s in slices}) == 3
    for name, channel in (("pre-contrast", 0), ("flair", 1), ("post-contrast", 2)):
        assert np.array_equal(by[name].image, rgb[..., channel])
        assert np.array_equal(by[name].mask, by["flair"].mask) and by[name].patient_id == "TCGA_CS_4941"


def _seg_corpus(root):
    """BRAINIX's FLAIR series (linked) with its tumour as a DICOM SEG written by highdicom from the ROI series."""
    import os

    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from inference.ml import imaging

    flair = BRAINIX / "DICOM" / "FLAIR"
    (root / "case1" / "flair").mkdir(parents=True)
    for f in sorted(flair.iterdir()):
        os.symlink(f, root / "case1" / "flair" / f.name)
    sources = imaging.order_dicom_datasets([pydicom.dcmread(f) for f in sorted(flair.iterdir())])
    for ds in sources:
        ds.PatientSex = "O"  # BRAINIX writes '0000', which highdicom refuses
    mask = imaging.read_path(BRAINIX / "DICOM" / "ROI").slices > 0
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="tumour", segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1")
    seg.save_as(root / "case1" / "tumour-seg.dcm")
    return root


def test_dicom_seg_is_read_against_the_series_it_segments(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom and highdicom on BRAINIX's over-long and odd values
        root = _seg_corpus(tmp_path / "seg")
        slices = read_source(str(root))  # the layout is detected
        reference = read_source(str(BRAINIX))  # the same series with its ROI mask series
        assert len(slices) == 22 and sum(s.mask.any() for s in slices) == 8
        assert all(np.array_equal(a.mask, b.mask) and np.array_equal(a.image, b.image)
                   for a, b in zip(slices, reference))
        assert slices[0].file == "case1/flair" and slices[0].meta["series"] == "sT2W/FLAIR"
        assert len(read_source(str(root), sequences=["FLAIR"])) == 22  # a word of the Series Description
        for f in (root / "case1" / "flair").iterdir():
            f.unlink()  # the SEG without its series
        with pytest.raises(SourceError, match=r"case1/tumour-seg.dcm: the series it segments .* is not in the corpus"):
            read_source(f"dicom-seg:{root}")
