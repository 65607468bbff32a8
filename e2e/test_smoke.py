def test_chromium_runs_in_the_namespace_and_loads_pyodide_assets(new_page, server):
    page = new_page()
    page.goto(f"{server.url}/api/assets")
    manifest = page.evaluate("() => JSON.parse(document.body.innerText)")
    assert manifest["pyodide"].startswith("/pyodide/")
    response = page.goto(f"{server.url}{manifest['pyodide']}pyodide.mjs")
    assert response.status == 200
    assert response.headers["content-type"].split(";")[0] in (
        "text/javascript", "application/javascript")
    assert "immutable" in response.headers["cache-control"]
