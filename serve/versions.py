"""Model versions in one worker: serve the registry's active bundle, score its shadow bundle,
and follow every switch without downtime.

At start (:meth:`Versions.start`) the settings' bundle is registered and made active if the
registry does not know it yet (:func:`serve.registry.start_serving`); the worker then serves
the registry's active bundle (the settings' one, or what was promoted or rolled back since).
Every ``bundle_poll_seconds`` it reads the registry again; when the active or shadow version
changed, it loads the new bundle in a thread (hashes verified, ONNX sessions, warm-up) while
the current one keeps answering, then swaps it in (:meth:`serve.grading.Service.swap`):
requests in flight finish on the bundle they started with. A bundle that fails to load is
logged and reported (``/v1/model``: ``versions.error``); the worker keeps serving what it has
and tries again when the registry names another bundle, or at its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from serve import registry
from serve.db import Database
from serve.grading import Service
from serve.registry import Ref, RegistryError, Serving
from serve.runtime import Grader
from serve.settings import Settings
from serve.shadow import ShadowScorer

log = logging.getLogger("photograde.versions")
SHADOW_THREADS = 1  # the shadow bundle's ONNX Runtime threads: it shares the CPU with the active


class Versions:
    """One worker's follower of the registry (``svc.wanted``: what it last read)."""

    def __init__(self, settings: Settings, svc: Service, db: Database):
        self.settings, self.svc, self.db = settings, svc, db
        self._failed: set[tuple[str, str]] = set()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Register the settings' bundle if new, start the service on the registry's active
        bundle, and follow the registry (the shadow bundle loads in the background)."""
        wanted = await asyncio.to_thread(registry.start_serving, self.db, self.settings.bundle)
        assert wanted.active is not None  # start_serving activates one when there is none
        self.svc.wanted = wanted
        given = self.svc.grader
        if given is not None and given.manifest.bundle_version == wanted.active.version:
            grader = given
        else:
            if wanted.active.directory != self.settings.bundle.resolve():
                log.warning("the settings name the bundle in %s; the registry's active bundle "
                            "is %s (%s): serving it (photograde bundle list)",
                            self.settings.bundle, wanted.active.version,
                            wanted.active.directory)
            grader = await asyncio.to_thread(self._open, wanted.active)
        await self.svc.start(grader)
        self._task = asyncio.create_task(self._watch())

    def _open(self, ref: Ref, threads: int | None = None) -> Grader:
        """Load the bundle ``ref`` names and check that its folder still holds that version."""
        g = self.svc.load(ref.directory, threads)
        if g.manifest.bundle_version != ref.version:
            raise RegistryError(f"{ref.directory} holds bundle {g.manifest.bundle_version}, "
                                f"not {ref.version}")
        return g

    async def _load(self, ref: Ref, threads: int | None = None) -> Grader | None:
        """``ref``'s bundle, loaded in a thread; None (logged, reported) if it fails."""
        key = (ref.version, str(ref.directory))
        if key in self._failed:
            return None
        log.info("loading bundle %s from %s", ref.version, ref.directory)
        try:
            g = await asyncio.to_thread(self._open, ref, threads)
        except Exception as e:  # whatever the cause, the worker keeps serving what it has
            self._failed.add(key)
            self.svc.load_error = f"bundle {ref.version}: {e}"
            log.error("cannot load bundle %s from %s: %s", ref.version, ref.directory, e)
            return None
        self.svc.load_error = None
        return g

    async def apply(self, wanted: Serving) -> None:
        """Load and swap in what the registry wants, if this worker does not serve it yet."""
        self.svc.wanted = wanted
        if wanted.active and wanted.active.version != self.svc.loaded.manifest.bundle_version:
            g = await self._load(wanted.active)
            if g is not None:
                self.svc.swap(g)
        current = self.svc.shadow.version if self.svc.shadow else None
        if (wanted.shadow.version if wanted.shadow else None) == current:
            return
        if wanted.shadow is None:
            self.svc.set_shadow(None)
        elif (g := await self._load(wanted.shadow, SHADOW_THREADS)) is not None:
            self.svc.set_shadow(ShadowScorer(g, self.db, self.svc.metrics,
                                             self.settings.shadow_queue_size))

    async def _watch(self) -> None:
        while True:
            try:
                await self.apply(await asyncio.to_thread(registry.serving, self.db))
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup: try again at the next poll
                log.exception("reading the bundle registry failed")
            await asyncio.sleep(self.settings.bundle_poll_seconds)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
