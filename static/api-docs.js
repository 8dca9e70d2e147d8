// The browsable API page: Swagger UI (vendored) on the generated /api/v1/openapi.json. No inline script (CSP).
window.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({ url: el.getAttribute("data-spec"), dom_id: "#swagger-ui", deepLinking: true, filter: true,
                           persistAuthorization: false, tryItOutEnabled: false });
});
