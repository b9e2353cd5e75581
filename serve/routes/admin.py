"""Model versions, for admin keys (the registry: :mod:`serve.registry`).

    GET  /v1/admin/bundles                       every registered bundle; what this worker serves
    GET  /v1/admin/bundles/{version}             one, with its full backtest report
    POST /v1/admin/bundles/{version}/promote     serve it (the active one is retired)
    POST /v1/admin/bundles/{version}/shadow      score every request with it too, never shown
    POST /v1/admin/bundles/{version}/retire      stop shadowing it (not the active one)
    POST /v1/admin/bundles/{version}/rollback    it is active: serve the previous one again

Every worker follows a switch within ``bundle_poll_seconds`` (:mod:`serve.versions`).
Registering a bundle reads its folder, so it is a command (``photograde bundle register``).
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path

from serve import registry
from serve.auth import Principal
from serve.deps import Admin, ServiceDep, SettingsDep, WorkflowDep
from serve.gate import KeyFirstRoute
from serve.grading import Service
from serve.openapi import problems
from serve.problems import InvalidTransition, NotFound
from serve.settings import Settings

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=KeyFirstRoute)
Version = Annotated[str, Path(min_length=1, max_length=64)]
SWITCH = problems(404, 409)  # no such version; a state that does not allow it


def by(who: Principal) -> str:
    """Who switched, as the registry records it: the admin key (and its name)."""
    if who.key_id is None:
        return "anonymous (auth off)"
    return f"key {who.key_id}" + (f" ({who.name})" if who.name else "")


def _run(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A registry action, its errors as problems: no such version (404), a state that does
    not allow it or a bundle folder that moved (409)."""
    try:
        return action()
    except registry.UnknownBundle as e:
        raise NotFound(str(e), "version") from None
    except registry.RegistryError as e:
        raise InvalidTransition(str(e)) from None


def _switched(record: dict[str, Any], svc: Service, settings: Settings) -> dict[str, Any]:
    return {"bundle": record, "serving": svc.versions(),
            "note": f"every worker switches within {settings.bundle_poll_seconds:g} s "
                    "(its next poll, plus loading the bundle)"}


@router.get("/bundles", summary="Registered bundles and what this worker serves")
def list_bundles(who: Admin, wf: WorkflowDep, svc: ServiceDep) -> dict[str, Any]:
    return {"items": registry.list_bundles(wf.db), "serving": svc.versions()}


@router.get("/bundles/{version}", summary="One bundle, with its backtest report",
            responses=problems(404))
def get_bundle(who: Admin, wf: WorkflowDep, version: Version) -> dict[str, Any]:
    return _run(lambda: registry.get(wf.db, version))


@router.post("/bundles/{version}/promote", responses=SWITCH,
             summary="Serve this bundle (without downtime)")
def promote(who: Admin, wf: WorkflowDep, svc: ServiceDep, settings: SettingsDep,
            version: Version) -> dict[str, Any]:
    return _switched(_run(lambda: registry.promote(wf.db, version, by(who))), svc, settings)


@router.post("/bundles/{version}/shadow", responses=SWITCH,
             summary="Score every request with this bundle too, off the request path; never "
             "shown")
def shadow(who: Admin, wf: WorkflowDep, svc: ServiceDep, settings: SettingsDep,
           version: Version) -> dict[str, Any]:
    return _switched(_run(lambda: registry.shadow(wf.db, version, by(who))), svc, settings)


@router.post("/bundles/{version}/retire", responses=SWITCH,
             summary="Retire a bundle that is not active (ends its shadow)")
def retire(who: Admin, wf: WorkflowDep, svc: ServiceDep, settings: SettingsDep,
           version: Version) -> dict[str, Any]:
    return _switched(_run(lambda: registry.retire(wf.db, version, by(who))), svc, settings)


@router.post("/bundles/{version}/rollback", responses=SWITCH,
             summary="Roll the active bundle {version} back to the previously active one")
def rollback(who: Admin, wf: WorkflowDep, svc: ServiceDep, settings: SettingsDep,
             version: Version) -> dict[str, Any]:
    return _switched(_run(lambda: registry.rollback(wf.db, by(who), expect=version)), svc,
                     settings)
