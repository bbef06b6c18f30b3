"""The audit action names. Everyone calls `audit_record(action=actions.X, ...)` with one of these.

Names are `<area>.<verb>`; the filter on the audit page lists them with their labels. To add one,
add a constant here and a label in LABELS (a name that is not listed still records, with a warning).
"""

# Authentication (recorded by audit.signals, no caller needed)
LOGIN = "auth.login"
LOGOUT = "auth.logout"
LOGIN_FAILED = "auth.login_failed"
LOCKED_OUT = "auth.locked_out"
PASSWORD_CHANGED = "auth.password_changed"
API_TOKEN_CREATED = "auth.api_token_created"
API_TOKEN_REVOKED = "auth.api_token_revoked"
MFA_ENABLED = "auth.mfa_enabled"
MFA_DISABLED = "auth.mfa_disabled"
MFA_VERIFIED = "auth.mfa_verified"
MFA_FAILED = "auth.mfa_failed"
MFA_RECOVERY_CODES = "auth.mfa_recovery_codes"

# User management (admins)
USER_CREATED = "user.created"
USER_UPDATED = "user.updated"
USER_ROLE_CHANGED = "user.role_changed"
USER_DISABLED = "user.disabled"
USER_ENABLED = "user.enabled"
USER_PASSWORD_RESET = "user.password_reset"
USER_MFA_RESET = "user.mfa_reset"
USER_DELETED = "user.deleted"

# Scans
SCAN_UPLOADED = "scan.uploaded"
SCAN_UPLOAD_REJECTED = "scan.upload_rejected"
SCAN_VIEWED = "scan.viewed"
SCAN_DELETED = "scan.deleted"
SCAN_ORIGINAL_DOWNLOADED = "scan.original_downloaded"
SCAN_SLICE_VIEWED = "scan.slice_viewed"
SCAN_HEADERS_CHECKED = "scan.headers_checked"
SCAN_ALTERED_COPY_FOUND = "scan.altered_copy_found"

# Inference jobs
JOB_QUEUED = "job.queued"
JOB_STARTED = "job.started"
JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
JOB_RETRIED = "job.retried"
RESULT_VIEWED = "result.viewed"
MASK_DOWNLOADED = "result.mask_downloaded"

# Radiologist reviews
REVIEW_RECORDED = "review.recorded"

# Reports and exports
REPORT_PDF_DOWNLOADED = "report.pdf_downloaded"
REPORT_CSV_DOWNLOADED = "report.csv_downloaded"
REPORT_SEG_DOWNLOADED = "report.seg_downloaded"
REPORT_PDF_DICOM_DOWNLOADED = "report.pdf_dicom_downloaded"
REPORT_SR_DOWNLOADED = "report.sr_downloaded"
PACS_SEND_REQUESTED = "pacs.send_requested"
PACS_SENT = "pacs.sent"
PACS_SEND_FAILED = "pacs.send_failed"
PACS_QUERIED = "pacs.queried"
PACS_RETRIEVED = "pacs.retrieved"
PACS_RETRIEVE_FAILED = "pacs.retrieve_failed"
DICOM_RECEIVED = "dicom.received"
PACS_COMPARED = "pacs.compared"
PACS_COPY_CHANGED = "pacs.copy_changed"  # a comparison found the PACS's copy otherwise than the one before
DICOM_RECEIVE_FAILED = "dicom.receive_failed"
RESULTS_CSV_EXPORTED = "report.results_csv_exported"

# Alerts (alerts app)
ALERT_SENT = "alert.sent"
ALERT_FAILED = "alert.failed"

# Audit log itself
AUDIT_LOG_VIEWED = "audit.log_viewed"
AUDIT_LOG_EXPORTED = "audit.log_exported"
SCAN_HISTORY_VIEWED = "audit.scan_history_viewed"

# Model and evaluation
EVALUATION_RECORDED = "model.evaluation_recorded"

