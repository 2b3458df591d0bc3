// Classic-script loader of a notebook output (app/notebook/html.py): the payload's ES modules become blob:
// URLs, dependencies first, each module's "__ATLAS_MODULE_<i>__" placeholders replaced by the URL of module i;
// then the entry (the last module) is imported and mount(root, data) draws the views. plotly.js, when the
// payload carries it, is run once per page as a classic script (its UMD wrapper sees no module system).
function atlasNotebookLoad(rootId) {
  var root = document.getElementById(rootId);
  var status = root.querySelector(".atlas-nb-status");
  function fail(err) {
    root.dataset.state = "error";
    status.textContent = "Attention Atlas could not draw this output: " + (err && err.message ? err.message : err);
    console.error(err);
  }
  try {
    var payload = JSON.parse(document.getElementById(rootId + "-data").textContent);
    if (payload.plotly && !window.Plotly) {
      var s = document.createElement("script");
      s.textContent = "(function (module, exports, define) {\n" + payload.plotly + "\n}).call(window);";
      document.head.appendChild(s);
    }
    var urls = [];
    payload.modules.forEach(function (m) {
      var src = m.source.replace(/__ATLAS_MODULE_(\d+)__/g, function (_, i) { return urls[Number(i)]; });
      urls.push(URL.createObjectURL(new Blob([src + "\n//# sourceURL=atlas-notebook/" + m.path], { type: "text/javascript" })));
    });
    status.textContent = "Drawing\u2026";
    import(urls[urls.length - 1])
      .then(function (mod) { return mod.mount(root, payload.data); })
      .then(function () { status.remove(); root.dataset.state = "ready"; })
      .catch(fail);
  } catch (err) {
    fail(err);
  }
}
