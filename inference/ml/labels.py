"""The four verdicts and the COCO categories of the dataset contract."""

VERDICTS = ("real_tumor", "no_tumor", "fake_added", "fake_removed")
TAMPERED = ("fake_added", "fake_removed")
CATEGORIES = {1: "real_tumor", 2: "fake_added", 3: "fake_removed"}
CATEGORY_IDS = {name: cid for cid, name in CATEGORIES.items()}
VERDICT_CATEGORY = {"real_tumor": 1, "fake_added": 2, "fake_removed": 3, "no_tumor": None}
