"""The scheduled job that looks for anomalies in the operations data (the code of the job
``ops-anomalies`` of the data's owner; it runs in the ``datascience`` environment, as any job).

For the day before (or the day in the job's parameter ``day``): from ``metrics/``, one row per
component and minute with its ``cpu`` (% of a core), ``memory`` (MB resident) and ``latency``
(its scrape's ms); the AI library's anomaly detector (an isolation forest) is trained on the
day and scores each row; the rows it flags go to ``anomalies/date=.../part-0.parquet`` and, as
``lakehub_ops_anomalies{component}`` at their minutes, to the platform's metrics (the overview
dashboard draws them) through ``POST /api/ops/findings``. Nothing of the platform is imported:
this file is the job's code, run by ``python`` in the environment.
"""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, date, datetime, timedelta

BUCKET = "space-opsdata"
FEATURES = {
    "process_cpu_seconds_total": "cpu",
    "process_resident_memory_bytes": "memory",
    "scrape_duration_seconds": "latency",
}


def main(day: date) -> None:
    import boto3
    import httpx
    import pandas as pd
    import pyarrow.parquet as pq

    from lakehub.ailib.anomaly_detection import train

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    key = f"metrics/date={day.isoformat()}/part-0.parquet"
    frame = pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
    df = frame.to_pandas()
    df = df[df["metric"].isin(FEATURES)].copy()
    df["component"] = [json.loads(x).get("component", "") for x in df["labels"]]
    wide = df.pivot_table(index=["ts", "component"], columns="metric", values="value")
    wide = wide.rename(columns=FEATURES).sort_index()
    if "cpu" in wide:  # a counter: its rate, in % of a core
        seconds = wide.reset_index("component").groupby("component")["cpu"].diff()
        wide["cpu"] = (seconds.to_numpy() / 60 * 100).clip(min=0)
    if "memory" in wide:
        wide["memory"] = wide["memory"] / 2**20
    if "latency" in wide:
        wide["latency"] = wide["latency"] * 1000
    rows = wide.reindex(columns=["cpu", "memory", "latency"]).dropna().reset_index()
    found = pd.DataFrame(columns=["ts", "component", "cpu", "memory", "latency", "score"])
    if len(rows) >= 10:
        scored = train(rows).answer(rows)
        rows["score"] = scored["score"].to_numpy()
        found = rows[scored["anomaly"].to_numpy()]
    buf = io.BytesIO()
    found.to_parquet(buf, index=False)
    s3.put_object(
        Bucket=BUCKET, Key=f"anomalies/date={day.isoformat()}/part-0.parquet", Body=buf.getvalue()
    )
    points = [[r.ts.timestamp(), r.component, float(r.score)] for r in found.itertuples()]
    r = httpx.post(
        f"{os.environ['LAKEHUB_API_URL']}/api/ops/findings",
        json={"day": day.isoformat(), "points": points},
        headers={"Authorization": f"token {os.environ['LAKEHUB_TOKEN']}"},
        timeout=60,
    )
    r.raise_for_status()
    print(f"{day}: {len(rows)} component-minutes, {len(found)} anomalous")


if __name__ == "__main__":
    given = str(json.loads(os.environ.get("LAKEHUB_JOB_PARAMETERS") or "{}").get("day") or "")
    main(date.fromisoformat(given) if given else datetime.now(UTC).date() - timedelta(days=1))
