"""Small XML builders and XEP-0004 data forms."""
