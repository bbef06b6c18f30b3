"""The per-scan PDF report (reportlab): verdict, provenance, pictures with the overlay, per-slice table."""
import io

from django.utils import timezone
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image as RLImage,
    KeepTogether,
    LongTable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from xml.sax.saxutils import escape

from inference.models import scan_rule_text, tamper_odds, verdict_label
from reports.charts import VERDICT_COLOURS
from reports.overlay import overlay, read_png
from reports.selectors import slices_by_verdict_text
from scans.dicom_text import HEADER_LIMITS, header_checks_text, origin_text, series_text
from scans.selectors import pacs_compare_status, scan_copies, scan_slice_changes

VERDICT_TEXT = {
    "real_tumor": ("Real tumor", "An authentic tumor; the outline shows the tumor."),
    "no_tumor": ("No tumor", "Authentic, no tumor found."),
    "fake_added": ("Tampered: tumor added", "A tumor was injected; the outline shows the injected region."),
    "fake_removed": ("Tampered: tumor removed", "A tumor was erased; the outline shows the erased (inpainted) region."),
}
MAX_PICTURES = 12
PICTURE_SIZE = 80 * mm


def verdict_text(verdict: str) -> tuple[str, str]:
    return VERDICT_TEXT.get(verdict, (verdict, ""))


def _p(text, style):
    return Paragraph(escape(str(text)), style)


def _slice_picture(report, result, changed=None):
    scan_slice = result.scan_slice or report.slices.get(result.index)
    if scan_slice is None or not scan_slice.image:
        return None
    labels = read_png(result.mask) if result.mask else None
    picture = overlay(read_png(scan_slice.image), labels, changed=changed)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    buf.seek(0)
    w, h = picture.size
    scale = PICTURE_SIZE / max(w, h)
    return RLImage(buf, width=w * scale, height=h * scale)


def _changed_masks(changes) -> dict:
    """0-based slice -> the pixels any other copy holds otherwise (the union of the local changes' masks)."""
    from inference.ml.coco import rle_to_mask

    masks = {}
    for change in changes:
        rle = change.region.get("mask_rle")
        if rle:
            mask = rle_to_mask(rle)
            masks[change.index] = masks[change.index] | mask if change.index in masks else mask
    return masks


def review_text(review) -> str:
    """The radiologist's review in one sentence (the PDF's review box)."""
    if review is None:
        return "None recorded when this report was generated: the verdict above is the detector's alone."
    when = f"{timezone.localtime(review.created_at):%Y-%m-%d %H:%M %Z}"
    who = review.reviewer.get_username()
    if review.agrees:
        return f"Confirmed by {who} on {when}: {verdict_label(review.verdict)}."
    return (f"Overruled by {who} on {when}: read as {verdict_label(review.verdict)} "
            f"(the detector said {verdict_label(review.detector_verdict)}).")


def _review_box(review, styles):
    body = f"<b>Radiologist's review:</b> {escape(review_text(review))}"
    if review is not None and review.note:
        body += "<br/><b>Note:</b> " + escape(review.note).replace("\n", "<br/>")
    tint = "#f5f7fa" if review is None else ("#e5f3ea" if review.agrees else "#fdf3df")
    return Table([[Paragraph(body, styles["BodyText"])]], colWidths=[170 * mm], style=TableStyle([
        ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(tint)), ("LEFTPADDING", (0, 0), (-1, -1), 8),
        ("TOPPADDING", (0, 0), (-1, -1), 5), ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))


