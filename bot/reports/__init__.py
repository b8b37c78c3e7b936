"""The quarterly report: its periods, its figures, and the XLSX and DOCX files officers file."""
