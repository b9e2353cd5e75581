"""The photo check's retake advice in the page's language. The API's ``detail`` keeps
:func:`vision.photocheck.retake_advice`'s English; the UI shows these sentences instead, the
same English marked for the catalog, with the thresholds as placeholders. A sentence that
names the photo's side is written out whole for each slot (no translated fragments pasted
together: French agrees with "la face avant", "le dos"). tests/serve/test_ui_advice.py checks
that the English here is vision's, word for word."""

from serve.ui.i18n import N_, _
from vision.photocheck import PhotoCheckConfig, RejectReason, Slot

#: The advice that does not depend on the photo's slot.
ADVICE: dict[RejectReason, str] = {
    RejectReason.TOO_SMALL: N_(
        "the photo is too small to judge the glass (its shorter side is under %(min_side_px)d "
        "pixels); retake it with the phone filling the frame, or send the original file rather "
        "than a thumbnail"),
    RejectReason.TOO_DARK: N_(
        "the photo is too dark to see the phone; retake it in good light, without covering the "
        "lens"),
    RejectReason.OVEREXPOSED: N_(
        "the phone is washed out by glare or over-exposure; retake it away from direct light, "
        "tilting the phone so no reflection covers the glass"),
    RejectReason.BLURRY: N_(
        "the photo is blurred; hold the camera still, let it focus on the phone, and retake it"),
    RejectReason.COMPRESSED: N_(
        "the photo was compressed so hard (JPEG quality under %(min_jpeg_quality)d) that fine "
        "cracks are lost; send the original photo from the camera, not a copy from a chat or a "
        "web page"),
    RejectReason.NOISY: N_(
        "the photo is too grainy to see fine cracks; retake it in brighter light, holding the "
        "camera still"),
    RejectReason.DUPLICATE: N_(
        "this photo was already submitted for another device; take a new photo of this device"),
}
#: The advice that names the photo's side: one whole sentence per slot.
ADVICE_BY_SLOT: dict[tuple[RejectReason, Slot], str] = {
    (RejectReason.NOT_A_PHONE, "front"): N_(
        "no phone was found in this photo; take the front (the screen) of the phone, filling "
        "most of the frame"),
    (RejectReason.NOT_A_PHONE, "back"): N_(
        "no phone was found in this photo; take the back of the phone, filling most of the "
        "frame"),
    (RejectReason.WRONG_SIDE, "front"): N_(
        "this looks like the back of the phone, not its front (the screen); check which photo "
        "goes in which slot and retake it if needed"),
    (RejectReason.WRONG_SIDE, "back"): N_(
        "this looks like the front of the phone, not its back; check which photo goes in which "
        "slot and retake it if needed"),
}


def retake_advice(reason: RejectReason, slot: Slot, cfg: PhotoCheckConfig) -> str:
    """What to tell a person about a photo refused for ``reason`` in ``slot``, in the
    request's language, with ``cfg``'s thresholds (KeyError for a reason without advice)."""
    message = ADVICE_BY_SLOT.get((reason, slot)) or ADVICE[reason]
    return _(message) % {"min_side_px": cfg.min_side_px,
                         "min_jpeg_quality": cfg.min_jpeg_quality}


def advice_for(reason: str, slot: str, cfg: PhotoCheckConfig) -> str | None:
    """:func:`retake_advice` for a problem's reason code and field; None when they are not a
    known reason and a photo slot."""
    try:
        known = RejectReason(reason)
    except ValueError:
        return None
    if slot not in ("front", "back") or (known not in ADVICE
                                         and (known, slot) not in ADVICE_BY_SLOT):
        return None
    return retake_advice(known, "front" if slot == "front" else "back", cfg)
