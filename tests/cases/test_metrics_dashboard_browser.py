"""Ops open the support metrics dashboard in headless Chromium: the charts draw (pixels on every
canvas, a screenshot kept), a queue filter changes the numbers, and the CSV downloads."""

import csv
from datetime import date, timedelta
from urllib.parse import urlencode

import pytest

from apps.cases.models import MetricRollupAgentDay, MetricRollupQueueDay
from apps.core import demo as core_demo
from apps.core.progress import SILENT
from tests.factories.accounts import AgentFactory
from tests.factories.cases import QueueFactory

D = date(2026, 3, 2)
RANGE = "start=2026-03-02&end=2026-03-08"

# Canvas pixels that are not fully transparent: what Chart.js drew.
DRAWN_PIXELS = """(id) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) { drawn++; } }
  return drawn;
}"""


@pytest.mark.browser
def test_ops_read_the_metrics_dashboard(page, live_server, transactional_db, tmp_path):
    core_demo.seed(progress=SILENT)  # the ops / ops login
    from apps.core.roles import roles_sync_permissions

    roles_sync_permissions()  # transactional_db flushed the groups' permissions
    billing, returns = QueueFactory(slug="bill-dash"), QueueFactory(slug="ret-dash")
    agent = AgentFactory(display_name="Dana")
    for n in range(7):
        # billing: 10 created and 8 resolved a day; returns: 3 created, 1 resolved.
        for queue, created, resolved in ((billing, 10, 8), (returns, 3, 1)):
            counters = dict(created=created, resolved=resolved, resolve_seconds=resolved * (1800 + 60 * n),
                            handled=resolved, handle_seconds=resolved * 600, manual_actions=resolved * 3,
                            dwr_ok=resolved - 1, dwr_reopened=1, fcr_ok=resolved // 2,
                            fcr_failed=resolved - resolved // 2, offers_expired=n % 3)
            MetricRollupQueueDay.objects.create(day=D + timedelta(n), queue=queue, **counters)
            MetricRollupAgentDay.objects.create(day=D + timedelta(n), queue=queue, agent=agent, **counters)

    dashboard = f"/admin/cases/casestats/dashboard/?{RANGE}"
    page.goto(f"{live_server.url}/admin/login/?{urlencode({'next': dashboard})}")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops")
    page.click("input[type=submit]")
    page.wait_for_selector("#metrics-totals")
    assert page.inner_text("[data-metric=created]") == "91"  # 7 days x (10 + 3)
    assert page.input_value("#id_end") == "2026-03-08"
    for chart in ("chart-times", "chart-quality", "chart-volume", "chart-effort"):
        page.wait_for_function("(id) => window.Chart && Chart.getChart(id) !== undefined", arg=chart)
        assert page.evaluate(DRAWN_PIXELS, chart) > 500, chart
    page.screenshot(path=str(tmp_path / "metrics-dashboard.png"), full_page=True)
    assert (tmp_path / "metrics-dashboard.png").stat().st_size > 10_000
    assert page.locator("#metrics-queues tbody tr").count() == 2

    # Only returns: the totals, the tables and the charts' series follow.
    page.select_option("#id_queues", [str(returns.pk)])
    page.click("#metrics-apply")
    page.wait_for_url(f"**queues={returns.pk}*")
    assert page.inner_text("[data-metric=created]") == "21"
    assert page.inner_text("[data-metric=resolved]") == "7"
    assert page.locator("#metrics-queues tbody tr").count() == 1
    created = page.evaluate("() => Chart.getChart('chart-volume').data.datasets[0].data")
    assert created == [3] * 7

    with page.expect_download() as download:
        page.click("#csv-day")
    path = tmp_path / "by-day.csv"
    download.value.save_as(path)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["day"], r["created"], r["resolved"]) for r in rows] == [
        ((D + timedelta(n)).isoformat(), "3", "1") for n in range(7)]
