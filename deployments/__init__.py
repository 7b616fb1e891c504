"""prefect.yaml's deployments: served from one process (`serve`), the pull step that finds the
checkout (`steps`), and crash detection for runs whose worker died."""
