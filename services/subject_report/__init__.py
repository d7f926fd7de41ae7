"""The participant's access report (Art. 15 GDPR): ``build_report`` makes the plain
dict (the JSON answer), ``render_html`` the printable German page."""

from services.subject_report.build import build_report, read_entries
from services.subject_report.html import render_html

__all__ = ["build_report", "read_entries", "render_html"]
