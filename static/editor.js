// The definition editor (templates/admin/definition.html): CodeMirror 6 with YAML in place of the textarea,
// the problems `civicflow lint` gives marked at their lines as the admin types (the server checks the text:
// POST .../lint, debounced by CodeMirror's linter), and the preview refreshed while the text is clean.
// Without this script (or without CodeMirror) the page is a plain textarea form: Check / Preview / Save post it.
(function () {
  "use strict";

  function start() {
    var CM = window.CivicflowCodeMirror;
    var form = document.getElementById("definition-form");
    var textarea = document.getElementById("definition-text");
    if (!CM || !form || !textarea) return;
    var token = form.querySelector("input[name=csrf_token]").value;
    var problemsBox = document.getElementById("definition-problems");
    var previewBox = document.getElementById("definition-preview");
    var data = form.dataset;
    var asked = 0;          // the newest lint request; older answers are dropped
    var previewAsked = 0;

    function post(url, text) {
      var body = new FormData();
      body.append("text", text);
      return fetch(url, {method: "POST", body: body, credentials: "same-origin",
                         headers: {"X-CSRFToken": token, "Accept": "application/json"}});
    }

    function el(tag, cls, text) {
      var node = document.createElement(tag);
      if (cls) node.className = cls;
      if (text !== undefined) node.textContent = text;
      return node;
    }

    function placed(p) {
      var item = el("li");
      var where = el("a", "where", data.line.replace("{line}", p.line).replace("{col}", p.col));
      where.href = "#definition-text";
      where.addEventListener("click", function (event) { event.preventDefault(); goTo(p); });
      item.appendChild(where);
      item.appendChild(document.createTextNode(" "));
      if (p.path) { item.appendChild(el("code", "", p.path)); item.appendChild(document.createTextNode(" ")); }
      item.appendChild(document.createTextNode(p.message));
      if (p.hint) { item.appendChild(document.createTextNode(" ")); item.appendChild(el("span", "muted", "(" + p.hint + ")")); }
      return item;
    }

    function showWarnings(warnings) {
      // old spellings (engine/spelling.py): they load, so they never stop a save; listed with the new spelling
      if (!warnings || !warnings.length) return;
      problemsBox.appendChild(el("p", "help", data.warnings));
      var list = el("ul", "problems");
      list.id = "problem-warnings";
      warnings.forEach(function (p) { list.appendChild(placed(p)); });
      problemsBox.appendChild(list);
    }

    function showProblems(result) {
      var here = result.here, elsewhere = result.elsewhere, count = here.length + elsewhere.length;
      problemsBox.textContent = "";
      if (!count) {
        var ok = el("p", "ok", data.noProblems);
        ok.id = "problem-count";
        problemsBox.appendChild(ok);
        showWarnings(result.warnings);
        return;
      }
      var head = el("p", "alert", count === 1 ? data.problemsOne : data.problemsMany.replace("{n}", count));
      head.id = "problem-count";
      problemsBox.appendChild(head);
      if (here.length) {
        var list = el("ul", "problems");
        list.id = "problem-list";
        here.forEach(function (p) { list.appendChild(placed(p)); });
        problemsBox.appendChild(list);
      }
      if (elsewhere.length) {
        problemsBox.appendChild(el("p", "help", data.elsewhere));
        var other = el("ul", "problems");
        other.id = "problem-elsewhere";
        elsewhere.forEach(function (p) { other.appendChild(el("li")).appendChild(el("code", "", p.text)); });
        problemsBox.appendChild(other);
      }
    }

    function range(doc, p) {
      var line = doc.line(Math.max(1, Math.min(p.line, doc.lines)));
      var from = line.from + Math.max(0, Math.min(p.col - 1, line.length));
      return {from: from, to: Math.max(from, line.to)};
    }

    function goTo(p) {
      var r = range(view.state.doc, p);
      view.dispatch({selection: {anchor: r.from}, scrollIntoView: true});
      view.focus();
    }

    function refreshPreview(text) {
      var mine = ++previewAsked;
      return post(data.previewUrl, text).then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      }).then(function (html) {
        if (mine === previewAsked) previewBox.innerHTML = html;  // our own server's fragment, escaped there
      }).catch(function () { /* the Preview button still posts the page */ });
    }

    function lintSource(v) {
      var text = v.state.doc.toString();
      var mine = ++asked;
      return post(data.lintUrl, text).then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      }).then(function (result) {
        if (mine !== asked) return [];
        showProblems(result);
        if (result.ok) refreshPreview(text);
        var doc = v.state.doc;
        function diagnostic(severity) {
          return function (p) {
            var r = range(doc, p);
            return {from: r.from, to: r.to, severity: severity, source: "civicflow lint",
                    message: p.message + (p.hint ? " (" + p.hint + ")" : "")};
          };
        }
        // warnings (an old spelling) are marked in the gutter but do not refuse the save
        return result.here.map(diagnostic("error")).concat((result.warnings || []).map(diagnostic("warning")));
      }).catch(function () {
        if (mine === asked) {
          problemsBox.textContent = "";
          problemsBox.appendChild(el("p", "help", data.failed));
        }
        return [];
      });
    }

    var view = new CM.EditorView({
      doc: textarea.value,
      extensions: [
        CM.basicSetup,
        CM.keymap.of([CM.indentWithTab]),
        CM.yaml(),
        CM.EditorView.lineWrapping,
        CM.lintGutter(),
        CM.linter(lintSource, {delay: 500}),
        CM.EditorView.cspNonce.of(data.styleNonce || ""),  // the page's CSP allows CodeMirror's <style> by this
        CM.EditorView.contentAttributes.of({"aria-labelledby": "definition-text-label",
                                            "aria-describedby": "definition-help definition-keys"}),
      ],
    });
    view.dom.id = "definition-editor";
    textarea.insertAdjacentElement("afterend", view.dom);
    textarea.hidden = true;
    var keys = document.getElementById("definition-keys");
    if (keys) keys.hidden = false;
    document.getElementById("definition-text-label").addEventListener("click", function () { view.focus(); });
    form.addEventListener("submit", function () { textarea.value = view.state.doc.toString(); });
    var previewButton = document.getElementById("definition-preview-button");
    if (previewButton) {
      previewButton.addEventListener("click", function (event) {
        event.preventDefault();
        refreshPreview(view.state.doc.toString());
      });
    }
    window.civicflowEditor = view;  // for a person debugging in the console, and the browser tests
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
