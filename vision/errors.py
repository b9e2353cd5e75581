"""The one base class of photograde's domain errors.

Every error that a user can cause and fix (a bad photo, manifest, checklist, grading config,
bundle, request) derives from :class:`PhotogradeError`; the command line and the HTTP layer
catch this class only, so a programming bug is never reported as a user's mistake. It lives in
the lowest layer (``vision``) so that every package can derive from it. It is a ``ValueError``
for callers that catch bad values in general.
"""

from __future__ import annotations


class PhotogradeError(ValueError):
    """A domain error: the message says what is wrong and how to fix it."""
