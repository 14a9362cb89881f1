// Starts Swagger UI at /docs (a file, not an inline script: the page's CSP allows none).
// The bundle is vendored in static/vendor/swagger-ui (no CDN: the docs work offline).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
