// The sessions list: a click anywhere on a row opens the session; filters submit on change.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("sessions");
  if (table) {
    table.addEventListener("click", (event) => {
      if (event.target.closest("a, button, input")) return;
      const row = event.target.closest("tr[data-session]");
      if (row) window.location.href = `/sessions/${row.dataset.session}`;
    });
  }
  const form = document.querySelector("form.filters");
  if (form) {
    for (const select of form.querySelectorAll("select, input[type=date]")) {
      select.addEventListener("change", () => form.requestSubmit());
    }
    // Empty fields stay out of the URL.
    form.addEventListener("submit", () => {
      for (const field of form.elements) {
        if (field.name && !field.value) field.disabled = true;
      }
    });
  }
  // A session that starts or ends while the list is open: show it. Not while the page is
  // being left: a reload then would cancel the navigation the person asked for.
  let known = null;
  let leaving = false;
  window.addEventListener("beforeunload", () => {
    leaving = true;
    setTimeout(() => { leaving = false; }, 5000); // the navigation was called off
  });
  document.addEventListener("taskerino:live", (event) => {
    const ids = event.detail.map((s) => s.id).sort().join(",");
    if (known !== null && ids !== known && !leaving &&
        !document.querySelector("form.filters :focus")) {
      window.location.reload();
    }
    known = ids;
  });
});
