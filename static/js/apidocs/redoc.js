// /redoc: start ReDoc on this server's OpenAPI document (an external script: the CSP allows no inline one).
// disableSearch: ReDoc's search index runs in a Web Worker built from a blob: URL, which the CSP (worker-src
// falls back to script-src 'self') refuses; the browser's own find (Ctrl+F) works on the rendered page.
(function () {
  const main = document.getElementById("apidocs");
  const host = document.getElementById("redoc");
  window.Redoc.init(main.dataset.openapi, { disableSearch: true, hideDownloadButton: false }, host, (err) => {
    main.dataset.state = err ? "failed" : "ready";
  });
})();