# Access refused to an object or page (details name what was refused)
ACCESS_DENIED = "access.denied"

LABELS = {
    LOGIN: "Logged in",
    LOGOUT: "Logged out",
    LOGIN_FAILED: "Failed log-in",
    LOCKED_OUT: "Locked out",
    PASSWORD_CHANGED: "Password changed",
    API_TOKEN_CREATED: "API token created",
    API_TOKEN_REVOKED: "API token revoked",
    MFA_ENABLED: "Two-factor authentication turned on",
    MFA_DISABLED: "Two-factor authentication turned off",
    MFA_VERIFIED: "Two-factor code accepted",
    MFA_FAILED: "Wrong two-factor code",
    MFA_RECOVERY_CODES: "New two-factor recovery codes",
    USER_CREATED: "User created",
    USER_UPDATED: "User updated",
    USER_ROLE_CHANGED: "User role changed",
    USER_DISABLED: "User disabled",
    USER_ENABLED: "User enabled",
    USER_PASSWORD_RESET: "User password reset",
    USER_MFA_RESET: "User's two-factor authentication reset",
    USER_DELETED: "User deleted",
    SCAN_UPLOADED: "Scan uploaded",
    SCAN_UPLOAD_REJECTED: "Scan upload rejected",
    SCAN_VIEWED: "Scan viewed",
    SCAN_DELETED: "Scan deleted",
    SCAN_ORIGINAL_DOWNLOADED: "Original downloaded",
    SCAN_SLICE_VIEWED: "Slice viewed",
    SCAN_HEADERS_CHECKED: "DICOM headers checked again",
    SCAN_ALTERED_COPY_FOUND: "A stored copy of the scan's images has other pixels",
    REVIEW_RECORDED: "Review recorded",
    JOB_QUEUED: "Job queued",
    JOB_STARTED: "Job started",
    JOB_SUCCEEDED: "Job succeeded",
    JOB_FAILED: "Job failed",
    JOB_CANCELLED: "Job cancelled",
    JOB_RETRIED: "Job retried",
    RESULT_VIEWED: "Result viewed",
    MASK_DOWNLOADED: "Mask downloaded",
    REPORT_PDF_DOWNLOADED: "PDF report downloaded",
    REPORT_CSV_DOWNLOADED: "CSV report downloaded",
    REPORT_SEG_DOWNLOADED: "DICOM SEG downloaded",
    REPORT_PDF_DICOM_DOWNLOADED: "PDF report as DICOM downloaded",
    REPORT_SR_DOWNLOADED: "DICOM structured report downloaded",
    PACS_SEND_REQUESTED: "Sending to the PACS requested",
    PACS_SENT: "Sent to the PACS",
    PACS_SEND_FAILED: "Sending to the PACS failed",
    PACS_QUERIED: "PACS searched",
    PACS_RETRIEVED: "Series imported from the PACS",
    PACS_RETRIEVE_FAILED: "Importing from the PACS failed",
    DICOM_RECEIVED: "Series received over DICOM",
    PACS_COMPARED: "Scan compared with the PACS's copy",
    PACS_COPY_CHANGED: "The PACS's copy changed since the last comparison",
    DICOM_RECEIVE_FAILED: "A series received over DICOM was refused",
    RESULTS_CSV_EXPORTED: "Results CSV exported",
    ALERT_SENT: "Alert e-mailed",
    ALERT_FAILED: "Alert e-mail could not be sent",
    AUDIT_LOG_VIEWED: "Audit log viewed",
    AUDIT_LOG_EXPORTED: "Audit log exported",
    SCAN_HISTORY_VIEWED: "Scan access history viewed",
    EVALUATION_RECORDED: "Evaluation recorded",
    ACCESS_DENIED: "Access denied",
}

ALL = tuple(LABELS)

# Outcomes
SUCCESS = "success"
FAILURE = "failure"
DENIED = "denied"
OUTCOMES = (SUCCESS, FAILURE, DENIED)
