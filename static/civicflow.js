/* Civicflow's own script: small enhancements on top of pages that work without it.
 *
 * - marks <html class="js"> so CSS can hide the no-JavaScript fallbacks (the "Update form" button);
 * - live forms: htmx re-renders #fields on the server and Idiomorph morphs it in place, leaving the
 *   value of the input being typed in alone; this file only tunes that (IME input, a change made while
 *   a repeat row is being added or removed, focus in the new row, a message when the server cannot be
 *   reached);
 * - paged forms: the title of the page moved to (or its first refused question) takes the focus;
 * - file and photo fields: a preview of the chosen image and an early size / type check (the server
 *   checks again and remains the authority);
 * - people pickers (type: user fields): a search box over /people/search that fills in the field's select,
 *   tick boxes or text box (which alone work without JavaScript; the server checks whoever is posted);
 * - [data-print] buttons open the print dialog; a wide diagram scrolls to its current state;
 * - the top bar's menu is open on a wide screen (a disclosure on a phone).
 * No inline scripts and no eval: the Content-Security-Policy is script-src 'self'.
 */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  var composing = false;          // an IME (pinyin) composition is in progress
  var pendingRow = null;          // {name, value} of the add / remove row button whose answer is awaited
  var clientErrors = new WeakMap(); // file input -> message of its rejected file
  var previewUrls = new WeakMap();  // File -> blob: URL, so a re-render does not create a new one

  function controlsIn(root) {
    return root ? root.querySelector("input:not([type=hidden]), select, textarea") : null;
  }

  // ------------------------------------------------------------------ file and photo fields

  function accepts(input, file) {
    var accept = (input.getAttribute("accept") || "").split(",").map(function (s) { return s.trim().toLowerCase(); })
      .filter(Boolean);
    if (!accept.length || !file.type) return true;  // unknown type: let the server read the bytes and decide
    var type = file.type.toLowerCase(), name = file.name.toLowerCase();
    return accept.some(function (a) {
      if (a.charAt(0) === ".") return name.slice(-a.length) === a;
      if (a.slice(-2) === "/*") return type.indexOf(a.slice(0, -1)) === 0;
      return type === a;
    });
  }

  function fileProblem(input, file) {
    var max = parseInt(input.getAttribute("data-max-size") || "0", 10);
    if (max && file.size > max) return input.getAttribute("data-msg-size") || "";
    if (!accepts(input, file)) return input.getAttribute("data-msg-type") || "";
    return "";
  }

  function showFileState(input) {
    var box = document.getElementById(input.id + "-preview");
    var old = document.getElementById(input.id + "-client-error");
    if (old) old.remove();
    if (box) box.replaceChildren();
    var message = clientErrors.get(input);
    var field = input.closest(".field");
    if (message) {
      var p = document.createElement("p");
      p.className = "error";
      p.id = input.id + "-client-error";
      p.textContent = message;
      input.insertAdjacentElement("afterend", p);
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", p.id);
      if (field) field.classList.add("invalid");
      return;
    }
    var file = input.files && input.files[0];
    if (!file || !box || file.type.indexOf("image/") !== 0) return;
    var url = previewUrls.get(file);
    if (!url) {
      url = URL.createObjectURL(file);
      previewUrls.set(file, url);
    }
    var img = document.createElement("img");
    img.src = url;
    img.alt = (box.getAttribute("data-label") || "") + " " + file.name;
    img.className = "thumb";
    box.appendChild(img);
  }

  function onFileChosen(input) {
    var file = input.files && input.files[0];
    clientErrors.delete(input);
    if (file) {
      var problem = fileProblem(input, file);
      if (problem) {
        clientErrors.set(input, problem);
        input.value = "";  // do not upload what the server would refuse; the message stays
      }
    }
    showFileState(input);
  }

  function refreshFiles(root) {
    (root || document).querySelectorAll("input[type=file]").forEach(showFileState);
  }

  // ------------------------------------------------------------------ live forms

  function focusAfterRowAction(action) {
    if (!action) return;
    var group, index = 0;
    if (action.name === "_add_row") {
      group = action.value;
    } else {
      var cut = action.value.lastIndexOf("-");
      group = action.value.slice(0, cut);
      index = parseInt(action.value.slice(cut + 1), 10) || 0;
    }
    var fieldset = document.getElementById("field-" + group);
    if (!fieldset) return;
    var rows = fieldset.querySelectorAll(".row");
    var row = action.name === "_add_row" ? rows[rows.length - 1] : rows[Math.min(index, rows.length - 1)];
    var target = controlsIn(row) || fieldset.querySelector("button[name=_add_row]");
    if (target) target.focus();
  }

  function liveError(form, show) {
    var box = form && form.querySelector(".live-error");
    if (box) box.hidden = !show;
  }

  function isRowButton(elt) {
    return !!elt && (elt.name === "_add_row" || elt.name === "_remove_row");
  }

  document.addEventListener("compositionstart", function () { composing = true; });
  document.addEventListener("compositionend", function (evt) {
    composing = false;
    // Chrome sends the last input event before compositionend: ask for the update now.
    if (evt.target && evt.target.form && evt.target.form.id === "live-form") {
      evt.target.dispatchEvent(new Event("input", { bubbles: true }));
    }
  });

  // htmx:confirm comes before hx-sync, so a request dropped here aborts nothing.
  document.addEventListener("htmx:confirm", function (evt) {
    var elt = evt.detail.elt;
    if (composing && elt && elt.id === "live-form") evt.preventDefault();  // half-typed pinyin: wait for it
  });

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    if (isRowButton(elt)) pendingRow = { name: elt.name, value: elt.value };
  });

  // A change made while a row is being added or removed sends a newer update, which replaces (aborts) the
  // row's request: that update carries the row button along, so the server does both and neither is lost.
  document.addEventListener("htmx:configRequest", function (evt) {
    var elt = evt.detail.elt;
    if (pendingRow && elt && elt.id === "live-form") {
      evt.detail.parameters[pendingRow.name] = pendingRow.value;
      evt.detail.headers["HX-Trigger-Name"] = pendingRow.name;
    }
  });

  // 上一步 / 下一步 of a paged form: the new page's title takes the focus (a screen reader reads where the person is
  // now), or, when the page was refused, its first marked question.
  function focusAfterPageMove(root) {
    var page = root.querySelector(".form-page:not([hidden])");
    if (!page) return;
    var invalid = page.querySelector("[aria-invalid=true]");
    var target = invalid || page.querySelector(".page-title");
    if (!target) return;
    if (invalid) {
      target.focus();
      return;
    }
    var progress = root.querySelector(".page-progress");  // the top of the new page: where the person is, then what it asks
    target.focus({ preventScroll: true });
    (progress || target).scrollIntoView({ block: "start" });
  }

  document.addEventListener("htmx:afterSwap", function (evt) {
    var target = evt.detail.target;
    refreshFiles(target);
    liveError(target && target.closest("form"), false);
    var config = evt.detail.requestConfig || {};
    if (config.headers && config.headers["HX-Trigger-Name"] === "_page" && target) focusAfterPageMove(target);
    if (pendingRow && config.headers && isRowButton({ name: config.headers["HX-Trigger-Name"] })) {
      if (isRowButton(config.elt)) focusAfterRowAction(pendingRow);  // not when the person is busy elsewhere
      pendingRow = null;
    }
  });

  function onFailure(evt) {
    var elt = evt.detail.elt;
    pendingRow = null;  // the row was not added (or removed): the person sees so and may press again
    liveError(elt && (elt.form || elt.closest("form")), true);
  }
  document.addEventListener("htmx:responseError", onFailure);
  document.addEventListener("htmx:sendError", onFailure);


  // ------------------------------------------------------------------ people pickers (type: user)

  var searchTimers = new WeakMap();  // search box -> pending timer
  var searchSeq = 0;                 // answers that arrive after a newer question are dropped

  function pickerOf(box) { return box.closest(".user-pick"); }

  function showFound(picker, items, more) {
    var found = picker.querySelector(".user-found");
    found.textContent = "";
    if (!items.length) {
      var none = document.createElement("p");
      none.className = "muted";
      none.textContent = picker.getAttribute("data-empty") || "";
      found.appendChild(none);
      return;
    }
    var list = document.createElement("ul");
    items.forEach(function (item) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "btn small user-option";
      button.setAttribute("data-username", item.username);
      button.setAttribute("data-name", item.name);
      button.textContent = item.name + (item.unit ? " · " + item.unit : "");
      li.appendChild(button);
      list.appendChild(li);
    });
    found.appendChild(list);
    if (more) {
      var tail = document.createElement("p");
      tail.className = "muted";
      tail.textContent = "…";
      found.appendChild(tail);
    }
  }

  function searchPeople(box) {
    var picker = pickerOf(box);
    var url = picker && picker.getAttribute("data-pick-url");
    if (!url) return;
    var query = box.value.trim();
    if (!query) { picker.querySelector(".user-found").textContent = ""; return; }
    var unitField = picker.getAttribute("data-unit-field"), form = box.form;
    var unit = unitField && form && form.elements[unitField] ? "&unit=" + encodeURIComponent(form.elements[unitField].value) : "";
    var seq = ++searchSeq;
    fetch(url + "&q=" + encodeURIComponent(query) + unit, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { items: [], more: false }; })
      .then(function (data) { if (seq === searchSeq) showFound(picker, data.items || [], data.more); })
      .catch(function () { if (seq === searchSeq) showFound(picker, [], false); });
  }

  function choosePerson(button) {
    var picker = pickerOf(button);
    var name = picker.getAttribute("data-pick-for");
    var username = button.getAttribute("data-username"), shown = button.getAttribute("data-name");
    var control = document.getElementById(name), changed = null;
    if (control && control.tagName === "SELECT") {
      var option = Array.prototype.find.call(control.options, function (o) { return o.value === username; });
      if (!option) { option = new Option(shown, username); control.add(option); }
      control.value = username;
      changed = control;
    } else if (control && control.tagName === "INPUT") {
      var text = shown + " (" + username + ")";
      control.value = control.hasAttribute("data-multiple") && control.value.trim()
        ? control.value.replace(/[、,，\s]+$/, "") + "、" + text : text;
      changed = control;
    } else {  // tick boxes of a multiple field
      var boxes = picker.querySelectorAll("input[type=checkbox][name='" + name + "']");
      var box = Array.prototype.find.call(boxes, function (b) { return b.value === username; });
      if (!box) {
        var label = document.createElement("label");
        label.className = "choice";
        box = document.createElement("input");
        box.type = "checkbox"; box.name = name; box.value = username;
        label.appendChild(box);
        label.appendChild(document.createTextNode(" " + shown));
        picker.querySelector(".choices").appendChild(label);
      }
      box.checked = true;
      changed = box;
    }
    var search = picker.querySelector(".user-search");
    search.value = "";
    picker.querySelector(".user-found").textContent = "";
    if (changed) {
      changed.dispatchEvent(new Event("change", { bubbles: true }));  // a live form re-renders with the person chosen
      changed.focus();
    }
  }

  // In the capture phase, so the search box's own typing never reaches the live form (it is not a field).
  ["input", "change"].forEach(function (type) {
    document.addEventListener(type, function (evt) {
      var box = evt.target;
      if (!box.matches || !box.matches("[data-user-search]")) return;
      evt.stopPropagation();
      if (type !== "input" || composing) return;
      clearTimeout(searchTimers.get(box));
      searchTimers.set(box, setTimeout(function () { searchPeople(box); }, 250));
    }, true);
  });
  document.addEventListener("compositionend", function (evt) {
    if (evt.target.matches && evt.target.matches("[data-user-search]")) searchPeople(evt.target);
  }, true);
  document.addEventListener("keydown", function (evt) {
    if (evt.key === "Enter" && evt.target.matches && evt.target.matches("[data-user-search]")) {
      evt.preventDefault();  // Enter in the search box searches; it does not submit the form
      var first = pickerOf(evt.target).querySelector(".user-option");
      if (first) choosePerson(first); else searchPeople(evt.target);
    }
  });
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest(".user-option");
    if (button) choosePerson(button);
  });

  // ------------------------------------------------------------------ wiring

  document.addEventListener("change", function (evt) {
    if (evt.target.matches && evt.target.matches("input[type=file]")) onFileChosen(evt.target);
  });

  // The inbox's bulk bar: tick (or, when all are ticked, untick) every case on the page.
  document.addEventListener("click", function (evt) {
    var all = evt.target.closest && evt.target.closest("[data-pick-all]");
    if (!all) return;
    var boxes = Array.prototype.slice.call(all.form.querySelectorAll("input.pick"));
    var tick = boxes.some(function (b) { return !b.checked; });
    boxes.forEach(function (b) { b.checked = tick; });
  });

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-print]");
    if (button) {
      evt.preventDefault();
      window.print();
    }
  });

  // A diagram wider than a phone scrolls inside its box: start with the current state in view.
  function centreDiagrams() {
    document.querySelectorAll(".diagram").forEach(function (box) {
      var current = box.querySelector(".dg-current");
      if (!current || box.scrollWidth <= box.clientWidth) return;
      var at = current.getBoundingClientRect(), frame = box.getBoundingClientRect();
      box.scrollLeft += (at.left + at.width / 2) - (frame.left + frame.width / 2);
    });
  }

  // The top bar's menu is a disclosure on a phone; from 720 px on it is simply open (CSS hides its summary where
  // the browser can style ::details-content; this covers the others).
  function openWideMenu() {
    var menu = document.querySelector("header.top details.menu");
    if (menu && window.matchMedia("(min-width: 720px)").matches) menu.open = true;
  }

  // A strip of filter chips that scrolls sideways on a phone starts with the chosen chip in view.
  function showChosenChips(root) {
    root.querySelectorAll(".filters.strip").forEach(function (strip) {
      var chosen = strip.querySelector("a[aria-current]");
      if (!chosen || strip.scrollWidth <= strip.clientWidth) return;
      strip.scrollLeft += chosen.getBoundingClientRect().left - strip.getBoundingClientRect().left - 12;
    });
  }
  document.addEventListener("htmx:afterSettle", function () { showChosenChips(document); });

  document.addEventListener("DOMContentLoaded", function () {
    openWideMenu();
    showChosenChips(document);
    centreDiagrams();
    if (window.Idiomorph) {
      // The input being typed in keeps its value while the rest of the form is re-rendered.
      window.Idiomorph.defaults.ignoreActiveValue = true;
    }
    refreshFiles(document);
  });
})();
