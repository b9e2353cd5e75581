"""Synthetic phone photos (front and back) with drawn defects, device facts and workflow."""
