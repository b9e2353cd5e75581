"""The JSON API's routers, one per resource, in the order the app includes them."""

from fastapi import APIRouter

from serve.routes import admin, dashboards, evaluations, grade, keys, ops, returns, reviews

ROUTERS: tuple[APIRouter, ...] = (grade.router, ops.router, evaluations.router, reviews.router,
                                  returns.router, dashboards.router, keys.router, admin.router)
