"""Operators' commands that exercise a whole installation: ``sbx demo`` and ``sbx doctor``."""
