// Progressive enhancement only: every page works without this file.
// A chosen CSV file is read into the textarea named by data-fill, so it can be previewed.
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || !input.dataset.fill || !input.files || !input.files[0]) {
    return;
  }
  const target = document.getElementById(input.dataset.fill);
  if (!target) {
    return;
  }
  input.files[0].text().then((text) => {
    target.value = text;
  });
});
