"""``/docs`` and ``/redoc`` work offline: the pages and every asset they load come from the
server (the browser test renders both with every other request blocked)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.support import workflow_app


@pytest.mark.parametrize(("route", "name"), [("/docs", "swagger"), ("/redoc", "redoc")])
def test_docs_pages_load_only_local_assets(tmp_path, grader, route, name):
    app = workflow_app(f"sqlite:///{tmp_path / 'd.db'}", tmp_path, grader)
    with TestClient(app) as client:
        page = client.get(route)
        assert page.status_code == 200 and name in page.text.lower()
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        urls += re.findall(r"""url:\\s*['"]([^'"]+)['"]""", page.text)
        assert urls and all(u.startswith("/") for u in urls), urls
        for url in urls:
            assert client.get(url).status_code == 200, url
