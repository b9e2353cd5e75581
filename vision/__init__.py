"""Vision: part conditions, image preprocessing and (with the [train] extra) the condition model."""
