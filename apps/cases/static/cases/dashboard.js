// Charts of the support metrics dashboard (admin/cases/metrics/dashboard.html) from the per-day
// series the page embeds as JSON; Chart.js is vendored next to this file (cases/vendor/).
(function () {
  "use strict";
  var source = document.getElementById("metrics-chart-data");
  if (!source || typeof Chart === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var palette = ["#1565c0", "#ef6c00", "#2e7d32", "#c62828", "#6a1b9a"];

  function line(label, values, i, extra) {
    return Object.assign({type: "line", label: label, data: values, borderColor: palette[i],
                          backgroundColor: palette[i], spanGaps: false, tension: 0.2, pointRadius: 2}, extra || {});
  }
  function bar(label, values, i, extra) {
    return Object.assign({type: "bar", label: label, data: values, backgroundColor: palette[i]}, extra || {});
  }
  function chart(id, datasets, scales) {
    var canvas = document.getElementById(id);
    if (!canvas) { return; }
    // No animation: the numbers are the point, and a drawn chart is final at once.
    new Chart(canvas, {
      data: {labels: data.labels, datasets: datasets},
      options: {animation: false, responsive: true, maintainAspectRatio: false,
                interaction: {mode: "index", intersect: false},
                plugins: {legend: {position: "bottom"}}, scales: scales || {}}
    });
  }

  chart("chart-times", [line("AHT", data.aht_minutes, 0), line("Time to resolve", data.ttr_minutes, 1)],
        {y: {beginAtZero: true, title: {display: true, text: "minutes"}}});
  chart("chart-quality", [line("DWR", data.dwr_percent, 2), line("FCR", data.fcr_percent, 0)],
        {y: {min: 0, max: 100, title: {display: true, text: "%"}}});
  chart("chart-volume", [bar("Created", data.created, 0), bar("Resolved", data.resolved, 2),
                         line("Backlog change (created - resolved)", data.net, 3)],
        {y: {beginAtZero: true}});
  chart("chart-effort", [line("MTR", data.mtr, 4, {yAxisID: "mtr"}),
                         bar("SLA breaches", data.sla_breaches, 3), bar("Offers expired", data.offers_expired, 1)],
        {y: {beginAtZero: true, title: {display: true, text: "cases"}},
         mtr: {position: "right", beginAtZero: true, grid: {drawOnChartArea: false},
               title: {display: true, text: "actions per resolution"}}});
})();
