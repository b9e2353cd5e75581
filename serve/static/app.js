// Client-side previews of the chosen photos (no upload happens until Submit).
document.querySelectorAll("input[type=file][data-preview]").forEach(function (input) {
  input.addEventListener("change", function () {
    var img = document.getElementById(input.dataset.preview);
    if (!img) return;
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    var file = input.files && input.files[0];
    if (!file) { img.hidden = true; return; }
    img.dataset.url = URL.createObjectURL(file);
    img.src = img.dataset.url;
    img.hidden = false;
  });
});
// One submission at a time: grading takes a moment.
document.querySelectorAll("form[data-busy]").forEach(function (form) {
  form.addEventListener("submit", function () {
    form.querySelectorAll("button[type=submit]").forEach(function (b) {
      b.disabled = true; b.textContent = form.dataset.busy;
    });
  });
});
