// /docs: start Swagger UI on this server's OpenAPI document (an external script: the CSP allows no inline one).
// validatorUrl null: the default would load a badge from a third-party validator, which img-src refuses.
(function () {
  const main = document.getElementById("apidocs");
  window.ui = window.SwaggerUIBundle({
    url: main.dataset.openapi,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
    onComplete: () => { main.dataset.state = "ready"; },
  });
})();
