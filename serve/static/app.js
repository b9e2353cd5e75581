// The UI's only script (the Content-Security-Policy allows no inline script or handler).

// Client-side previews of the chosen photos (no upload happens until Submit).
function showPreview(input) {
  var img = document.getElementById(input.dataset.preview);
  if (!img) return;
  if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
  var file = input.files && input.files[0];
  if (!file) { img.hidden = true; return; }
  img.dataset.url = URL.createObjectURL(file);
  img.src = img.dataset.url;
  img.hidden = false;
}
document.addEventListener("change", function (e) {
  if (!e.target.matches) return;
  if (e.target.matches("input[type=file][data-preview]")) showPreview(e.target);
  if (e.target.matches("select[data-autosubmit]")) e.target.form.submit();  // the days window
});

// One submission at a time: grading takes a moment.
function setBusy(form, busy) {
  form.querySelectorAll("button[type=submit]").forEach(function (b) {
    if (busy) { b.dataset.label = b.textContent; b.textContent = form.dataset.busy; }
    else if (b.dataset.label) { b.textContent = b.dataset.label; }
    b.disabled = busy;
  });
}

// A form marked data-keep-photos is sent in the background: a refused submission (422) shows
// the server's form again but keeps the photos it did not refuse (a page from the server
// cannot refill a file input). Without fetch, the form is sent as usual.
function showRefusal(form, doc) {
  var section = document.adoptNode(doc.getElementById(form.id).closest("section"));
  form.querySelectorAll("input[type=file]").forEach(function (input) {
    var fresh = section.querySelector("#" + input.id);
    if (!fresh || fresh.getAttribute("aria-invalid") === "true" || !input.files.length) return;
    fresh.replaceWith(input);  // the same element: its chosen file stays
    var img = document.getElementById(input.dataset.preview);
    var freshImg = img && section.querySelector("#" + img.id);
    if (freshImg) freshImg.replaceWith(img);
  });
  section.querySelectorAll(".reselect").forEach(function (el) { el.remove(); });
  form.closest("section").replaceWith(section);
  var first = section.querySelector("[aria-invalid=true]") || section.querySelector("#form-error");
  if (first) {
    if (!first.matches("input")) first.tabIndex = -1;
    first.focus();
  }
}

function sendInBackground(form) {
  fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin"})
    .then(function (r) {
      if (r.redirected) { window.location.assign(r.url); return null; }  // the outcome (or login)
      return r.text().then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        if (r.status === 422 && doc.getElementById(form.id)) { showRefusal(form, doc); return; }
        document.replaceChild(document.adoptNode(doc.documentElement), document.documentElement);
      });
    })
    .catch(function () {
      setBusy(form, false);
      var p = document.getElementById("form-error") || form.insertAdjacentElement(
        "beforebegin", document.createElement("p"));
      p.id = "form-error"; p.className = "error"; p.setAttribute("role", "alert");
      p.textContent = "photograde could not be reached; check the connection and submit again.";
    });
}

document.addEventListener("submit", function (e) {
  var form = e.target;
  if (!form.dataset.busy) return;
  setBusy(form, true);
  if (form.hasAttribute("data-keep-photos") && window.fetch && window.DOMParser) {
    e.preventDefault();
    sendInBackground(form);
  }
});
