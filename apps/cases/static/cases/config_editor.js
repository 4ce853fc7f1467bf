// Queue config editor: "Add another" copies a formset's empty row and counts it in the management form.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.add-row");
  if (!button) return;
  const prefix = button.dataset.prefix;
  const total = document.getElementById(`id_${prefix}-TOTAL_FORMS`);
  const template = document.getElementById(`${prefix}-empty`);
  const body = document.querySelector(`table.formset[data-prefix="${prefix}"] tbody`);
  if (!total || !template || !body) return;
  const index = Number(total.value);
  const html = template.innerHTML.replace(/__prefix__/g, String(index));
  body.insertAdjacentHTML("beforeend", html);
  total.value = String(index + 1);
});
