"""Contact sheet: thumbnails of fronts and backs with their labels, for a look by eye."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from training.manifest import Manifest


def contact_sheet(manifest: Manifest, out: str | Path, max_devices: int = 48,
                  thumb: int = 200, columns: int = 8) -> Path:
    """A PNG grid: each device's front and back side by side, captioned with its labels."""
    rows = manifest.rows[:max_devices]
    cell_w, cell_h = thumb * 2 + 8, thumb + 34
    n_rows = (len(rows) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell_w, max(1, n_rows) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for k, row in enumerate(rows):
        x, y = (k % columns) * cell_w, (k // columns) * cell_h
        for j, view in enumerate(("front", "back")):
            path = row.photo(view)
            if path is None:
                continue
            with Image.open(path) as im:
                im.draft("RGB", (thumb, thumb))
                tile = ImageOps.pad(ImageOps.exif_transpose(im).convert("RGB"), (thumb, thumb),
                                    color=(235, 235, 235))
            sheet.paste(tile, (x + j * (thumb + 4), y))
        screen = "|".join(sorted(row.screen)) if row.screen else "?"
        shell = "|".join(sorted(row.shell)) if row.shell else "?"
        draw.text((x + 2, y + thumb + 2), f"{row.device_id}  {row.grade or ''}", fill="black")
        draw.text((x + 2, y + thumb + 16), f"S:{screen}  B:{shell}", fill=(150, 0, 0))
    out = Path(out)
    sheet.save(out)
    return out
