"""Widgets shared by the pages: upload card, farm panel, job table."""
