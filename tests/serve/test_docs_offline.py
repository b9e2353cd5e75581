"""``/docs`` works offline: the Swagger UI page and every asset it loads come from the server."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.support import workflow_app


def test_docs_page_loads_only_local_assets(tmp_path, grader):
    app = workflow_app(f"sqlite:///{tmp_path / 'd.db'}", tmp_path, grader)
    with TestClient(app) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "swagger" in page.text.lower()
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        urls += re.findall(r"""url:\\s*['"]([^'"]+)['"]""", page.text)
        assert urls and all(u.startswith("/") for u in urls), urls
        for url in urls:
            assert client.get(url).status_code == 200, url