def scan_report_pdf(report, *, generated_by, confidence_guide: str = "",
                    verdict_guides: list[str] | None = None, processed_caveat: str = "") -> bytes:
    """The scan's PDF report; ``confidence_guide``: how to read the confidence, from the model's measured
    evaluation (`reports.selectors.confidence_guide_text`), printed under the verdict when given;
    ``verdict_guides``: what each verdict among the slices has meant in that evaluation
    (`reports.selectors.verdict_guide_text`), printed after it; ``processed_caveat``: for a verdict of tampering,
    how often processed authentic series were flagged (`reports.selectors.processed_caveat_for`), under it."""
    scan, job = report.scan, report.job
    styles = getSampleStyleSheet()
    small = ParagraphStyle("small", parent=styles["BodyText"], fontSize=8, leading=10)
    mono = ParagraphStyle("mono", parent=small, fontName="Courier", fontSize=7.5, leading=9)
    label, meaning = verdict_text(job.verdict)
    colour = colors.HexColor(VERDICT_COLOURS.get(job.verdict, "#333333"))
    now = timezone.localtime()

    story = [
        Paragraph("MRI tamper check: scan report", styles["Title"]),
        Table(
            [[Paragraph(f'<font color="white"><b>{escape(label)}</b></font>', styles["Heading2"]),
              Paragraph(f'<font color="white">confidence {job.confidence:.1%}<br/>'
                        f'tamper score {job.tamper_score:.3f}</font>', styles["BodyText"])]],
            colWidths=[110 * mm, 60 * mm],
            style=TableStyle([("BACKGROUND", (0, 0), (-1, -1), colour), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                              ("LEFTPADDING", (0, 0), (-1, -1), 8), ("TOPPADDING", (0, 0), (-1, -1), 6),
                              ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]),
        ),
        Spacer(1, 3 * mm),
        _p(f"Verdict: {verdict_label(job.verdict)}. {meaning}", styles["BodyText"]),
        Spacer(1, 3 * mm),
    ]
    odds = tamper_odds(job)
    if odds:
        story += [_p(f"Chance the scan is tampered: {odds['text']}", small)]
    if processed_caveat:
        story += [_p(processed_caveat, small)]
    if len(report.results) > 1:
        story += [_p(f"Scan verdict rule: {scan_rule_text(job.scan_rule)}.", small)]
        story += [_p(f"Slices by verdict: {slices_by_verdict_text(report.results)}.", styles["BodyText"]),
                  Spacer(1, 3 * mm)]
    if report.earlier is not None:
        earlier = report.earlier
        story += [Paragraph(f"<b>The earlier analysis read this scan differently:</b> job #{earlier.pk} "
                            f"({escape(earlier.model_name)} {escape(earlier.model_version)}) said "
                            f"{escape(verdict_label(earlier.verdict))}; this one ({escape(job.model_version)}) says "
                            f"{escape(verdict_label(job.verdict))}.", styles["BodyText"]), Spacer(1, 3 * mm)]
    story += [_review_box(report.review, styles), Spacer(1, 3 * mm)]
    if confidence_guide:
        story += [_p(f"Reading the confidence: {confidence_guide}", small), Spacer(1, 3 * mm)]
    if verdict_guides:
        story += [_p("Reading the verdicts: " + " ".join(verdict_guides), small), Spacer(1, 3 * mm)]
    check = (scan.metadata or {}).get("sequence") or {}
    if check.get("message"):
        heading = ("Sequence outside the detector's training" if check.get("trained") is False
                   else "Sequence not confirmed")
        story += [Paragraph(f"<b>{heading}:</b> {escape(check['message'])} ({escape(check.get('evidence', ''))})",
                            styles["BodyText"]), Spacer(1, 3 * mm)]
    noise = (scan.metadata or {}).get("input_check") or {}
    if noise.get("within") is False:
        story += [Paragraph(f"<b>Input outside the detector's range:</b> {escape(noise['message'])}",
                            styles["BodyText"]), Spacer(1, 3 * mm)]
    headers = (scan.metadata or {}).get("header_checks") or {}
    if headers.get("status") == "warnings":
        signs = " ".join(f["message"] for f in headers.get("findings", []) if f.get("severity") == "warning")
        story += [Paragraph(f"<b>The DICOM headers show signs of editing:</b> {escape(headers['message'])} "
                            f"{escape(signs)}", styles["BodyText"]), Spacer(1, 3 * mm)]
    copies = scan_copies(scan=scan, user=generated_by) if scan.kind == "dicom" else []
    pacs = pacs_compare_status(scan) if scan.kind == "dicom" else None
    changes = scan_slice_changes(scan=scan, user=generated_by, copies=copies, pacs_status=pacs) if pacs else []

    def where(copy_id) -> str:  # where the altered slices differ, and what the detector showed there
        lines = [c.line for c in changes if c.copy_id == copy_id]
        return (" " + " ".join(escape(line) for line in lines)) if lines else ""

    for copy in copies:
        if not copy.identical:
            story += [Paragraph(f"<b>Another stored copy of these images has other pixels:</b> "
                                f"{escape(copy.warning_text)}{where(copy.scan_id)}", styles["BodyText"]),
                      Spacer(1, 3 * mm)]
    if pacs and pacs.differs:
        story += [Paragraph(f"<b>The PACS's copy of this series differs:</b> {escape(pacs.comparison_text)} "
                            f"({escape(pacs.comparison_when)}){where(None)}", styles["BodyText"]), Spacer(1, 3 * mm)]

    originals = [[_p(f.original_name, small), Paragraph(escape(f.sha256), mono)] for f in report.files]
    provenance = [
        ["Scan", _p(f"#{scan.pk}: {scan.original_name} ({scan.get_kind_display()}, {scan.n_slices} slice"
                    f"{'s' if scan.n_slices != 1 else ''}, {scan.width} x {scan.height})", small)],
        *([["Series", _p(series, small)]] if (series := series_text(scan.metadata or {})) else []),
        ["SHA-256 of the original", Paragraph(escape(scan.sha256), mono)],
        [f"{(origin := origin_text(scan.metadata))[0]} {'for' if origin[0] == 'Received' else 'by'}",
         _p(f"{scan.owner.get_username()} on {timezone.localtime(scan.created_at):%Y-%m-%d %H:%M %Z}"
            f"{', ' + origin[1] if origin[1] else ''}", small)],
        ["Analysed", _p(f"job #{job.pk}, finished {timezone.localtime(job.finished_at):%Y-%m-%d %H:%M %Z}"
                        f"{' on ' + job.device if job.device else ''}", small)],
        ["Sequence", _p(check.get("label", "not recorded (uploaded before sequence checks)"), small)],
        *([["DICOM headers", _p(f"{header_text}. {HEADER_LIMITS}", small)]]
          if (header_text := header_checks_text(scan.kind, scan.metadata or {})) else []),
        *([["PACS copy", _p(" ".join(t for t in (
            f"{pacs.comparison_text} ({pacs.comparison_when})" if pacs.comparison else "", pacs.text) if t), small)]]
          if pacs and pacs.state != "none" else []),
        ["Model", _p(f"{job.model_name} {job.model_version}", small)],
        ["Model SHA-256", Paragraph(escape(job.model_sha256 or "unknown"), mono)],
        ["Report", _p(f"generated {now:%Y-%m-%d %H:%M %Z} for {generated_by.get_username()}", small)],
    ]
    table_style = TableStyle([("FONTSIZE", (0, 0), (-1, -1), 8), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                              ("TEXTCOLOR", (0, 0), (0, -1), colors.HexColor("#52606d")),
                              ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#e4e7eb"))])
    story += [Table(provenance, colWidths=[40 * mm, 130 * mm], style=table_style)]
    if len(originals) > 1:
        story += [Spacer(1, 2 * mm), _p(f"Original files ({len(originals)}):", small),
                  Table(originals, colWidths=[60 * mm, 110 * mm], style=table_style)]

    pictures = []
    changed = _changed_masks(changes)
    # the slices another copy holds otherwise first (pixel evidence), then the detector's findings
    by_index = {r.index: r for r in report.results}
    chosen = [by_index[i] for i in sorted(changed) if i in by_index]
    chosen += [r for r in report.flagged_results if r.index not in changed]
    for result in chosen[:MAX_PICTURES]:
        image = _slice_picture(report, result, changed.get(result.index))
        if image is not None:
            regions = len(result.instances.all())
            other = "; other pixels in another copy (yellow)" if result.index in changed else ""
            caption = _p(f"Slice {result.index + 1}: {verdict_label(result.verdict)} ({result.confidence:.0%}), "
                         f"{regions} region{'s' if regions != 1 else ''}{other}", small)
            pictures.append([image, caption])
    if pictures:
        cells = [[pictures[i], pictures[i + 1] if i + 1 < len(pictures) else ""] for i in range(0, len(pictures), 2)]
        grid = Table(cells, colWidths=[85 * mm, 85 * mm],
                     style=TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("ALIGN", (0, 0), (-1, -1), "CENTER")]))
        shown = "with a region or the most suspicious" if len(report.results) > len(pictures) else "all"
        if changed and len(report.results) > len(pictures):
            shown = "with other pixels in another copy, then " + shown
        story += [Spacer(1, 5 * mm), KeepTogether([Paragraph("Slices", styles["Heading2"]),
                  _p(f"{len(pictures)} of {len(report.results)} slices ({shown}); coloured outlines: "
                     "blue real tumor, red added, purple removed"
                     f"{'; yellow: pixels another copy of the image holds with other values' if changed else ''}.",
                     small)]), grid]

    rows = [["Slice", "Verdict", "Confidence", "Tamper score", "Regions", "Region classes (score)"]]
    for r in report.results:
        instances = list(r.instances.all())
        classes = ", ".join(f"{verdict_label(i.label)} ({i.score:.2f})" for i in instances[:4]) or "-"
        rows.append([str(r.index + 1), verdict_label(r.verdict), f"{r.confidence:.3f}", f"{r.tamper_score:.3f}",
                     str(len(instances)), classes])
    per_slice = LongTable(rows, repeatRows=1, colWidths=[14 * mm, 28 * mm, 22 * mm, 24 * mm, 16 * mm, 66 * mm])
    per_slice.setStyle(TableStyle([
        ("FONTSIZE", (0, 0), (-1, -1), 7.5), ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f5f7fa")),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#e4e7eb")),
        ("ALIGN", (2, 1), (4, -1), "RIGHT"),
    ]))
    story += [Spacer(1, 5 * mm), Paragraph("Per-slice results", styles["Heading2"]), per_slice,
              Spacer(1, 6 * mm),
              _p("Decision support only: a verdict is a prompt for a radiologist's review, not a diagnosis.", small)]

    buf = io.BytesIO()

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#52606d"))
        canvas.drawString(15 * mm, 10 * mm, f"Scan #{scan.pk} · SHA-256 {scan.sha256[:16]}… · model {job.model_version}")
        canvas.drawRightString(A4[0] - 15 * mm, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=18 * mm, title=f"Scan report {scan.pk}", author="MRI tamper check",
                            subject=f"verdict {job.verdict}")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
