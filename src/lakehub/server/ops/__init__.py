"""Operations: the platform watching itself.

- ``base``: the time-series store's contract (``MetricsStore``), the series it answers with
- ``victoria``: the embedded store, VictoriaMetrics as a component of ``lakehub up``
- ``scrape``: what the store scrapes, generated from the running hub's ports
- ``figures``: the control plane's own ``lakehub_*`` metrics (components, servers, clusters,
  storage, jobs), computed when scraped
- ``dashboards``: dashboards as data (``dashboards.yaml``), checked and expanded per viewer
- ``alerts``: the shipped rules (``rules.yaml``), their evaluation, history, silences, notices
"""
